//! A service's readiness as named probes: each says, when asked, whether its part is ready and
//! why (or why not). `/readyz` asks them all; `/healthz` only says the process answers.

use std::sync::{Arc, Mutex};

/// What a probe says: `Ok(detail)` when ready, `Err(why not)`.
pub type Answer = Result<String, String>;

type Probe = Arc<dyn Fn() -> Answer + Send + Sync>;

/// The probes of one service. Cheap to clone; every clone shares them.
#[derive(Clone, Default)]
pub struct Health {
    probes: Arc<Mutex<Vec<(&'static str, Probe)>>>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.lock().iter().map(|(n, _)| *n).collect();
        f.debug_struct("Health").field("probes", &names).finish()
    }
}

impl Health {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(&'static str, Probe)>> {
        self.probes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds (or replaces) the probe `name`. A probe may block briefly (a broker round trip):
    /// [`Self::check`] runs off the async runtime.
    pub fn set(&self, name: &'static str, probe: impl Fn() -> Answer + Send + Sync + 'static) {
        let mut probes = self.lock();
        probes.retain(|(n, _)| *n != name);
        probes.push((name, Arc::new(probe)));
    }

    /// Removes the probe `name` (its part has stopped).
    pub fn remove(&self, name: &'static str) {
        self.lock().retain(|(n, _)| *n != name);
    }

    /// Every probe's answer, in the order they were added (blocking).
    pub fn check(&self) -> Vec<(&'static str, Answer)> {
        let probes: Vec<(&'static str, Probe)> = self.lock().clone();
        probes.into_iter().map(|(n, p)| (n, p())).collect()
    }

    /// Ready: at least one probe, and all say ready.
    pub fn ready(answers: &[(&'static str, Answer)]) -> bool {
        !answers.is_empty() && answers.iter().all(|(_, a)| a.is_ok())
    }

    /// The answers as text, a line each: `ok    group: …` or `NOT   registry: …`.
    pub fn report(answers: &[(&'static str, Answer)]) -> String {
        if answers.is_empty() {
            return "NOT   starting: nothing to check yet\n".to_owned();
        }
        answers
            .iter()
            .map(|(name, a)| match a {
                Ok(detail) => format!("ok    {name}: {detail}\n"),
                Err(why) => format!("NOT   {name}: {why}\n"),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_probe_says_so() {
        let h = Health::default();
        assert!(!Health::ready(&h.check()), "no probe: not ready yet");
        h.set("group", || Ok("member".into()));
        assert!(Health::ready(&h.check()));
        let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let f = flag.clone();
        h.set("registry", move || {
            match f.load(std::sync::atomic::Ordering::Relaxed) {
                true => Ok("in step".into()),
                false => Err("behind".into()),
            }
        });
        let answers = h.check();
        assert!(!Health::ready(&answers));
        assert_eq!(
            Health::report(&answers),
            "ok    group: member\nNOT   registry: behind\n"
        );
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(Health::ready(&h.check()));
        h.remove("registry");
        assert_eq!(h.check().len(), 1);
    }
}
