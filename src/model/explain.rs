//! Why the model scored a row as it did: each feature's contribution to the raw score (the
//! log-odds), by path-dependent TreeSHAP (Lundberg et al., "Consistent individualized feature
//! attribution for tree ensembles", algorithm 2) on the parsed trees, weighing each path by the
//! training rows that took it (the node counts of the model text). The contributions and the
//! expected value sum to the raw score, as LightGBM's `predict_contrib` gives them; the
//! arithmetic follows the order of LightGBM's own implementation, so that the two agree to the
//! last bits, not only within a tolerance.

use super::trees::{read_as_lightgbm, Node, Tree, Trees};

/// One feature on the path from the root to the node at hand: the share of the training rows
/// that went its way (`zero`), whether the row did (`one`: 1 or 0), and its permutation weight.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct PathElement {
    feature: i32,
    zero: f64,
    one: f64,
    pweight: f64,
}

impl Trees {
    /// Whether the model text held the node counts TreeSHAP needs (LightGBM always writes them).
    pub fn explainable(&self) -> bool {
        !self.counts.is_empty()
    }

    /// The factor from the raw score to the log-odds of the probability LightGBM gives (the
    /// objective's `sigmoid:`, which calibration scales).
    pub fn log_odds_scale(&self) -> f64 {
        self.sigmoid
    }

    /// The raw score before any feature is known: the sum of the trees' expected values. None
    /// without node counts.
    pub fn expected_value(&self) -> Option<f64> {
        self.trees.iter().map(|t| t.expected).sum()
    }

    /// Each feature's contribution to the raw score of each row of `features` (row-major,
    /// `n_features` a row), then the expected value: `n_features + 1` values a row, in `out`,
    /// which sum to the row's raw score. None without node counts.
    pub fn contributions_into(&self, features: &[f64], out: &mut Vec<f64>) -> Option<()> {
        let mut path = self.recursion_buffer();
        self.contributions_by_tree(features, out, |_, tree, row, phi| {
            self.tree_contributions(tree, row, phi, &mut path)
        })
    }

    /// What every way of computing contributions shares: for each row of `features` (read as
    /// LightGBM does), `n_features + 1` values in `out`, each tree's expected value added to the
    /// last, tree by tree as LightGBM does, and `per_tree(index, tree, row, values)` adding the
    /// tree's contributions. None without node counts.
    pub(super) fn contributions_by_tree(
        &self,
        features: &[f64],
        out: &mut Vec<f64>,
        mut per_tree: impl FnMut(usize, &Tree, &[f64], &mut [f64]),
    ) -> Option<()> {
        if !self.explainable() {
            return None;
        }
        let m = self.n_features;
        let mut row = vec![0.0; m];
        out.clear();
        out.reserve(features.len() / m * (m + 1));
        for raw in features.chunks_exact(m) {
            for (r, &x) in row.iter_mut().zip(raw) {
                *r = read_as_lightgbm(x);
            }
            let at = out.len();
            out.resize(at + m + 1, 0.0);
            let phi = &mut out[at..];
            for (t, tree) in self.trees.iter().enumerate() {
                phi[m] += tree.expected.unwrap_or_default();
                per_tree(t, tree, &row, phi);
            }
        }
        Some(())
    }

    /// The buffer [`Self::tree_contributions`] keeps its paths in: each level of the recursion
    /// keeps its own copy of the path, one element longer.
    pub(super) fn recursion_buffer(&self) -> Vec<PathElement> {
        let deepest = self
            .trees
            .iter()
            .map(|t| t.depth as usize)
            .max()
            .unwrap_or(0);
        let levels = deepest + 2;
        vec![PathElement::default(); levels * (levels + 1) / 2 + levels]
    }

    /// Adds one tree's contributions for `row` (read as LightGBM does) to `phi`, by the
    /// recursion; `path` from [`Self::recursion_buffer`].
    pub(super) fn tree_contributions(
        &self,
        tree: &Tree,
        row: &[f64],
        phi: &mut [f64],
        path: &mut [PathElement],
    ) {
        if tree.first_leaf > tree.root {
            self.shap(tree, row, phi, tree.root, 0, path, 0, 1.0, 1.0, -1);
        }
    }

    /// [`Self::contributions_into`], the values returned.
    pub fn contributions(&self, row: &[f64]) -> Option<Vec<f64>> {
        let mut out = Vec::new();
        self.contributions_into(row, &mut out).map(|()| out)
    }

    /// The recursion of TreeSHAP from `node`, the parent's path at `path[parent..]` with
    /// `depth` elements before this node's.
    #[allow(clippy::too_many_arguments)]
    fn shap(
        &self,
        tree: &Tree,
        row: &[f64],
        phi: &mut [f64],
        node: u32,
        depth: usize,
        path: &mut [PathElement],
        parent: usize,
        parent_zero: f64,
        parent_one: f64,
        parent_feature: i32,
    ) {
        let start = parent + depth;
        if depth > 0 {
            path.copy_within(parent..parent + depth, start);
        }
        let here = &mut path[start..];
        extend_path(here, depth, parent_zero, parent_one, parent_feature);
        if node >= tree.first_leaf {
            let value = self.nodes[node as usize].threshold;
            for i in 1..=depth {
                let w = unwound_path_sum(here, depth, i);
                let el = here[i];
                phi[el.feature as usize] += w * (el.one - el.zero) * value;
            }
            return;
        }
        let n: &Node = &self.nodes[node as usize];
        let go_left = self.goes_left(n, row[n.feature as usize]);
        let (hot, cold) = if go_left {
            (n.next[0], n.next[1])
        } else {
            (n.next[1], n.next[0])
        };
        let w = self.counts[node as usize];
        let hot_zero = self.counts[hot as usize] / w;
        let cold_zero = self.counts[cold as usize] / w;
        let (mut incoming_zero, mut incoming_one) = (1.0, 1.0);
        let feature = n.feature as i32;
        let mut depth = depth;
        // Split on this feature before: that split is undone, to be redone here.
        if let Some(i) = (0..=depth).find(|&i| here[i].feature == feature) {
            incoming_zero = here[i].zero;
            incoming_one = here[i].one;
            unwind_path(here, depth, i);
            depth -= 1;
        }
        self.shap(
            tree,
            row,
            phi,
            hot,
            depth + 1,
            path,
            start,
            hot_zero * incoming_zero,
            incoming_one,
            feature,
        );
        self.shap(
            tree,
            row,
            phi,
            cold,
            depth + 1,
            path,
            start,
            cold_zero * incoming_zero,
            0.0,
            feature,
        );
    }
}

/// Adds a feature to the path: the rows' share `zero` and the row's `one` at position `depth`,
/// the permutation weights of the elements before it updated.
fn extend_path(path: &mut [PathElement], depth: usize, zero: f64, one: f64, feature: i32) {
    path[depth] = PathElement {
        feature,
        zero,
        one,
        pweight: if depth == 0 { 1.0 } else { 0.0 },
    };
    let d1 = (depth + 1) as f64;
    for i in (0..depth).rev() {
        path[i + 1].pweight += one * path[i].pweight * (i + 1) as f64 / d1;
        path[i].pweight = zero * path[i].pweight * (depth - i) as f64 / d1;
    }
}

/// Takes the element at `index` out of the path (the inverse of [`extend_path`]).
fn unwind_path(path: &mut [PathElement], depth: usize, index: usize) {
    let PathElement { zero, one, .. } = path[index];
    let d1 = (depth + 1) as f64;
    let mut next_one = path[depth].pweight;
    for i in (0..depth).rev() {
        if one != 0.0 {
            let tmp = path[i].pweight;
            path[i].pweight = next_one * d1 / ((i + 1) as f64 * one);
            next_one = tmp - path[i].pweight * zero * (depth - i) as f64 / d1;
        } else {
            path[i].pweight = (path[i].pweight * d1) / (zero * (depth - i) as f64);
        }
    }
    for i in index..depth {
        path[i].feature = path[i + 1].feature;
        path[i].zero = path[i + 1].zero;
        path[i].one = path[i + 1].one;
    }
}

/// The total permutation weight of the path with the element at `index` taken out, without
/// changing the path.
fn unwound_path_sum(path: &[PathElement], depth: usize, index: usize) -> f64 {
    let PathElement { zero, one, .. } = path[index];
    let d1 = (depth + 1) as f64;
    let mut next_one = path[depth].pweight;
    let mut total = 0.0;
    for i in (0..depth).rev() {
        if one != 0.0 {
            let tmp = next_one * d1 / ((i + 1) as f64 * one);
            total += tmp;
            next_one = path[i].pweight - tmp * zero * ((depth - i) as f64 / d1);
        } else {
            total += (path[i].pweight / zero) / ((depth - i) as f64 / d1);
        }
    }
    total
}
