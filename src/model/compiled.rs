//! LightGBM's trees compiled to machine code with Cranelift when a model is loaded: each split
//! becomes a compare and a conditional jump with its threshold as an immediate, each leaf a jump
//! carrying its value, so that a row's walk is a run of predictable branches and loads of its own
//! features, with no node tables to chase. The decisions are [`Trees`]' (LightGBM's rules:
//! missing-value types, default directions, categorical bitsets with C++'s truncation), folded
//! into at most two float compares a split where the threshold makes the others moot; the trees
//! are summed in LightGBM's order and passed through the same sigmoid, so that the probabilities
//! are LightGBM's bit for bit. Batches of [`PARALLEL_ROWS`] rows or more are split across the
//! threads of rayon's pool.

use std::mem::ManuallyDrop;
use std::time::{Duration, Instant};

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    types, AbiParam, Block, InstBuilder, MemFlagsData, UserFuncName, Value,
};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, FuncId, Linkage, Module};
use rayon::prelude::*;

use super::trees::{Node, Tree, Trees, MAX_FEATURES, MISSING_NAN, MISSING_ZERO};

/// Trees in one compiled function (a function takes the running sum and returns it with its
/// trees' leaves added): the compiler's time grows faster than the code, so functions are kept
/// small (52 trees of 75 leaves: 38 ms with 4 a function, 62 ms with 16, 72 ms with 64), but
/// each call costs a little when scoring.
const TREES_PER_FUNCTION: usize = 8;
/// Batches from this many rows on are scored on rayon's threads.
pub const PARALLEL_ROWS: usize = 256;
/// Rows a thread takes at a time.
const CHUNK_ROWS: usize = 128;

/// Adds the leaves of some trees, in order, to the sum it is given: `row` points at
/// `n_features` values read as LightGBM reads them ([`super::trees::read_as_lightgbm`]).
type TreesFn = unsafe extern "C" fn(row: *const f64, sum: f64) -> f64;

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("this machine's instruction set is not supported by Cranelift: {0}")]
    Host(String),
    #[error("Cranelift setting: {0}")]
    Setting(#[from] settings::SetError),
    #[error("Cranelift: {0}")]
    Codegen(#[from] cranelift_codegen::CodegenError),
    #[error("Cranelift module: {0}")]
    Module(#[from] Box<cranelift_module::ModuleError>),
}

impl From<cranelift_module::ModuleError> for CompileError {
    fn from(e: cranelift_module::ModuleError) -> Self {
        CompileError::Module(Box::new(e))
    }
}

/// A model's trees as machine code.
pub struct Compiled {
    functions: Vec<TreesFn>,
    n_features: usize,
    sigmoid: f64,
    /// Categorical bitsets too long for an immediate, which the code reads by address (a
    /// `Vec`'s buffer stays where it is when the `Vec` moves, and is never written).
    _bits: Vec<u32>,
    /// Owns the code's memory: freed when the model is dropped.
    module: ManuallyDrop<JITModule>,
    compile_time: Duration,
}

// SAFETY: the compiled functions are pure: they read the row they are given and constants
// (immediates, and `_bits`, never written after compilation), so any number of threads may call
// them at once through `&Compiled`. The JIT module (`Send`, but not `Sync` for its symbol
// table's `RefCell`) is never reached through `&Compiled`: only `drop` touches it again.
unsafe impl Sync for Compiled {}

impl Drop for Compiled {
    fn drop(&mut self) {
        // SAFETY: the function pointers die with `self`: nothing can call into the code after
        // its memory is freed.
        unsafe { ManuallyDrop::take(&mut self.module).free_memory() }
    }
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("functions", &self.functions.len())
            .field("compile_time", &self.compile_time)
            .finish()
    }
}

fn host_module() -> Result<JITModule, CompileError> {
    let mut flags = settings::builder();
    flags.set("opt_level", "speed")?;
    // The IR's checker costs a fifth of the compile time; the canary check at load judges the
    // code by what it computes. Debug builds keep it.
    flags.set(
        "enable_verifier",
        if cfg!(debug_assertions) {
            "true"
        } else {
            "false"
        },
    )?;
    flags.set("use_colocated_libcalls", "false")?;
    flags.set("is_pic", "false")?;
    let isa = cranelift_native::builder()
        .map_err(|e| CompileError::Host(e.to_string()))?
        .finish(settings::Flags::new(flags))?;
    Ok(JITModule::new(JITBuilder::with_isa(
        isa,
        default_libcall_names(),
    )))
}

/// Defines and finalizes the functions of `trees` in `module`, reading long bitsets at `bits`.
fn define(
    module: &mut JITModule,
    trees: &Trees,
    bits: *const u32,
) -> Result<Vec<FuncId>, CompileError> {
    let mut ids = Vec::new();
    let mut ctx = module.make_context();
    let mut fctx = FunctionBuilderContext::new();
    let pointer = module.target_config().pointer_type();
    for (i, chunk) in trees.trees.chunks(TREES_PER_FUNCTION).enumerate() {
        let mut signature = module.make_signature();
        signature.params.push(AbiParam::new(pointer));
        signature.params.push(AbiParam::new(types::F64));
        signature.returns.push(AbiParam::new(types::F64));
        let id = module.declare_function(&format!("trees{i}"), Linkage::Local, &signature)?;
        ctx.func.signature = signature;
        ctx.func.name = UserFuncName::user(0, id.as_u32());
        let emit = Emit {
            trees,
            bits,
            pointer,
            frontend: module.target_config(),
        };
        emit.function(FunctionBuilder::new(&mut ctx.func, &mut fctx), chunk);
        module.define_function(id, &mut ctx)?;
        module.clear_context(&mut ctx);
        ids.push(id);
    }
    module.finalize_definitions()?;
    Ok(ids)
}

impl Compiled {
    /// Compiles `trees` for this machine.
    pub fn new(trees: &Trees) -> Result<Self, CompileError> {
        let started = Instant::now();
        let bits: Vec<u32> = trees.bits.clone();
        let mut module = host_module()?;
        let ids = match define(&mut module, trees, bits.as_ptr()) {
            Ok(ids) => ids,
            Err(e) => {
                // SAFETY: no pointer into the module's code has been handed out.
                unsafe { module.free_memory() };
                return Err(e);
            }
        };
        let functions = ids
            .iter()
            .map(|&id: &FuncId| {
                let code = module.get_finalized_function(id);
                // SAFETY: the function was defined with this signature (a pointer and an f64
                // in, an f64 out) in the host's default calling convention, which is C's.
                unsafe { std::mem::transmute::<*const u8, TreesFn>(code) }
            })
            .collect();
        Ok(Compiled {
            functions,
            n_features: trees.n_features,
            sigmoid: trees.sigmoid,
            _bits: bits,
            module: ManuallyDrop::new(module),
            compile_time: started.elapsed(),
        })
    }

    /// How long compiling took.
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }

    /// The raw score of one row already read as LightGBM reads it (`n_features` values).
    fn raw(&self, row: &[f64]) -> f64 {
        assert_eq!(row.len(), self.n_features);
        let mut sum = 0.0;
        for f in &self.functions {
            // SAFETY: `row` holds the `n_features` values the code reads (checked above), and
            // the code lives as long as `self`.
            sum = unsafe { f(row.as_ptr(), sum) };
        }
        sum
    }

    /// Scores rows function by function (a few trees at a time over every row), so that the
    /// branches of those trees, and their biases, are what the branch predictor sees meanwhile.
    /// Each row still adds its trees' leaves in LightGBM's order.
    fn score_rows(&self, features: &[f64], out: &mut [f64]) {
        let m = self.n_features;
        if let [p] = out {
            let mut row = [0.0f64; MAX_FEATURES];
            for (r, &v) in row.iter_mut().zip(features) {
                *r = super::trees::read_as_lightgbm(v);
            }
            *p = self.probability(self.raw(&row[..m]));
            return;
        }
        let rows: Vec<f64> = features
            .iter()
            .map(|&v| super::trees::read_as_lightgbm(v))
            .collect();
        out.fill(0.0);
        for f in &self.functions {
            for (row, sum) in rows.chunks_exact(m).zip(out.iter_mut()) {
                // SAFETY: each chunk holds the `n_features` values the code reads, and the code
                // lives as long as `self`.
                *sum = unsafe { f(row.as_ptr(), *sum) };
            }
        }
        for p in out.iter_mut() {
            *p = self.probability(*p);
        }
    }

    fn probability(&self, raw: f64) -> f64 {
        super::trees::probability(self.sigmoid, raw)
    }

    /// Probabilities for row-major features (`n_features` values a row), in `out`.
    pub fn predict_into(&self, features: &[f64], out: &mut Vec<f64>) {
        let m = self.n_features;
        let rows = features.len() / m;
        out.clear();
        out.resize(rows, 0.0);
        let features = &features[..rows * m];
        if rows >= PARALLEL_ROWS {
            out.par_chunks_mut(CHUNK_ROWS)
                .zip(features.par_chunks(CHUNK_ROWS * m))
                .for_each(|(out, x)| self.score_rows(x, out));
        } else {
            self.score_rows(features, out);
        }
    }

    pub fn predict(&self, features: &[f64]) -> Vec<f64> {
        let mut out = Vec::new();
        self.predict_into(features, &mut out);
        out
    }
}

/// Writes the code of trees.
struct Emit<'a> {
    trees: &'a Trees,
    bits: *const u32,
    pointer: types::Type,
    frontend: cranelift_codegen::isa::TargetFrontendConfig,
}

impl Emit<'_> {
    fn function(&self, mut b: FunctionBuilder<'_>, trees: &[Tree]) {
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let row = b.block_params(entry)[0];
        let mut sum = b.block_params(entry)[1];
        for tree in trees {
            let done = b.create_block();
            let leaf_value = b.append_block_param(done, types::F64);
            self.tree(&mut b, tree, row, done);
            b.switch_to_block(done);
            sum = b.ins().fadd(sum, leaf_value);
        }
        b.ins().return_(&[sum]);
        b.seal_all_blocks();
        b.finalize(self.frontend);
    }

    /// The tree's walk from the current block, jumping to `done` with the leaf's value.
    fn tree(&self, b: &mut FunctionBuilder<'_>, tree: &Tree, row: Value, done: Block) {
        let mut pending = vec![(tree.root, None)];
        while let Some((i, block)) = pending.pop() {
            if let Some(block) = block {
                b.switch_to_block(block);
            }
            let node = &self.trees.nodes[i as usize];
            if i >= tree.first_leaf {
                let value = b.ins().f64const(node.threshold);
                b.ins().jump(done, &[value.into()]);
                continue;
            }
            let left = self.decision(b, node, row);
            let [l, r] = [b.create_block(), b.create_block()];
            b.ins().brif(left, l, &[], r, &[]);
            // Right pushed first: the left subtree is laid out next.
            pending.push((node.next[1], Some(r)));
            pending.push((node.next[0], Some(l)));
        }
    }

    /// Whether the row goes left at `node`: a boolean (i8) value.
    fn decision(&self, b: &mut FunctionBuilder<'_>, node: &Node, row: Value) -> Value {
        let x = b.ins().load(
            types::F64,
            MemFlagsData::trusted().with_readonly(),
            row,
            (node.feature as usize * std::mem::size_of::<f64>()) as i32,
        );
        if node.categorical {
            return self.category_in_set(b, node, x);
        }
        let t = b.ins().f64const(node.threshold);
        // `x <= t`, true (ule) or false (le) for NaN.
        let at_most = |b: &mut FunctionBuilder<'_>, nan_left: bool| {
            let cc = if nan_left {
                FloatCC::UnorderedOrLessThanOrEqual
            } else {
                FloatCC::LessThanOrEqual
            };
            b.ins().fcmp(cc, x, t)
        };
        let zero_left = 0.0 <= node.threshold;
        match node.missing {
            // NaN is its default direction, zero an ordinary value.
            MISSING_NAN => at_most(b, node.default_left),
            // NaN and zero take the default direction.
            MISSING_ZERO => match (node.default_left, zero_left) {
                // A zero (or NaN) would go left by its value too.
                (true, true) => at_most(b, true),
                (true, false) => {
                    let zero = b.ins().f64const(0.0);
                    let missing = b.ins().fcmp(FloatCC::UnorderedOrEqual, x, zero);
                    let below = at_most(b, false);
                    b.ins().bor(missing, below)
                }
                // Only negative values go left: never a zero or NaN.
                (false, false) => at_most(b, false),
                (false, true) => {
                    let zero = b.ins().f64const(0.0);
                    let present = b.ins().fcmp(FloatCC::OrderedNotEqual, x, zero);
                    let below = at_most(b, false);
                    b.ins().band(present, below)
                }
            },
            // NaN reads as zero.
            _ => at_most(b, zero_left),
        }
    }

    /// A categorical split: NaN and negative codes go right; the code is the value truncated
    /// towards zero (C++'s `static_cast<int>`; huge values saturate, past every bitset).
    fn category_in_set(&self, b: &mut FunctionBuilder<'_>, node: &Node, x: Value) -> Value {
        let nan = b.ins().fcmp(FloatCC::Unordered, x, x);
        let code = b.ins().fcvt_to_sint_sat(types::I32, x);
        let minus_one = b.ins().iconst(types::I32, -1);
        let code = b.ins().select(nan, minus_one, code);
        let n_bits = i64::from(node.bits_len) * 32;
        // Unsigned: negative codes are beyond every bitset.
        let in_range = b.ins().icmp_imm_s(
            IntCC::UnsignedLessThan,
            code,
            n_bits.min(i64::from(i32::MAX)),
        );
        let words =
            &self.trees.bits[node.bits_start as usize..(node.bits_start + node.bits_len) as usize];
        let bit = if words.len() <= 2 {
            let set = words
                .iter()
                .rev()
                .fold(0u64, |acc, &w| (acc << 32) | u64::from(w));
            let set = b.ins().iconst(types::I64, set as i64);
            let code = b.ins().uextend(types::I64, code);
            // The shift takes the code modulo 64: only codes in range count.
            b.ins().ushr(set, code)
        } else {
            // The word at code / 32, clamped to the zero word after the bitset.
            let word = b.ins().ushr_imm_u(code, 5);
            let last = b.ins().iconst(types::I32, i64::from(node.bits_len));
            let word = b.ins().umin(word, last);
            let word = b.ins().uextend(self.pointer, word);
            let offset = b.ins().imul_imm_u(word, 4);
            let start = self.bits as i64 + i64::from(node.bits_start) * 4;
            let base = b.ins().iconst(self.pointer, start);
            let at = b.ins().iadd(base, offset);
            let word = b
                .ins()
                .load(types::I32, MemFlagsData::trusted().with_readonly(), at, 0);
            let shift = b.ins().band_imm_u(code, 31);
            b.ins().ushr(word, shift)
        };
        let bit = b.ins().band_imm_u(bit, 1);
        let set = b.ins().icmp_imm_s(IntCC::NotEqual, bit, 0);
        b.ins().band(in_range, set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::trees::tests::two_splits;

    #[test]
    fn compiled_trees_score_as_the_walk_and_free_their_code() {
        let trees = Trees::from_text(&two_splits(-3)).unwrap();
        let compiled = Compiled::new(&trees).unwrap();
        let mut rows = Vec::new();
        for x0 in [
            0.7,
            0.5,
            0.2,
            -0.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            for x1 in [1.0, 40.0, 2.0, 63.0, 64.0, 1e12, -0.5, -1.0, f64::NAN] {
                rows.extend([x0, x1]);
            }
        }
        // Batches large enough to be split across threads, too.
        let many: Vec<f64> = rows.iter().copied().cycle().take(2 * 1000).collect();
        for features in [&rows, &many] {
            let a = compiled.predict(features);
            let b = trees.predict(features);
            assert_eq!(a.len(), features.len() / 2);
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a), bits(&b));
        }
        drop(compiled);
    }
}
