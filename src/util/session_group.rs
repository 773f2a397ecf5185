//! The retrainer's share of the host's cores against other services. On Linux the scheduler
//! divides the cores first between scheduling groups, then between the threads of each group:
//! a thread's nice value orders it only against threads of its own group. Outside a cgroup of
//! its own (systemd unit, container), a process's group is its session's *autogroup* (every
//! terminal, every `setsid`). So a retrainer started from its own terminal takes half the cores
//! from the predictors of another terminal whatever its threads' nice values, until its
//! autogroup's own nice value (`/proc/self/autogroup`) is raised. Raising it lowers every process
//! of the session: it is done only when no other process shares the session but the
//! retrainer's ancestors (its shell), checked again while it runs, and undone at exit (not
//! after a SIGKILL: the session then stays lowered until it ends).

use std::collections::HashSet;
use std::fs;

/// What [`SessionGroup::settle`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// The session's group runs at this nice value, set here.
    Lowered { group: String, nice: i32 },
    /// Other processes share the session (pid and name): left at (or put back to) nice 0.
    Shared { group: String, others: Vec<String> },
    /// No autogroup to lower (not Linux, autogroup off, or a cgroup sets the share); why.
    Unavailable(String),
    /// Asked for nice 0: nothing to do.
    Unchanged,
}

impl std::fmt::Display for Standing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Standing::Lowered { group, nice } => write!(
                f,
                "its scheduling group ({group}, its session alone) runs at nice {nice}: \
                 services of other sessions keep their cores while it trains"
            ),
            Standing::Shared { group, others } => write!(
                f,
                "its scheduling group ({group}) is left at nice 0: its session is shared with \
                 {}. Start the retrainer in a session of its own (its own terminal, `setsid`, a \
                 service unit) to give predictors on this host their cores while it trains",
                others.join(", ")
            ),
            Standing::Unavailable(why) => write!(f, "its scheduling group is left alone: {why}"),
            Standing::Unchanged => write!(f, "its scheduling group is left alone (nice 0 asked)"),
        }
    }
}

/// The retrainer's session group, lowered while alone; put back at nice 0 when dropped.
#[derive(Debug)]
pub struct SessionGroup {
    nice: i32,
    lowered: bool,
    last: Option<Standing>,
}

impl SessionGroup {
    /// A group to run at `nice` (0 to 19) when the session is the retrainer's alone.
    pub fn new(nice: i32) -> Self {
        SessionGroup {
            nice: nice.clamp(0, 19),
            lowered: false,
            last: None,
        }
    }

    /// Looks at the session's members and lowers the group, or puts it back; returns what it
    /// found when that differs from the last call's (`None`: no change, nothing to log).
    pub fn settle(&mut self) -> Option<Standing> {
        let now = self.standing();
        (self.last.as_ref() != Some(&now)).then(|| {
            self.last = Some(now.clone());
            now
        })
    }

    fn standing(&mut self) -> Standing {
        if self.nice == 0 {
            return Standing::Unchanged;
        }
        let group = match own_autogroup() {
            Ok(g) => g,
            Err(why) => return Standing::Unavailable(why),
        };
        let others = others_in_group(&group.id);
        if !others.is_empty() {
            if self.lowered && set_own_autogroup_nice(0).is_ok() {
                self.lowered = false;
            }
            return Standing::Shared {
                group: group.id,
                others,
            };
        }
        if group.nice != self.nice {
            if let Err(e) = set_own_autogroup_nice(self.nice) {
                return Standing::Unavailable(format!("writing /proc/self/autogroup: {e}"));
            }
        }
        self.lowered = true;
        Standing::Lowered {
            group: group.id,
            nice: self.nice,
        }
    }
}

impl Drop for SessionGroup {
    /// The session (its shell) outlives the retrainer: its group goes back to nice 0. (Not
    /// after a SIGKILL: then the session stays lowered until it ends.)
    fn drop(&mut self) {
        if !self.lowered {
            return;
        }
        // The kernel takes one change of an autogroup's nice value a tenth of a second from an
        // unprivileged process (EAGAIN before).
        for _ in 0..10 {
            match set_own_autogroup_nice(0) {
                Ok(()) => return,
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                    std::thread::sleep(std::time::Duration::from_millis(110));
                }
                Err(e) => {
                    tracing::warn!("putting the session's scheduling group back at nice 0: {e}");
                    return;
                }
            }
        }
        tracing::warn!("putting the session's scheduling group back at nice 0: refused (EAGAIN)");
    }
}

/// Keeps the session's group lowered while the session is the retrainer's alone: settles it
/// now and every `every` until `stop`, logging each change; puts it back at nice 0 at the end.
pub async fn keep(
    nice: i32,
    every: std::time::Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut group = SessionGroup::new(nice);
    loop {
        match group.settle() {
            Some(s @ Standing::Shared { .. }) => tracing::warn!("retrainer: {s}"),
            Some(s) => tracing::info!("retrainer: {s}"),
            None => {}
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// An autogroup as `/proc/<pid>/autogroup` shows it: `/autogroup-251 nice 0`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Autogroup {
    id: String,
    nice: i32,
}

fn parse_autogroup(text: &str) -> Option<Autogroup> {
    let mut words = text.split_whitespace();
    let id = words.next()?.to_owned();
    (words.next()? == "nice").then_some(())?;
    let nice = words.next()?.parse().ok()?;
    Some(Autogroup { id, nice })
}

fn own_autogroup() -> Result<Autogroup, String> {
    if !cfg!(target_os = "linux") {
        return Err("not Linux".into());
    }
    match fs::read_to_string("/proc/sys/kernel/sched_autogroup_enabled") {
        Ok(s) if s.trim() == "1" => {}
        Ok(_) => return Err("autogroup is off (kernel.sched_autogroup_enabled = 0)".into()),
        Err(e) => return Err(format!("no autogroup in this kernel ({e})")),
    }
    if let Some(cgroup) = own_cpu_cgroup() {
        return Err(format!(
            "it runs in cpu cgroup {cgroup}, whose weight sets its share (systemd's CPUWeight=, \
             a container's cpu shares)"
        ));
    }
    let text = fs::read_to_string("/proc/self/autogroup")
        .map_err(|e| format!("reading /proc/self/autogroup: {e}"))?;
    parse_autogroup(&text).ok_or_else(|| format!("unexpected /proc/self/autogroup: {text:?}"))
}

fn set_own_autogroup_nice(nice: i32) -> std::io::Result<()> {
    fs::write("/proc/self/autogroup", nice.to_string())
}

/// The cpu cgroup the process is in, when not the root one (autogroups apply only there).
fn own_cpu_cgroup() -> Option<String> {
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    cpu_cgroup_of(&text, |parent| {
        fs::read_to_string(format!("/sys/fs/cgroup{parent}/cgroup.subtree_control"))
            .map(|c| c.split_whitespace().any(|w| w == "cpu"))
            .unwrap_or(false)
    })
}

/// From `/proc/<pid>/cgroup`'s text: the cgroup whose cpu controller holds the process, when
/// not the root. cgroup v1: the line naming `cpu`; v2 (`0::/path`): the path, when the root's
/// `subtree_control` enables `cpu` (`cpu_enabled_under("")`): the process is then in the cpu
/// cgroup of the nearest ancestor that has the controller, not in the root's. (Inside a cgroup
/// namespace, a container's, the path reads `/` and this cannot be told.)
fn cpu_cgroup_of(text: &str, cpu_enabled_under: impl Fn(&str) -> bool) -> Option<String> {
    let mut v2 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        if controllers.is_empty() {
            v2 = Some(path.to_owned());
        } else if controllers.split(',').any(|c| c == "cpu") {
            return (path != "/").then(|| path.to_owned());
        }
    }
    let path = v2.filter(|p| p != "/")?;
    cpu_enabled_under("").then_some(path)
}

/// Processes in autogroup `id` other than this one and its ancestors, as `pid (name)`.
fn others_in_group(id: &str) -> Vec<String> {
    let me = std::process::id();
    let ancestors = ancestors_of(me);
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut others = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me || ancestors.contains(&pid) {
            continue;
        }
        let Ok(text) = fs::read_to_string(format!("/proc/{pid}/autogroup")) else {
            continue; // gone, or not readable
        };
        if parse_autogroup(&text).is_some_and(|g| g.id == id) {
            let name = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            others.push(format!("{pid} ({})", name.trim()));
        }
    }
    others.sort();
    others
}

/// `pid`'s parent, its parent's parent, up to the first process.
fn ancestors_of(pid: u32) -> HashSet<u32> {
    let mut seen = HashSet::new();
    let mut at = pid;
    while let Some(parent) = fs::read_to_string(format!("/proc/{at}/stat"))
        .ok()
        .as_deref()
        .and_then(parent_in_stat)
    {
        if parent == 0 || !seen.insert(parent) {
            break;
        }
        at = parent;
    }
    seen
}

/// The parent pid in `/proc/<pid>/stat`: the second field after the name, which is in
/// parentheses and may itself hold spaces and parentheses.
fn parent_in_stat(stat: &str) -> Option<u32> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autogroup_lines_parse_and_junk_does_not() {
        assert_eq!(
            parse_autogroup("/autogroup-251 nice 0\n"),
            Some(Autogroup {
                id: "/autogroup-251".into(),
                nice: 0
            })
        );
        assert_eq!(
            parse_autogroup("/autogroup-7 nice 19").map(|g| g.nice),
            Some(19)
        );
        assert_eq!(parse_autogroup("/autogroup-7 weight 19"), None);
        assert_eq!(parse_autogroup(""), None);
    }

    #[test]
    fn the_parent_is_read_past_a_name_with_spaces_and_parentheses() {
        let stat = "4242 (a (weird) name) S 17 4242 4242 0 -1 4194560";
        assert_eq!(parent_in_stat(stat), Some(17));
        assert_eq!(parent_in_stat("no name here"), None);
    }

    #[test]
    fn a_cpu_cgroup_other_than_the_root_is_found_in_v1_and_v2() {
        let never = |_: &str| panic!("v1 needs no subtree_control");
        assert_eq!(cpu_cgroup_of("4:memory:/x\n1:cpu:/\n0::/\n", never), None);
        assert_eq!(
            cpu_cgroup_of("2:cpu,cpuacct:/system.slice/r.service\n", never),
            Some("/system.slice/r.service".into())
        );
        // v2: a cgroup other than the root counts where the root hands the cpu controller down.
        let v2 = "0::/app.slice/retrainer.scope\n";
        assert_eq!(
            cpu_cgroup_of(v2, |under| under.is_empty()),
            Some("/app.slice/retrainer.scope".into())
        );
        assert_eq!(cpu_cgroup_of(v2, |_| false), None);
        assert_eq!(cpu_cgroup_of("0::/\n", |_| true), None);
    }

    #[test]
    fn this_process_has_ancestors_and_is_not_among_them() {
        let me = std::process::id();
        let ancestors = ancestors_of(me);
        if cfg!(target_os = "linux") {
            assert!(ancestors.contains(&std::os::unix::process::parent_id()));
        }
        assert!(!ancestors.contains(&me));
    }

    #[test]
    fn nice_0_leaves_the_group_alone() {
        let mut g = SessionGroup::new(0);
        assert_eq!(g.settle(), Some(Standing::Unchanged));
        assert_eq!(g.settle(), None, "logged once");
    }
}
