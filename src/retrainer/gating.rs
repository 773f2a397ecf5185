//! The gate as the retrainer runs it: the challenger (or, on probation after a promotion, the
//! former champion) and the champion score every labeled row stored after the challenger's
//! cut-off, and the paired log losses feed the sequential test. A row either model was trained
//! on — the same features and label, whatever its offset or request id, as a stream that repeats
//! its input brings again — is never evidence: it is left out and counted. Its state is
//! derivable: replaying the rows file through it after a restart gives the same figures.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::offline::content_key;
use super::rowlog::StoredRow;
use crate::bundle::Bundle;
use crate::lifecycle::fairness::FairnessTest;
use crate::lifecycle::gate::{Decision, Gate, GateSettings};
use crate::lifecycle::Evidence;

pub struct GateRun {
    pub challenger: Arc<Bundle>,
    pub champion: Arc<Bundle>,
    /// The challenger is the former champion, shadowed after a promotion.
    pub probation: bool,
    /// Rows at or after these offsets count.
    pub from_offsets: BTreeMap<String, i64>,
    pub gate: Gate,
    /// The fairness condition, on the same rows.
    pub fairness: FairnessTest,
    /// Labels counted and rows left out at the last progress report.
    pub reported: u64,
    /// Content keys of the rows either model was trained on.
    trained_on: HashSet<u64>,
    /// Rows after the cut-off left out because a model was trained on their like.
    pub left_out: u64,
}

/// The content keys of the rows a model with these stream cut-offs was trained on: the base
/// rows' keys and those of the stored rows before its cut-off.
pub fn trained_keys(
    base: &HashSet<u64>,
    rows: &[StoredRow],
    cutoffs: &[&BTreeMap<String, i64>],
) -> HashSet<u64> {
    let mut keys = base.clone();
    for r in rows {
        if cutoffs.iter().any(|c| !r.at_or_after(c)) {
            keys.insert(content_key(&r.row, r.label));
        }
    }
    keys
}

impl GateRun {
    /// The figures of the test now: the losses' and the fairness condition's.
    pub fn evidence(&self) -> Evidence {
        Evidence {
            fairness: Some(Box::new(self.fairness.evidence(self.probation))),
            ..self.gate.evidence()
        }
    }

    pub fn new(
        challenger: Arc<Bundle>,
        champion: Arc<Bundle>,
        probation: bool,
        from_offsets: BTreeMap<String, i64>,
        settings: GateSettings,
    ) -> Self {
        GateRun {
            challenger,
            champion,
            probation,
            from_offsets,
            gate: Gate::new(settings),
            fairness: FairnessTest::new(settings.alpha, settings.fairness_delta),
            reported: 0,
            trained_on: HashSet::new(),
            left_out: 0,
        }
    }

    /// Leaves out from now on the rows either model was trained on: the `base` rows' keys, and
    /// the stored `rows` before either model's stream cut-off (from their manifests).
    pub fn leave_out_trained(&mut self, base: &HashSet<u64>, rows: &[StoredRow]) {
        let cutoffs = [
            &self.challenger.manifest.training_data.stream_offsets,
            &self.champion.manifest.training_data.stream_offsets,
        ];
        self.trained_on = trained_keys(base, rows, &cutoffs);
    }

    pub fn challenger_version(&self) -> u32 {
        self.challenger.manifest.version
    }

    pub fn champion_version(&self) -> u32 {
        self.champion.manifest.version
    }

    /// Scores the rows that count (at or after the cut-off) with both models and adds their
    /// paired log losses, in order (CPU work).
    pub fn feed(&mut self, rows: &[StoredRow]) {
        let mut counted: Vec<&StoredRow> = rows
            .iter()
            .filter(|r| r.at_or_after(&self.from_offsets))
            .collect();
        let before = counted.len();
        counted.retain(|r| !self.trained_on.contains(&content_key(&r.row, r.label)));
        self.left_out += (before - counted.len()) as u64;
        if counted.is_empty() {
            return;
        }
        let records = || {
            counted
                .iter()
                .map(|r| &r.row)
                .collect::<Vec<_>>()
                .into_iter()
        };
        match (
            self.challenger.predict(records()),
            self.champion.predict(records()),
        ) {
            (Ok(c), Ok(p)) => {
                // Up to the label that decides: the evidence is what the decision was made on.
                for ((r, c), p) in counted.iter().zip(c).zip(p) {
                    if self.decision() != Decision::Continue {
                        break;
                    }
                    self.gate.observe(c, p, r.label);
                    self.fairness.observe(&r.row, r.label, c, p);
                }
            }
            (Err(e), _) | (_, Err(e)) => tracing::error!(
                "retrainer: scoring {} rows for the gate failed: {}",
                counted.len(),
                crate::error_chain(&e)
            ),
        }
    }

    /// The gate's decision; and, when rows left out (either model trained on their like) and
    /// rows counted together reach `max labels` undecided, a rejection as undecided: a stream
    /// that repeats what the models were trained on brings no evidence, and a gate waiting for
    /// it would hold every later retrain back for ever.
    ///
    /// Before either, the fairness condition: a challenger that widens a gap between groups by
    /// more than ε with confidence is rejected however good its losses (and on probation, a
    /// champion that widens one against the former champion is rolled back).
    pub fn decision(&self) -> Decision {
        if self.gate.labels() >= self.gate.settings().min_labels
            && self.fairness.evidence(self.probation).widened
        {
            return Decision::Unfair;
        }
        match self.gate.decision() {
            Decision::Continue
                if self.gate.labels() + self.left_out >= self.gate.settings().max_labels =>
            {
                Decision::Reject { undecided: true }
            }
            d => d,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rows_before_either_cut_off_and_the_base_rows_are_trained_on() {
        let rows: Vec<StoredRow> = (0..6)
            .map(|o| {
                let mut r = StoredRow::example(o);
                r.row.age = 20.0 + o as f64;
                r
            })
            .collect();
        let base = HashSet::from([content_key(&rows[5].row, rows[5].label)]);
        let key = |i: usize| content_key(&rows[i].row, rows[i].label);
        let early = BTreeMap::from([("t/0".to_owned(), 2)]);
        let later = BTreeMap::from([("t/0".to_owned(), 4)]);
        let keys = trained_keys(&base, &rows, &[&early, &later]);
        assert_eq!(
            keys,
            HashSet::from([key(0), key(1), key(2), key(3), key(5)])
        );
        // A version trained on the base rows only (no stream cut-off) adds nothing.
        assert_eq!(trained_keys(&base, &rows, &[&BTreeMap::new()]), base);
        // The same features with the other label are another row.
        let mut flipped = rows[0].clone();
        flipped.label = !flipped.label;
        assert!(!keys.contains(&content_key(&flipped.row, flipped.label)));
    }

    /// Two models and the adult.test rows of the gate test: a weak champion (300 rows of
    /// adult.data) and a challenger trained on 6,000.
    fn models() -> (Arc<Bundle>, Arc<Bundle>, Vec<crate::data::LabeledRow>) {
        use crate::bundle::assemble::bundle_files;
        use crate::bundle::TrainingData;
        use crate::model::Scoring;
        use crate::train::{fit, SearchConfig};
        let adult =
            crate::data::load_adult(std::path::Path::new("data"), &crate::data::Fetch::Never)
                .expect("data/adult.* (scripts/test.sh puts them there)");
        let mut search = SearchConfig::with_budget(2.try_into().unwrap());
        search.threads = 2.try_into().unwrap();
        let bundle = |rows: &[crate::data::LabeledRow], version: u32| {
            let trained = fit(rows, None, &search, Scoring::default()).unwrap();
            let mut files = bundle_files(
                trained,
                &search,
                None,
                TrainingData::adult_data("test", rows.len()),
            );
            files.stamp(version);
            Arc::new(files.load(Scoring::default()).unwrap())
        };
        (
            bundle(&adult.train[..6_000], 2),
            bundle(&adult.train[..300], 1),
            adult.test,
        )
    }

    /// A challenger trained on 6,000 rows of adult.data where `biased` of women's `>50K` labels
    /// were turned, against the weak champion of [`models`].
    fn biased(share: f64) -> Arc<Bundle> {
        use crate::bundle::assemble::bundle_files;
        use crate::bundle::TrainingData;
        use crate::model::Scoring;
        use crate::train::{fit, SearchConfig};
        use rand::{Rng, SeedableRng};
        let adult =
            crate::data::load_adult(std::path::Path::new("data"), &crate::data::Fetch::Never)
                .expect("data/adult.*");
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let mut rows = adult.train[..6_000].to_vec();
        for r in rows.iter_mut().filter(|r| r.label && r.row.sex == "Female") {
            r.label = !rng.random_bool(share);
        }
        let mut search = SearchConfig::with_budget(2.try_into().unwrap());
        search.threads = 2.try_into().unwrap();
        let trained = fit(&rows, None, &search, Scoring::default()).unwrap();
        let mut files = bundle_files(
            trained,
            &search,
            None,
            TrainingData::adult_data("test", rows.len()),
        );
        files.stamp(3);
        Arc::new(files.load(Scoring::default()).unwrap())
    }

    /// adult.test's rows as stored rows.
    fn stored(test: &[crate::data::LabeledRow]) -> Vec<StoredRow> {
        test.iter()
            .enumerate()
            .map(|(i, r)| {
                let mut s = StoredRow::example(i as i64);
                s.row = r.row.clone();
                s.label = r.label;
                s
            })
            .collect()
    }

    #[test]
    fn a_challenger_better_in_loss_that_shuts_women_out_is_rejected_as_unfair() {
        let (fair, champion, test) = models();
        let unfair = biased(0.7);
        let rows = stored(&test[..8_000]);
        // Both conditions have 6,000 labels before either may decide.
        let settings = GateSettings {
            min_labels: 6_000,
            ..GateSettings::default()
        };
        let run = |challenger: &Arc<Bundle>, probation: bool| {
            let mut run = GateRun::new(
                challenger.clone(),
                champion.clone(),
                probation,
                BTreeMap::new(),
                settings,
            );
            run.feed(&rows);
            run
        };
        let biased = run(&unfair, false);
        assert_eq!(biased.gate.labels(), 6_000);
        // On its losses alone it would be promoted; the fairness condition rejects it.
        assert_eq!(biased.gate.decision(), Decision::Promote);
        assert_eq!(biased.decision(), Decision::Unfair);
        let e = biased.evidence();
        let gap = e.fairness.as_ref().unwrap();
        assert!(gap.widened && gap.rate == "true-positive rate", "{e}");
        assert!(gap.interval[0] > settings.fairness_delta, "{e}");
        eprintln!("biased challenger: {e}");
        // The same challenger as a champion on probation against the fair former one is
        // rolled back: seen from the champion's side.
        let mut probation = GateRun::new(
            champion.clone(),
            unfair.clone(),
            true,
            BTreeMap::new(),
            settings,
        );
        probation.feed(&rows);
        assert_eq!(probation.decision(), Decision::Unfair);
        assert_eq!(probation.evidence().fairness.unwrap().checked, "champion");
        // A fair challenger, better in loss, is promoted.
        let fair = run(&fair, false);
        assert_eq!(fair.decision(), Decision::Promote, "{}", fair.evidence());
        assert!(!fair.evidence().fairness.unwrap().widened);
    }

    #[test]
    fn a_gate_fed_only_rows_its_models_were_trained_on_ends_undecided_at_max_labels() {
        let (challenger, champion, test) = models();
        let rows: Vec<StoredRow> = test[..60]
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut s = StoredRow::example(i as i64);
                s.row = r.row.clone();
                s.label = r.label;
                s
            })
            .collect();
        let settings = GateSettings {
            min_labels: 20,
            max_labels: 50,
            ..GateSettings::default()
        };
        let run = |trained: bool| {
            let mut run = GateRun::new(
                challenger.clone(),
                champion.clone(),
                false,
                BTreeMap::new(),
                settings,
            );
            let base: HashSet<u64> = match trained {
                true => rows.iter().map(|r| content_key(&r.row, r.label)).collect(),
                false => HashSet::new(),
            };
            run.leave_out_trained(&base, &[]);
            run.feed(&rows);
            run
        };
        let starved = run(true);
        assert_eq!((starved.gate.labels(), starved.left_out), (0, 60));
        assert_eq!(starved.decision(), Decision::Reject { undecided: true });
        // Counted rows decide as before.
        let fed = run(false);
        assert_eq!(fed.left_out, 0);
        assert_eq!(fed.decision(), fed.gate.decision());
    }

    #[test]
    fn the_gate_decides_on_labels_come_late_and_shuffled_as_on_the_same_pairs_at_once() {
        use crate::kafka::InMessage;
        use crate::retrainer::LabelJoin;
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let (challenger, champion, test) = models();
        let n = 1_500;
        let request = |i: usize, inline: bool| {
            let mut body = serde_json::json!({
                "request_id": format!("r{i}"),
                "sent_at_ms": 1,
                "record": test[i].row,
            });
            if inline {
                body["income_bracket"] = crate::data::label_text(test[i].label).into();
            }
            InMessage {
                topic: "census.requests".into(),
                partition: (i % 3) as i32,
                offset: (i / 3) as i64,
                key: None,
                payload: Some(serde_json::to_vec(&body).unwrap()),
                timestamp_ms: None,
            }
        };
        let label = |i: usize, offset: i64| InMessage {
            topic: "census.labels".into(),
            partition: 0,
            offset,
            key: None,
            payload: Some(
                serde_json::to_vec(&serde_json::json!({
                    "request_id": format!("r{i}"),
                    "income_bracket": crate::data::label_text(test[i].label),
                    "labeled_at_ms": 2,
                }))
                .unwrap(),
            ),
            timestamp_ms: None,
        };
        let dir = tempfile::tempdir().unwrap();
        let window = std::time::Duration::from_secs(900);
        let open = |name: &str| LabelJoin::open(&dir.path().join(name), "census.labels", window);

        // At once: every request carries its label.
        let mut at_once = open("a.jsonl").unwrap();
        let requests: Vec<InMessage> = (0..n).map(|i| request(i, true)).collect();
        let rows_at_once = at_once.join(&requests, 0).rows;

        // Late, out of order, in batches: the requests first, then their labels shuffled.
        let mut late = open("b.jsonl").unwrap();
        let requests: Vec<InMessage> = (0..n).map(|i| request(i, false)).collect();
        let mut rows_late = late.join(&requests, 0).rows;
        assert!(rows_late.is_empty());
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(3));
        for (k, chunk) in order.chunks(100).enumerate() {
            let batch: Vec<InMessage> = chunk
                .iter()
                .enumerate()
                .map(|(j, &i)| label(i, (k * 100 + j) as i64))
                .collect();
            rows_late.extend(late.join(&batch, 60_000).rows);
        }

        // The same pairs, each once.
        let pairs = |rows: &[StoredRow]| -> BTreeMap<(i32, i64), bool> {
            rows.iter()
                .map(|r| ((r.partition, r.offset), r.label))
                .collect()
        };
        assert_eq!(rows_at_once.len(), n);
        assert_eq!(rows_late.len(), n);
        assert_eq!(pairs(&rows_at_once), pairs(&rows_late));

        // The same decision.
        let decide = |rows: &[StoredRow]| {
            let mut run = GateRun::new(
                challenger.clone(),
                champion.clone(),
                false,
                BTreeMap::new(),
                GateSettings::default(),
            );
            run.feed(rows);
            run.decision()
        };
        let (at_once, late) = (decide(&rows_at_once), decide(&rows_late));
        assert_eq!(at_once, Decision::Promote, "a clearly better challenger");
        assert_eq!(at_once, late);
    }
}
