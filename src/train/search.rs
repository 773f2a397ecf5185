//! Hyperparameter search: a warm start, then argmin's particle swarm (derivative-free, bounded
//! box, seeded) minimizes the cross-validated log loss. The warm start is [`ANCHOR`], the point
//! an offline CV study chose: evaluated first (generation 0), it sets the bar the swarm's
//! evaluations are pruned against, and the swarm must beat it to be chosen. Each swarm
//! generation is evaluated in parallel on a pool of `threads` workers; every evaluation is
//! deterministic, so the search is reproducible whatever the thread timing.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use argmin::core::{CostFunction, Error as ArgminError, Executor};
use argmin::solver::particleswarm::ParticleSwarm;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio_util::sync::CancellationToken;

use super::cv::{cross_validate, CvScore, FoldSets, Matrix};
use super::TrainError;
use crate::settings::Folds;
use crate::train::space::{bounds, Hyperparams, ANCHOR};

/// Swarm size: ten particles, as few generations as the budget allows.
const MAX_PARTICLES: usize = 10;

/// Settings of a search, valid by construction.
#[derive(Debug, Clone)]
pub struct SearchConfig {
    /// Evaluations, each a full cross-validation.
    pub max_evals: NonZeroUsize,
    pub folds: Folds,
    /// Seed of the folds, the search and LightGBM.
    pub seed: u64,
    /// Evaluations run in parallel.
    pub threads: NonZeroUsize,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Give up a cross-validation as soon as it cannot beat the best of the generations before
    /// its own ([`cross_validate`]'s target).
    pub prune: bool,
    /// Cancelled: the search stops within one boosting round and fails with
    /// [`TrainError::Cancelled`].
    pub cancel: CancellationToken,
    /// How the final model's scores are calibrated.
    pub calibrate: Calibrate,
    /// The nice value of the threads that train (0: as the caller's; the retrainer's are
    /// higher, so that predictors on the same host keep their cores).
    pub nice: i32,
}

/// How a trained model's scores are calibrated (`--calibrate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Calibrate {
    /// Platt's scaling fitted on out-of-fold predictions, folded into the model.
    #[default]
    Platt,
    /// LightGBM's scores as they are.
    None,
}

impl SearchConfig {
    /// A search of `max_evals` evaluations with the default folds and seed, on every core.
    pub fn with_budget(max_evals: NonZeroUsize) -> Self {
        SearchConfig {
            max_evals,
            folds: Folds::default(),
            seed: crate::defaults::SEED,
            threads: crate::defaults::threads(),
            progress: false,
            prune: true,
            cancel: CancellationToken::new(),
            calibrate: Calibrate::default(),
            nice: 0,
        }
    }
}

/// One evaluated point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trial {
    pub params: Hyperparams,
    pub score: CvScore,
    /// The swarm generation it belongs to (0: the first).
    pub generation: usize,
}

/// The search's result.
#[derive(Debug, Clone)]
pub struct SearchOutcome {
    pub best: Trial,
    /// Every evaluation, in the order they finished.
    pub trials: Vec<Trial>,
    pub evaluations: usize,
    pub elapsed: Duration,
}

impl SearchOutcome {
    /// The CV log loss of every evaluation, in the order they finished.
    pub fn log_losses(&self) -> Vec<f64> {
        self.trials.iter().map(|t| t.score.logloss).collect()
    }
}

struct CvObjective<'a> {
    cancel: &'a CancellationToken,
    data: &'a Matrix,
    folds: &'a [usize],
    k: usize,
    seed: u64,
    /// Particles a generation: evaluations started so far tell the generation, as the swarm
    /// evaluates one generation in full before it moves (its first is generation 1, after the
    /// anchor's 0).
    particles: usize,
    started: AtomicUsize,
    /// Give up evaluations that cannot beat the earlier generations' best.
    prune: bool,
    trials: Mutex<Vec<Trial>>,
    bar: ProgressBar,
    /// Datasets of the folds, built once per worker thread and reused by its evaluations.
    sets: Mutex<Vec<FoldSets>>,
}

/// argmin's executor owns its problem; the search keeps the objective to read its trials.
struct Shared<'o, 'a>(&'o CvObjective<'a>);

impl CostFunction for Shared<'_, '_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, point: &Vec<f64>) -> Result<f64, ArgminError> {
        self.0.evaluate(point, None)
    }
}

impl CvObjective<'_> {
    /// Cross-validates `point`; `generation` is given for the anchor, counted for the swarm's.
    fn evaluate(&self, point: &[f64], generation: Option<usize>) -> Result<f64, ArgminError> {
        let params = Hyperparams::from_point(point);
        let started = std::time::Instant::now();
        let generation = generation
            .unwrap_or_else(|| 1 + self.started.fetch_add(1, Ordering::SeqCst) / self.particles);
        // Only finished generations set the bar, so that it does not depend on the order in
        // which this generation's evaluations finish: the search stays reproducible.
        let target = self.prune.then(|| {
            self.trials
                .lock()
                .expect("trial list poisoned")
                .iter()
                .filter(|t| t.generation < generation)
                .map(|t| t.score.logloss)
                .fold(f64::INFINITY, f64::min)
        });
        let spare = self.sets.lock().expect("fold sets poisoned").pop();
        let sets = match spare {
            Some(s) => s,
            None => FoldSets::new(self.data, self.folds, self.k)?,
        };
        let target = target.filter(|t| t.is_finite());
        let score = cross_validate(&sets, &params, self.seed, self.cancel, target);
        self.sets.lock().expect("fold sets poisoned").push(sets);
        let score = score?;
        let mut trials = self.trials.lock().expect("trial list poisoned");
        trials.push(Trial {
            params,
            score,
            generation,
        });
        let best = trials
            .iter()
            .map(|t| t.score.logloss)
            .fold(f64::INFINITY, f64::min);
        self.bar.set_message(format!("best CV log loss {best:.5}"));
        self.bar.inc(1);
        tracing::debug!(
            "evaluation {} (generation {generation}): log loss {:.5} at {} rounds{} in {:.2} s, \
             {params:?}",
            trials.len(),
            score.logloss,
            score.rounds,
            if score.abandoned { ", given up" } else { "" },
            started.elapsed().as_secs_f64()
        );
        Ok(score.logloss)
    }
}

/// The swarm's shape for a budget that counts the anchor: (particles, generations after the
/// first); no particles for a budget of one.
fn swarm_shape(max_evals: NonZeroUsize) -> (usize, u64) {
    let swarm = max_evals.get() - 1;
    if swarm == 0 {
        return (0, 0);
    }
    let particles = swarm.clamp(1, MAX_PARTICLES);
    (particles, ((swarm / particles).max(1) - 1) as u64)
}

/// Searches the space for the hyperparameters with the lowest CV log loss.
pub fn search(
    data: &Matrix,
    folds: &[usize],
    config: &SearchConfig,
) -> Result<SearchOutcome, TrainError> {
    let (particles, generations) = swarm_shape(config.max_evals);
    let planned = 1 + particles * (generations as usize + 1);
    let bar = if config.progress {
        ProgressBar::new(planned as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} search [{bar:30}] {pos}/{len} evals, {msg}, {elapsed} elapsed, ~{eta} left",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(250));
    let objective = CvObjective {
        cancel: &config.cancel,
        data,
        folds,
        k: config.folds.get(),
        seed: config.seed,
        particles,
        started: AtomicUsize::new(0),
        prune: config.prune,
        trials: Mutex::new(Vec::with_capacity(planned)),
        bar: bar.clone(),
        sets: Mutex::new(Vec::new()),
    };
    let start = std::time::Instant::now();
    let nice = config.nice;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.threads.get())
        .start_handler(move |_| crate::util::priority::nice_this_thread(nice))
        .build()?;
    let failed = |e: ArgminError| {
        if config.cancel.is_cancelled() {
            TrainError::Cancelled
        } else {
            TrainError::Search(e.into())
        }
    };
    pool.install(|| objective.evaluate(&ANCHOR, Some(0)))
        .map_err(failed)?;
    if particles > 0 {
        let solver = ParticleSwarm::new(bounds(), particles)
            .with_rng_generator(StdRng::seed_from_u64(config.seed));
        pool.install(|| {
            Executor::new(Shared(&objective), solver)
                .configure(|state| state.max_iters(generations))
                .run()
        })
        .map_err(failed)?;
    }
    bar.finish_and_clear();

    let trials = objective.trials.into_inner().expect("trial list poisoned");
    // Lowest loss wins; ties go to the fewer rounds, then to the smaller learning rate, so the
    // choice does not depend on the order parallel evaluations finished in.
    let best = trials
        .iter()
        .copied()
        .min_by(|a, b| {
            a.score
                .logloss
                .total_cmp(&b.score.logloss)
                .then(a.score.rounds.cmp(&b.score.rounds))
                .then(a.params.learning_rate.total_cmp(&b.params.learning_rate))
        })
        .ok_or(TrainError::NoEvaluation)?;
    Ok(SearchOutcome {
        best,
        evaluations: trials.len(),
        trials,
        elapsed: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::swarm_shape;
    use std::num::NonZeroUsize;

    fn nz(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).unwrap()
    }

    #[test]
    fn the_budget_is_never_exceeded() {
        for budget in 1..120 {
            let (p, g) = swarm_shape(nz(budget));
            // The swarm's generations leave room for the anchor.
            assert!(p * (g as usize + 1) < budget, "budget {budget}");
        }
        assert_eq!(swarm_shape(nz(51)), (10, 4));
        assert_eq!(swarm_shape(nz(50)), (10, 3));
        assert_eq!(swarm_shape(nz(5)), (4, 0));
        assert_eq!(swarm_shape(nz(1)), (0, 0));
    }
}
