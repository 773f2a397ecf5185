//! TreeSHAP from tables made when the model loads (the idea of "Fast TreeSHAP v2", Yang 2021):
//! the same path-dependent contributions as [`Trees::contributions_into`], in a fraction of the
//! time, since at serving time a leaf costs a lookup a feature instead of the recursion's
//! polynomial in the path's length.
//!
//! A leaf whose path splits on the `d` distinct features `D` gives feature `i` of `D`
//!
//! ```text
//! φᵢ = v (oᵢ − zᵢ) Σ_{S ⊆ D∖{i}} w(|S|, d) Πⱼ∈S oⱼ Πⱼ∈D∖S∖{i} zⱼ,   w(s, d) = s! (d−s−1)! / d!
//! ```
//!
//! where `v` is the leaf's value, `zⱼ` the share of the training rows that took the path's
//! splits on `j`, and `oⱼ` 1 when the row took them all, else 0. With `U` the set of features
//! whose splits the row took, only subsets of `U` count; so with
//! `B(T) = v Σ_{S ⊆ T, |S| < d} w(|S|, d) Πⱼ∈D∖S zⱼ`, made for every `T ⊆ D` when the model
//! loads,
//!
//! ```text
//! φᵢ = −B(U)                       for i ∉ U,
//! φᵢ = (1 − zᵢ) / zᵢ · B(U ∖ {i})  for i ∈ U.
//! ```
//!
//! A leaf's table has `2^d` entries, so a tree with a leaf of more than [`MAX_BITS`] distinct
//! features on its path, or a zero share (no training row took a split), or past the model's
//! memory budget, is explained by the recursion instead. The sums run in another order than
//! LightGBM's, so the contributions agree with its `predict_contrib` within rounding (1e-9 is
//! asserted on all of adult.test), not bit for bit as the recursion's do.

use std::ops::Range;

use super::trees::Trees;

/// The most distinct features on a leaf's path for which its tree gets tables (4,096 entries).
pub const MAX_BITS: usize = 12;
/// The most bytes the tables of one model take (their paths and features besides, a small
/// part); trees past it are explained by the recursion.
pub const BUDGET_BYTES: usize = 64 << 20;

/// One split on a leaf's path: the node (from its tree's root), the side the path takes, and the
/// bit of its feature in the leaf's table index.
#[derive(Debug, Clone, Copy)]
struct Step {
    node: u32,
    left: bool,
    bit: u8,
}

/// A leaf with its table: its path in `steps`, its features and their `(1 − z) / z` at
/// `features..features + bits`, its table at `table..table + 2^bits`.
#[derive(Debug, Clone, Copy)]
struct Leaf {
    steps: u32,
    n_steps: u32,
    bits: u32,
    features: u32,
    table: u32,
}

/// How a tree is explained.
#[derive(Debug, Clone)]
enum Plan {
    /// Its leaves, in [`ShapTables::leaves`].
    Tables(Range<u32>),
    Recursion,
}

/// The parsed trees with the tables that explain them.
#[derive(Debug, Clone)]
pub struct ShapTables {
    trees: Trees,
    layout: Layout,
}

/// The tables, and the paths that index them.
#[derive(Debug, Clone, Default)]
struct Layout {
    plans: Vec<Plan>,
    leaves: Vec<Leaf>,
    steps: Vec<Step>,
    features: Vec<u32>,
    ratios: Vec<f64>,
    tables: Vec<f64>,
    /// The most internal nodes of any tree with tables.
    widest: usize,
}

/// A leaf's path as the walk from the root found it: (node from the root, side, feature).
type Path = Vec<(u32, bool, u32)>;

impl ShapTables {
    /// Tables for the trees of `trees` within `budget` bytes (trees without node counts are
    /// left to the recursion, which explains nothing without them).
    pub fn new(trees: Trees, budget: usize) -> Self {
        let mut layout = Layout::default();
        // Offsets are u32.
        let entries = (budget / 8).min(u32::MAX as usize);
        for t in 0..trees.trees.len() {
            let plan = layout.add_tree(&trees, t, entries);
            layout.plans.push(plan);
        }
        ShapTables { trees, layout }
    }

    /// The trees these tables explain.
    pub fn trees(&self) -> &Trees {
        &self.trees
    }

    /// How many trees are explained from tables (the others by the recursion).
    pub fn tabled_trees(&self) -> usize {
        self.layout
            .plans
            .iter()
            .filter(|p| matches!(p, Plan::Tables(_)))
            .count()
    }

    /// The bytes the tables take.
    pub fn table_bytes(&self) -> usize {
        self.layout.tables.len() * 8
    }

    /// Each feature's contribution to the raw score of each row of `features` (row-major), then
    /// the expected value: as [`Trees::contributions_into`], within rounding.
    pub fn contributions_into(&self, features: &[f64], out: &mut Vec<f64>) -> Option<()> {
        let (trees, layout) = (&self.trees, &self.layout);
        let mut recursion = trees.recursion_buffer();
        let mut left = vec![false; layout.widest];
        trees.contributions_by_tree(features, out, |t, tree, row, phi| match &layout.plans[t] {
            Plan::Recursion => trees.tree_contributions(tree, row, phi, &mut recursion),
            Plan::Tables(leaves) => {
                let nodes = &trees.nodes[tree.root as usize..tree.first_leaf as usize];
                for (l, n) in left.iter_mut().zip(nodes) {
                    *l = trees.goes_left(n, row[n.feature as usize]);
                }
                for leaf in &layout.leaves[leaves.start as usize..leaves.end as usize] {
                    layout.add_leaf_contributions(leaf, &left, phi);
                }
            }
        })
    }

    /// [`Self::contributions_into`], the values returned.
    pub fn contributions(&self, features: &[f64]) -> Option<Vec<f64>> {
        let mut out = Vec::new();
        self.contributions_into(features, &mut out).map(|()| out)
    }
}

impl Layout {
    /// One leaf's share of each contribution, given which way the row goes at each node.
    #[inline]
    fn add_leaf_contributions(&self, leaf: &Leaf, left: &[bool], phi: &mut [f64]) {
        let bits = leaf.bits as usize;
        // Without a branch on the row's values, which the processor could not predict.
        let mut took = (1usize << bits) - 1;
        let steps = &self.steps[leaf.steps as usize..(leaf.steps + leaf.n_steps) as usize];
        for s in steps {
            let strayed = (left[s.node as usize] != s.left) as usize;
            took &= !(strayed << s.bit);
        }
        let table = &self.tables[leaf.table as usize..leaf.table as usize + (1 << bits)];
        let features = &self.features[leaf.features as usize..leaf.features as usize + bits];
        let ratios = &self.ratios[leaf.features as usize..leaf.features as usize + bits];
        for (i, (&f, &ratio)) in features.iter().zip(ratios).enumerate() {
            // Took i: (1 − z)/z · B(U ∖ {i}); else −B(U), which is U ∖ {i} too.
            let keep = 0u64.wrapping_sub((took >> i & 1) as u64);
            let factor = f64::from_bits((ratio.to_bits() & keep) | ((-1.0f64).to_bits() & !keep));
            phi[f as usize] += factor * table[took & !(1 << i)];
        }
    }

    /// Adds tree `t`'s leaves and tables if they fit in `budget` table entries in all; its plan.
    fn add_tree(&mut self, trees: &Trees, t: usize, budget: usize) -> Plan {
        let tree = &trees.trees[t];
        if !trees.explainable() {
            return Plan::Recursion;
        }
        if tree.first_leaf <= tree.root {
            // One leaf: no contribution but its expected value.
            let at = self.leaves.len() as u32;
            return Plan::Tables(at..at);
        }
        let mut paths = Vec::new();
        collect_paths(trees, tree.root, tree.root, &mut Vec::new(), &mut paths);
        let mark = (
            self.leaves.len(),
            self.steps.len(),
            self.features.len(),
            self.tables.len(),
        );
        for (leaf, path) in &paths {
            if !self.add_leaf(trees, tree.root, *leaf, path, budget) {
                self.leaves.truncate(mark.0);
                self.steps.truncate(mark.1);
                self.features.truncate(mark.2);
                self.ratios.truncate(mark.2);
                self.tables.truncate(mark.3);
                return Plan::Recursion;
            }
        }
        self.widest = self.widest.max((tree.first_leaf - tree.root) as usize);
        Plan::Tables(mark.0 as u32..self.leaves.len() as u32)
    }

    /// Adds a leaf and its table; false if the leaf cannot have one.
    fn add_leaf(
        &mut self,
        trees: &Trees,
        root: u32,
        leaf: u32,
        path: &Path,
        budget: usize,
    ) -> bool {
        // The distinct features in order of first appearance, each with its share of the rows.
        let mut distinct: Vec<u32> = Vec::new();
        let mut zero: Vec<f64> = Vec::new();
        let steps_at = self.steps.len();
        for (k, &(node, left, feature)) in path.iter().enumerate() {
            let bit = match distinct.iter().position(|&f| f == feature) {
                Some(b) => b,
                None => {
                    distinct.push(feature);
                    zero.push(1.0);
                    distinct.len() - 1
                }
            };
            let child = path.get(k + 1).map_or(leaf, |&(next, _, _)| next + root);
            let share = trees.counts[child as usize] / trees.counts[(node + root) as usize];
            zero[bit] *= share;
            self.steps.push(Step {
                node,
                left,
                bit: bit as u8,
            });
        }
        let d = distinct.len();
        let size = 1usize << d.min(MAX_BITS + 1);
        let fits = d <= MAX_BITS && self.tables.len() + size <= budget;
        if !fits || zero.iter().any(|&z| !z.is_finite() || z <= 0.0) {
            return false;
        }
        let value = trees.nodes[leaf as usize].threshold;
        let table_at = self.tables.len();
        self.tables.extend(subset_sums(&zero, value));
        self.leaves.push(Leaf {
            steps: steps_at as u32,
            n_steps: path.len() as u32,
            bits: d as u32,
            features: self.features.len() as u32,
            table: table_at as u32,
        });
        self.features.extend(&distinct);
        self.ratios.extend(zero.iter().map(|z| (1.0 - z) / z));
        true
    }
}

/// Every leaf under `node` with its path from `root`.
fn collect_paths(trees: &Trees, root: u32, node: u32, path: &mut Path, out: &mut Vec<(u32, Path)>) {
    let tree_leaf = trees.nodes[node as usize].next == [node, node];
    if tree_leaf {
        out.push((node, path.clone()));
        return;
    }
    let n = trees.nodes[node as usize];
    for (side, child) in [(true, n.next[0]), (false, n.next[1])] {
        path.push((node - root, side, n.feature));
        collect_paths(trees, root, child, path, out);
        path.pop();
    }
}

/// `B(T)` for every subset `T` of a leaf's `d` features (bit `j` for feature `j`):
/// `value · Σ_{S ⊆ T, |S| < d} w(|S|, d) Π_{j ∉ S} zero[j]`, by a sum over subsets in
/// `d · 2^d` steps. (`B(D)` is never read: a lookup always leaves one feature out.)
fn subset_sums(zero: &[f64], value: f64) -> Vec<f64> {
    let d = zero.len();
    let size = 1usize << d;
    let factorial: Vec<f64> = (0..=d)
        .scan(1.0, |f, k| {
            if k > 0 {
                *f *= k as f64;
            }
            Some(*f)
        })
        .collect();
    let weight = |s: usize| factorial[s] * factorial[d - s - 1] / factorial[d];
    let mut table: Vec<f64> = (0..size)
        .map(|set| {
            let s = set.count_ones() as usize;
            let absent: f64 = (0..d)
                .filter(|j| set >> j & 1 == 0)
                .map(|j| zero[j])
                .product();
            if s < d {
                value * weight(s) * absent
            } else {
                // The full set is never a subset of D ∖ {i}: no weight.
                0.0
            }
        })
        .collect();
    for j in 0..d {
        for set in 0..size {
            if set >> j & 1 == 1 {
                table[set] += table[set ^ (1 << j)];
            }
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `B(T)` straight from its definition.
    fn by_definition(zero: &[f64], value: f64, set: usize) -> f64 {
        let d = zero.len();
        let fact = |n: usize| (1..=n).map(|k| k as f64).product::<f64>();
        (0..1usize << d)
            .filter(|s| s & !set == 0 && s.count_ones() < d as u32)
            .map(|s| {
                let k = s.count_ones() as usize;
                let w = fact(k) * fact(d - k - 1) / fact(d);
                let absent: f64 = (0..d)
                    .filter(|j| s >> j & 1 == 0)
                    .map(|j| zero[j])
                    .product();
                value * w * absent
            })
            .sum()
    }

    #[test]
    fn the_subset_sums_are_the_sums_their_definition_gives() {
        let zero = [0.3, 0.55, 0.9, 0.12, 0.71];
        let table = subset_sums(&zero, 1.7);
        assert_eq!(table.len(), 32);
        for (set, &b) in table.iter().enumerate() {
            let want = by_definition(&zero, 1.7, set);
            assert!(
                (b - want).abs() <= 1e-15,
                "B({set:05b}) = {b}, by definition {want}"
            );
        }
    }

    /// Two trees with node counts: the first splits on x0, then x1, then x0 again (a feature
    /// repeated on a path); the second on x2 then x1.
    fn counted_trees() -> Trees {
        let text = "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\n\
             max_feature_idx=2\nobjective=binary sigmoid:1\n\n\
             Tree=0\nnum_leaves=4\nnum_cat=0\nsplit_feature=0 1 0\nthreshold=0.5 0.5 0.2\n\
             decision_type=2 2 2\nleft_child=1 2 -3\nright_child=-1 -2 -4\n\
             leaf_value=0.4 -0.3 0.9 -0.7\nleaf_count=40 35 10 15\n\
             internal_count=100 60 25\nis_linear=0\nshrinkage=1\n\n\
             Tree=1\nnum_leaves=3\nnum_cat=0\nsplit_feature=2 1\nthreshold=1.5 0.25\n\
             decision_type=2 2\nleft_child=-1 -2\nright_child=1 -3\n\
             leaf_value=0.05 -0.2 0.3\nleaf_count=70 20 10\n\
             internal_count=100 30\nis_linear=0\nshrinkage=1\n\nend of trees\n";
        Trees::from_text(text).unwrap()
    }

    fn grid() -> Vec<f64> {
        let values = [-1.0, 0.1, 0.3, 0.7, 2.0, f64::NAN];
        let mut rows = Vec::new();
        for a in values {
            for b in values {
                for c in values {
                    rows.extend([a, b, c]);
                }
            }
        }
        rows
    }

    #[test]
    fn the_tables_give_the_recursions_contributions_and_a_tree_past_the_budget_the_recursion() {
        let trees = counted_trees();
        let rows = grid();
        let exact = trees.contributions(&rows).unwrap();
        let tables = ShapTables::new(trees.clone(), BUDGET_BYTES);
        assert_eq!(tables.tabled_trees(), 2);
        // Leaves of 1, 2, 2, 2 distinct features, then 1, 2, 2.
        assert_eq!(tables.table_bytes(), (2 + 4 + 4 + 4 + 2 + 4 + 4) * 8);
        let fast = tables.contributions(&rows).unwrap();
        assert_eq!(fast.len(), exact.len());
        for (i, (a, b)) in fast.iter().zip(&exact).enumerate() {
            assert!(
                (a - b).abs() <= 1e-15,
                "value {i}: tables {a}, recursion {b}"
            );
        }
        // Some contribution of each feature is not zero: the check is not of zeros.
        for f in 0..3 {
            assert!(
                exact.chunks_exact(4).any(|r| r[f].abs() > 0.01),
                "feature {f}"
            );
        }
        // The first tree's tables fit in 14 entries, not the second's as well: it is explained
        // by the recursion, bit for bit.
        let some = ShapTables::new(trees.clone(), 14 * 8);
        assert_eq!(some.tabled_trees(), 1);
        assert_eq!(some.table_bytes(), 14 * 8);
        let none = ShapTables::new(trees, 0);
        assert_eq!(none.tabled_trees(), 0);
        assert_eq!(none.contributions(&rows).unwrap(), exact);
        let partly = some.contributions(&rows).unwrap();
        for (a, b) in partly.iter().zip(&exact) {
            assert!((a - b).abs() <= 1e-15);
        }
    }

    #[test]
    fn one_feature_alone_gets_its_leaf_value_times_the_rows_share_it_did_not_take() {
        // d = 1: B(∅) = v z, B({0}) = v z as well (the full set has no weight); a row that
        // took the split gets (1 − z)/z · B(∅) = v (1 − z), one that did not −v z.
        let table = subset_sums(&[0.25], 2.0);
        assert_eq!(table, vec![0.5, 0.5]);
        // One split on x0 <= 0.5 of 100 rows, 25 left (leaf 2.0), 75 right (leaf -1.0): the
        // expected value is 0.25 · 2 − 0.75 = −0.25.
        let text = "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\n\
             max_feature_idx=0\nobjective=binary sigmoid:1\n\n\
             Tree=0\nnum_leaves=2\nnum_cat=0\nsplit_feature=0\nthreshold=0.5\n\
             decision_type=2\nleft_child=-1\nright_child=-2\n\
             leaf_value=2 -1\nleaf_count=25 75\ninternal_count=100\nis_linear=0\n\
             shrinkage=1\n\nend of trees\n";
        let tables = ShapTables::new(Trees::from_text(text).unwrap(), BUDGET_BYTES);
        assert_eq!(tables.tabled_trees(), 1);
        let phi = tables.contributions(&[0.1, 0.9]).unwrap();
        // Left: 2 (1 − 0.25) − (−1) 0.75 = 2.25; right: −2 · 0.25 + (−1)(1 − 0.75) = −0.75.
        assert_eq!(phi, vec![2.25, -0.25, -0.75, -0.25]);
    }

    #[test]
    fn a_tree_past_the_budget_is_taken_out_whole_and_a_smaller_one_after_it_still_gets_tables() {
        // The second counted tree (10 entries), the first (14), the second again (10), with room
        // for 20: the first stops after three of its leaves; everything of it must go, or the
        // last tree's features and ratios are read out of step.
        let mut trees = counted_trees();
        let (first, second) = (trees.trees[0].clone(), trees.trees[1].clone());
        let offset = trees.nodes.len() as u32 - second.root;
        let copy: Vec<_> = trees.nodes[second.root as usize..]
            .iter()
            .map(|n| super::super::trees::Node {
                next: [n.next[0] + offset, n.next[1] + offset],
                ..*n
            })
            .collect();
        trees.nodes.extend(copy);
        let counts: Vec<f64> = trees.counts[second.root as usize..].to_vec();
        trees.counts.extend(counts);
        let again = super::super::trees::Tree {
            root: second.root + offset,
            first_leaf: second.first_leaf + offset,
            ..second.clone()
        };
        trees.trees = vec![second, first, again];
        let rows = grid();
        let exact = trees.contributions(&rows).unwrap();
        let some = ShapTables::new(trees, 20 * 8);
        assert_eq!(some.tabled_trees(), 2);
        assert_eq!(some.table_bytes(), 20 * 8);
        let fast = some.contributions(&rows).unwrap();
        for (i, (a, b)) in fast.iter().zip(&exact).enumerate() {
            assert!(
                (a - b).abs() <= 1e-15,
                "value {i}: tables {a}, recursion {b}"
            );
        }
    }
}
