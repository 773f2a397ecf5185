//! LightGBM's trees evaluated natively: the model text parsed into flat node arrays and walked
//! with LightGBM's own decision rules (numerical thresholds with their missing-value types and
//! default directions, categorical bitsets, near-zero inputs read as zero), summed in LightGBM's
//! order and passed through the same sigmoid, so that the probabilities are LightGBM's, bit for
//! bit. A batch is scored tree by tree over blocks of rows, so that one tree's nodes and one
//! block's features stay in the first-level cache while every row of the block walks it.

/// LightGBM reads any |x| <= this (a `float` literal, 1e-35f) as zero.
pub(super) const ZERO: f64 = 1e-35_f32 as f64;
/// Rows scored together, tree by tree.
const BLOCK: usize = 32;
/// Smaller blocks walk each row on its own (the lock step pays for a block's longest path).
const LOCK_STEP_ROWS: usize = 8;
/// The block's buffer holds this many features a row.
pub(super) const MAX_FEATURES: usize = 64;

const CATEGORICAL: u8 = 1;
const DEFAULT_LEFT: u8 = 2;
pub(super) const MISSING_ZERO: u8 = 1;
pub(super) const MISSING_NAN: u8 = 2;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TreesError {
    #[error("model text: {0}")]
    Format(String),
    #[error("model text: {0} is not supported natively")]
    Unsupported(&'static str),
}

/// A feature value as LightGBM's dense row reader passes it to the trees: values within its zero
/// threshold are zero.
#[inline(always)]
pub(super) fn read_as_lightgbm(x: f64) -> f64 {
    if x.abs() > ZERO || x.is_nan() {
        x
    } else {
        0.0
    }
}

/// The number a plain decimal (`12`, `0.75`, `-1.5`) is to LightGBM's objective parser
/// (`Common::Atof`: the integer digits, plus the fraction's digits as an integer divided by a
/// power of ten), which is not always the nearest double to the text; none for other forms.
/// With at most 15 digits either side every step but the division and the last sum is exact,
/// so the result does not depend on how a compiler contracts the arithmetic.
pub(super) fn plain_decimal_as_lightgbm_reads_it(text: &str) -> Option<f64> {
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => (-1.0, rest),
        None => (1.0, text.strip_prefix('+').unwrap_or(text)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.len() + frac.len() == 0 || int.len() > 15 || frac.len() > 15 {
        return None;
    }
    if !all_digits(int) || !all_digits(frac) {
        return None;
    }
    let fold = |s: &str| {
        s.bytes()
            .fold(0.0f64, |v, b| v * 10.0 + f64::from(b - b'0'))
    };
    let mut value = fold(int);
    if !frac.is_empty() {
        value += fold(frac) / lightgbm_pow(10.0, frac.len() as i32);
    }
    Some(sign * value)
}

/// `Common::Pow` of LightGBM, step for step.
fn lightgbm_pow(base: f64, power: i32) -> f64 {
    match power {
        p if p < 0 => 1.0 / lightgbm_pow(base, -p),
        0 => 1.0,
        p if p % 2 == 0 => lightgbm_pow(base * base, p / 2),
        p if p % 3 == 0 => lightgbm_pow(base * base * base, p / 3),
        p => base * lightgbm_pow(base, p - 1),
    }
}

/// LightGBM's binary output: the sigmoid of the raw score, as its objective computes it.
pub(super) fn probability(sigmoid: f64, raw: f64) -> f64 {
    1.0 / (1.0 + (-sigmoid * raw).exp())
}

fn bad(what: impl Into<String>) -> TreesError {
    TreesError::Format(what.into())
}

/// A node: a split, or a leaf pointing at itself with its value in `threshold`. One layout for
/// both walks: a row on its own stops at the first leaf; a block of rows in lock step takes
/// the tree's depth in steps, leaves keeping the rows that reached them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Node {
    pub(super) threshold: f64,
    pub(super) feature: u32,
    /// Categorical splits: their bitset in `Trees::bits`, followed there by a zero word, and
    /// its length in words; other nodes point at the zero word at 0 with length 0.
    pub(super) bits_start: u32,
    pub(super) bits_len: u32,
    /// Left, right: indices into `Trees::nodes`.
    pub(super) next: [u32; 2],
    pub(super) categorical: bool,
    pub(super) default_left: bool,
    /// LightGBM's missing type: none, zero or NaN.
    pub(super) missing: u8,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Tree {
    pub(super) root: u32,
    /// Indices from here on in `Trees::nodes`, to the next tree's root, are its leaves.
    pub(super) first_leaf: u32,
    /// The longest path from the root to a leaf.
    pub(super) depth: u32,
    /// The mean of its leaves' values over the training rows (by their counts): its output
    /// before any feature is known, TreeSHAP's expected value. None without node counts.
    pub(super) expected: Option<f64>,
}

/// A binary LightGBM model, ready to score natively.
#[derive(Debug, Clone, PartialEq)]
pub struct Trees {
    pub(super) n_features: usize,
    pub(super) sigmoid: f64,
    pub(super) trees: Vec<Tree>,
    pub(super) nodes: Vec<Node>,
    pub(super) bits: Vec<u32>,
    /// Per node (as `nodes`), the training rows that reached it (LightGBM's `internal_count`
    /// and `leaf_count`), which TreeSHAP weighs paths by; empty when the text has none.
    pub(super) counts: Vec<f64>,
}

fn numbers<T: std::str::FromStr>(key: &str, value: &str) -> Result<Vec<T>, TreesError> {
    value
        .split_whitespace()
        .map(|v| v.parse().map_err(|_| bad(format!("{key}: {v:?}"))))
        .collect()
}

/// The `key=value` lines of one block of the text.
fn fields(block: &str) -> std::collections::HashMap<&str, &str> {
    block.lines().filter_map(|l| l.split_once('=')).collect()
}

impl Trees {
    /// Parses LightGBM's text model format (version 4) of a binary model.
    pub fn from_text(text: &str) -> Result<Self, TreesError> {
        let mut blocks = text.split("\nTree=");
        let header = fields(blocks.next().unwrap_or_default());
        let get = |k: &str| header.get(k).copied().ok_or_else(|| bad(format!("no {k}")));
        if get("num_class")? != "1" || get("num_tree_per_iteration")? != "1" {
            return Err(TreesError::Unsupported("a model of more than one class"));
        }
        if header.contains_key("average_output") {
            return Err(TreesError::Unsupported("average_output (random forest)"));
        }
        let objective = get("objective")?;
        if !objective.starts_with("binary") {
            return Err(TreesError::Unsupported("an objective other than binary"));
        }
        let sigmoid = objective
            .split_whitespace()
            .find_map(|t| t.strip_prefix("sigmoid:"))
            .ok_or_else(|| bad("binary objective without sigmoid"))
            .and_then(|t| {
                plain_decimal_as_lightgbm_reads_it(t).ok_or(TreesError::Unsupported(
                    "a sigmoid not written as a plain decimal",
                ))
            })?;
        let n_features = get("max_feature_idx")?
            .parse::<usize>()
            .map_err(|_| bad("max_feature_idx"))?
            + 1;
        if n_features > MAX_FEATURES {
            return Err(TreesError::Unsupported("more than 64 features"));
        }
        let mut model = Trees {
            n_features,
            sigmoid,
            trees: Vec::new(),
            nodes: Vec::new(),
            bits: vec![0],
            counts: Vec::new(),
        };
        for block in blocks {
            // The trees end where the feature importances begin.
            let block = block.split("\nend of trees").next().unwrap_or(block);
            model.add_tree(&fields(block))?;
        }
        if model.trees.is_empty() {
            return Err(bad("no trees"));
        }
        if model.counts.len() != model.nodes.len() {
            // Some tree without counts: no explanations, scoring as ever.
            model.counts.clear();
            for t in &mut model.trees {
                t.expected = None;
            }
        }
        Ok(model)
    }

    fn add_tree(&mut self, f: &std::collections::HashMap<&str, &str>) -> Result<(), TreesError> {
        let get = |k: &str| {
            f.get(k)
                .copied()
                .ok_or_else(|| bad(format!("tree without {k}")))
        };
        if f.get("is_linear").is_some_and(|v| *v != "0") {
            return Err(TreesError::Unsupported("a linear tree"));
        }
        let num_leaves: usize = get("num_leaves")?.parse().map_err(|_| bad("num_leaves"))?;
        let leaves: Vec<f64> = numbers("leaf_value", get("leaf_value")?)?;
        if num_leaves == 0 || leaves.len() != num_leaves {
            return Err(bad("leaf_value does not match num_leaves"));
        }
        let n = num_leaves - 1;
        // A tree of one leaf has no split arrays.
        let splits = |key: &str| if n == 0 { Ok("") } else { get(key) };
        let feature: Vec<u32> = numbers("split_feature", splits("split_feature")?)?;
        let threshold: Vec<f64> = numbers("threshold", splits("threshold")?)?;
        let decision: Vec<u8> = numbers("decision_type", splits("decision_type")?)?;
        let left: Vec<i32> = numbers("left_child", splits("left_child")?)?;
        let right: Vec<i32> = numbers("right_child", splits("right_child")?)?;
        let (bounds, words): (Vec<usize>, Vec<u32>) = match f.get("num_cat") {
            Some(c) if *c != "0" => (
                numbers("cat_boundaries", get("cat_boundaries")?)?,
                numbers("cat_threshold", get("cat_threshold")?)?,
            ),
            _ => (Vec::new(), Vec::new()),
        };
        if [
            feature.len(),
            threshold.len(),
            decision.len(),
            left.len(),
            right.len(),
        ]
        .iter()
        .any(|&l| l != n)
        {
            return Err(bad("node arrays of different lengths"));
        }
        // The node counts only serve explanations: counts missing or unreadable leave the
        // model without them, scoring as ever. A tree of one leaf needs none.
        let counts = if n == 0 {
            Some((Vec::new(), vec![0.0]))
        } else {
            (|| {
                let internal: Vec<f64> =
                    numbers("internal_count", f.get("internal_count")?).ok()?;
                let leaf: Vec<f64> = numbers("leaf_count", f.get("leaf_count")?).ok()?;
                (internal.len() == n && leaf.len() == num_leaves).then_some((internal, leaf))
            })()
        };
        let expected = counts.as_ref().map(|(internal, leaf)| {
            if n == 0 {
                return leaves[0];
            }
            // LightGBM's Tree::ExpectedValue, in its order.
            let total = internal[0];
            leaf.iter()
                .zip(&leaves)
                .fold(0.0, |e, (&c, &v)| e + (c / total) * v)
        });
        let child_ok =
            |c: i32| (c >= 0 && (c as usize) < n) || (c < 0 && ((!c) as usize) < num_leaves);
        // Splits first, then leaves: child c >= 0 is split c, c < 0 is leaf !c.
        let root = self.nodes.len() as u32;
        let first_leaf = root + n as u32;
        let target = |c: i32| {
            if c >= 0 {
                root + c as u32
            } else {
                first_leaf + (!c) as u32
            }
        };
        for i in 0..n {
            if feature[i] as usize >= self.n_features || !child_ok(left[i]) || !child_ok(right[i]) {
                return Err(bad(format!("node {i} points outside its tree")));
            }
            let categorical = decision[i] & CATEGORICAL != 0;
            let (bits_start, bits_len) = if categorical {
                let c = threshold[i] as usize;
                let (&lo, &hi) = bounds
                    .get(c)
                    .zip(bounds.get(c + 1))
                    .filter(|(lo, hi)| lo <= hi && **hi <= words.len())
                    .ok_or_else(|| bad(format!("node {i}: categorical split {c}")))?;
                let start = self.bits.len() as u32;
                self.bits.extend_from_slice(&words[lo..hi]);
                self.bits.push(0);
                (start, (hi - lo) as u32)
            } else {
                (0, 0)
            };
            self.nodes.push(Node {
                threshold: threshold[i],
                feature: feature[i],
                bits_start,
                bits_len,
                next: [target(left[i]), target(right[i])],
                categorical,
                default_left: decision[i] & DEFAULT_LEFT != 0,
                missing: (decision[i] >> 2) & 3,
            });
        }
        for (l, &value) in leaves.iter().enumerate() {
            let at = first_leaf + l as u32;
            self.nodes.push(Node {
                threshold: value,
                feature: 0,
                bits_start: 0,
                bits_len: 0,
                next: [at, at],
                categorical: false,
                default_left: false,
                missing: 0,
            });
        }
        // The depth: the longest path from the root (0 for a tree of one leaf). Each node must
        // be reached once: a node shared or on a cycle is not a tree (a walk could loop).
        let mut depth = 0;
        let mut seen = vec![false; n + num_leaves];
        let mut stack = vec![(root, 0u32)];
        while let Some((i, d)) = stack.pop() {
            let at = (i - root) as usize;
            if std::mem::replace(&mut seen[at], true) {
                return Err(bad(format!("node {at} is reached twice: not a tree")));
            }
            if i >= first_leaf {
                depth = depth.max(d);
            } else {
                let next = self.nodes[i as usize].next;
                stack.extend([(next[0], d + 1), (next[1], d + 1)]);
            }
        }
        if let Some((internal, leaf)) = counts {
            if self.counts.len() == root as usize {
                self.counts.extend(internal);
                self.counts.extend(leaf);
            }
        }
        self.trees.push(Tree {
            root,
            first_leaf,
            depth,
            expected,
        });
        Ok(())
    }

    /// One step of the lock-step walk from `i` (a row without NaN).
    #[inline(always)]
    fn step(&self, i: u32, row: &[f64]) -> u32 {
        let n = &self.nodes[i as usize];
        let x = row[n.feature as usize];
        // Every branch of the decision computed and combined with bit operations: no jump
        // depends on the data, so the rows of a block overlap in the pipeline.
        let zero = (n.missing == MISSING_ZERO) & (x.abs() <= ZERO);
        let numeric_left = (zero & n.default_left) | (!zero & (x <= n.threshold));
        // Category codes truncate towards zero; negative ones (and huge ones, which saturate)
        // land on the zero word after the bitset.
        let c = x as i32;
        let word = ((c as u32) >> 5).min(n.bits_len);
        let bits = self.bits[(n.bits_start + word) as usize];
        let categorical_left = (bits >> (c as u32 & 31)) & 1 == 1;
        let left = (n.categorical & categorical_left) | (!n.categorical & numeric_left);
        n.next[usize::from(!left)]
    }

    pub fn n_features(&self) -> usize {
        self.n_features
    }

    pub fn n_trees(&self) -> usize {
        self.trees.len()
    }

    #[inline(always)]
    pub(super) fn goes_left(&self, n: &Node, x: f64) -> bool {
        if n.categorical {
            // NaN and negative categories go right, the value truncated towards zero as C++'s
            // static_cast<int> does (-0.5 is category 0). `as` saturates where C++ gives
            // INT_MIN on x86, but a category that large goes right either way: past every
            // bitset, or negative.
            if x.is_nan() {
                return false;
            }
            let c = x as i32;
            if c < 0 {
                return false;
            }
            let c = c as u32;
            let word = c / 32;
            word < n.bits_len && (self.bits[(n.bits_start + word) as usize] >> (c % 32)) & 1 == 1
        } else {
            let x = if x.is_nan() && n.missing != MISSING_NAN {
                0.0
            } else {
                x
            };
            let missing = (n.missing == MISSING_ZERO && (-ZERO..=ZERO).contains(&x))
                || (n.missing == MISSING_NAN && x.is_nan());
            if missing {
                n.default_left
            } else {
                x <= n.threshold
            }
        }
    }

    /// The value of the leaf `row` reaches in `tree`, walking it on its own (any row).
    #[inline(always)]
    fn leaf_value(&self, tree: &Tree, row: &[f64]) -> f64 {
        let mut i = tree.root;
        while i < tree.first_leaf {
            let n = &self.nodes[i as usize];
            i = n.next[usize::from(!self.goes_left(n, row[n.feature as usize]))];
        }
        self.nodes[i as usize].threshold
    }

    pub(super) fn probability(&self, raw: f64) -> f64 {
        probability(self.sigmoid, raw)
    }

    /// Probabilities for row-major features (`n_features` values a row), in `out`.
    pub fn predict_into(&self, features: &[f64], out: &mut Vec<f64>) {
        let m = self.n_features;
        let rows = features.len() / m;
        out.clear();
        out.reserve(rows);
        let mut block = [0.0f64; BLOCK * MAX_FEATURES];
        let mut raw = [0.0f64; BLOCK];
        for start in (0..rows).step_by(BLOCK) {
            let n = BLOCK.min(rows - start);
            let block = &mut block[..n * m];
            for (b, &x) in block.iter_mut().zip(&features[start * m..(start + n) * m]) {
                *b = read_as_lightgbm(x);
            }
            raw[..n].fill(0.0);
            if n < LOCK_STEP_ROWS || block.iter().any(|x| x.is_nan()) {
                for tree in &self.trees {
                    for (r, acc) in raw[..n].iter_mut().enumerate() {
                        *acc += self.leaf_value(tree, &block[r * m..(r + 1) * m]);
                    }
                }
            } else {
                let mut at = [0u32; BLOCK];
                for tree in &self.trees {
                    at[..n].fill(tree.root);
                    for _ in 0..tree.depth {
                        for (r, i) in at[..n].iter_mut().enumerate() {
                            *i = self.step(*i, &block[r * m..(r + 1) * m]);
                        }
                    }
                    for (acc, &i) in raw[..n].iter_mut().zip(&at[..n]) {
                        *acc += self.nodes[i as usize].threshold;
                    }
                }
            }
            out.extend(raw[..n].iter().map(|&s| self.probability(s)));
        }
    }

    pub fn predict(&self, features: &[f64]) -> Vec<f64> {
        let mut out = Vec::new();
        self.predict_into(features, &mut out);
        out
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn a_plain_decimal_reads_as_lightgbm_reads_it_and_other_forms_do_not() {
        for (text, value) in [("1", 1.0), ("0.75", 0.75), ("-1.5", -1.5), ("+2", 2.0)] {
            assert_eq!(
                plain_decimal_as_lightgbm_reads_it(text),
                Some(value),
                "{text}"
            );
        }
        // The fraction's digits over a power of ten, as LightGBM divides them.
        assert_eq!(
            plain_decimal_as_lightgbm_reads_it("0.996123457"),
            Some(996_123_457.0 / 1e9)
        );
        for text in ["1e3", "", ".", "nan", "0.1234567890123456", "1,5"] {
            assert_eq!(plain_decimal_as_lightgbm_reads_it(text), None, "{text}");
        }
    }

    /// A binary model of two features: a numerical split (missing NaN, default left) on
    /// feature 0, then a categorical one on feature 1 (categories 0, 1 and 40 go left: a bitset
    /// of two words).
    pub(crate) fn two_splits(left_of_second: i32) -> String {
        format!(
            "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\n\
             max_feature_idx=1\nobjective=binary sigmoid:1\n\n\
             Tree=0\nnum_leaves=3\nnum_cat=1\nsplit_feature=0 1\nthreshold=0.5 0\n\
             decision_type=10 1\nleft_child=1 {left_of_second}\nright_child=-1 -2\n\
             leaf_value=0.25 -0.5 0.75\ncat_boundaries=0 2\ncat_threshold=3 256\n\
             is_linear=0\nshrinkage=1\n\nend of trees\n"
        )
    }

    #[test]
    fn a_tree_is_walked_by_lightgbms_rules() {
        let t = Trees::from_text(&two_splits(-3)).unwrap();
        assert_eq!(t.n_trees(), 1);
        let p = |raw: f64| 1.0 / (1.0 + (-raw).exp());
        // x0 <= 0.5 (or NaN: default left) → category test on x1; else leaf 0.
        let rows = [
            [0.7, 1.0],
            [0.2, 1.0],
            [f64::NAN, 40.0],
            [0.2, 2.0],
            [0.2, f64::NAN],
            [0.2, -0.5],
        ];
        // NaN is no category; -0.5 is category 0.
        let expected = [p(0.25), p(0.75), p(0.75), p(-0.5), p(-0.5), p(0.75)];
        assert_eq!(t.predict(rows.as_flattened()), expected);
    }

    #[test]
    fn a_node_reached_twice_is_refused() {
        // The second split's left child is the root: a cycle.
        let e = Trees::from_text(&two_splits(0)).unwrap_err();
        assert!(e.to_string().contains("reached twice"), "{e}");
    }
}
