//! The fault suite's harness: the broker it may kill and restart, the real binaries as child
//! processes, a stream of requests, and the oracle that reads every topic to its end.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use census_stream::kafka::{KafkaSettings, Topics};
use census_stream::producer::{self, Input, LabelPlan, ProducerConfig, Summary};
use census_stream::settings::Rate;
use census_stream::stream::messages::{Label, Prediction};
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

/// The real broker of the suite: where it listens and its state folder (the pid file to kill
/// it, and `scripts/kafka-local.sh start` to restart it on the same data).
pub struct Broker {
    pub brokers: String,
    state_dir: PathBuf,
}

impl Broker {
    /// The broker `scripts/test.sh` started: `KAFKA_BROKERS` and `KAFKA_LOCAL_DIR` (with the
    /// `KAFKA_*` variables `scripts/kafka-local.sh` reads). The suite needs both: it is run only
    /// by the test command's real-broker stage, never skipped.
    pub fn from_env() -> Broker {
        let need = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!("the fault suite needs {name}: run it with scripts/test.sh")
            })
        };
        Broker {
            brokers: need("KAFKA_BROKERS"),
            state_dir: PathBuf::from(need("KAFKA_LOCAL_DIR")),
        }
    }

    fn pid(&self) -> i32 {
        let text = std::fs::read_to_string(self.state_dir.join("kafka.pid")).expect("pid file");
        text.trim().parse().expect("a pid")
    }

    /// SIGKILL, as a crashed machine would stop it.
    pub fn kill(&self) {
        kill(self.pid(), libc::SIGKILL);
        let pid = self.pid();
        wait_until("the broker to die", 30, || !alive(pid));
    }

    /// SIGSTOP: the broker stops answering, its connections open (a long GC pause, a frozen
    /// VM).
    pub fn pause(&self) {
        kill(self.pid(), libc::SIGSTOP);
    }

    /// SIGCONT after [`Self::pause`].
    pub fn resume(&self) {
        kill(self.pid(), libc::SIGCONT);
    }

    /// Starts it again on the same data; returns when it answers.
    pub fn start(&self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka-local.sh");
        // A broker that recovers many partitions under load takes longer than a fresh one.
        let out = Command::new(script)
            .arg("start")
            .env("KAFKA_START_TIMEOUT", "240")
            .output()
            .expect("kafka-local.sh runs");
        if !out.status.success() {
            let listening = Command::new("ss").arg("-ltnp").output();
            let listening = listening.map_or_else(
                |e| e.to_string(),
                |o| String::from_utf8_lossy(&o.stdout).into_owned(),
            );
            let console = std::fs::read_to_string(self.state_dir.join("logs/console.log"));
            panic!(
                "restarting the broker: {}\nlistening:\n{listening}\nconsole:\n{}",
                String::from_utf8_lossy(&out.stderr),
                console.unwrap_or_default()
            );
        }
    }
}

pub fn kill(pid: i32, signal: i32) {
    // SAFETY: kill with a pid and a signal has no memory effects in this process.
    unsafe {
        libc::kill(pid, signal);
    }
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

pub fn wait_until(what: &str, secs: u64, done: impl FnMut() -> bool) {
    wait_until_else(what, secs, done, String::new)
}

/// [`wait_until`], saying what `state` gives when it times out.
pub fn wait_until_else(
    what: &str,
    secs: u64,
    mut done: impl FnMut() -> bool,
    state: impl Fn() -> String,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} {}",
            state()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A folder for one scenario's files and service logs, kept under the target folder after the
/// run (`CARGO_TARGET_TMPDIR/faults`) so that a failure can be read afterwards.
pub fn work_dir(scenario: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("faults")
        .join(format!("{scenario}-{}", now_ms()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn now_ms() -> i64 {
    census_stream::stream::messages::now_ms()
}

pub fn data_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data");
    assert!(
        dir.join("adult.test").exists(),
        "the fault suite needs the Adult data set in data/ (scripts/test.sh copies it)"
    );
    dir
}

/// A bundle v1 made once by the real `initialize` (a small search), shared read-only.
pub fn bundle_v1() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_initialize"))
            .args(["--offline", "--max-evals=2", "--folds=2"])
            .arg(format!("--data-dir={}", data_dir().display()))
            .arg(format!(
                "--models-dir={}",
                dir.path().join("models").display()
            ))
            .arg(format!(
                "--processors-dir={}",
                dir.path().join("dataprocessors").display()
            ))
            .env("NO_COLOR", "1")
            .output()
            .expect("initialize runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
    .path()
}

/// Fresh topics of one scenario on the suite's broker.
pub async fn scenario_settings(broker: &Broker, partitions: i32) -> KafkaSettings {
    let tag = format!("{:08x}", rand::random::<u32>());
    let mut s = KafkaSettings::new(broker.brokers.clone());
    s.partitions = partitions;
    s.topics = Topics {
        requests: format!("faults-{tag}.requests"),
        predictions: format!("faults-{tag}.predictions"),
        dlq: format!("faults-{tag}.dlq"),
        labels: format!("faults-{tag}.labels"),
        models: format!("faults-{tag}.models"),
    };
    s.ensure_topics().await.expect("topics created");
    s
}

/// A service binary running as a child process, its log in a file.
pub struct Service {
    pub child: Child,
    pub log: PathBuf,
}

impl Service {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn sigkill(&mut self) {
        kill(self.pid(), libc::SIGKILL);
        let _ = self.child.wait();
    }

    pub fn sigterm_and_wait(&mut self) {
        kill(self.pid(), libc::SIGTERM);
        let _ = self.child.wait();
    }

    /// Whether it has exited (for a fault point: killed itself).
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A scenario that fails leaves no process behind to disturb the next ones.
impl Drop for Service {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The flags that point a binary at a scenario's topics.
pub fn kafka_flags(s: &KafkaSettings) -> Vec<String> {
    let mut flags = vec![
        format!("--brokers={}", s.brokers),
        format!("--requests-topic={}", s.topics.requests),
        format!("--predictions-topic={}", s.topics.predictions),
        format!("--dlq-topic={}", s.topics.dlq),
        format!("--labels-topic={}", s.topics.labels),
        format!("--models-topic={}", s.topics.models),
    ];
    // To read a failure's librdkafka side: e.g. FAULTS_KAFKA_DEBUG=cgrp,topic and
    // FAULTS_RUST_LOG=info,librdkafka=debug.
    if let Ok(contexts) = std::env::var("FAULTS_KAFKA_DEBUG") {
        flags.push(format!("--kafka-config=debug={contexts}"));
    }
    flags
}

/// Starts `bin` with `args`, a log file in `work`, and `fault` armed (`name:n`) if given.
pub fn spawn(bin: &str, args: &[String], work: &Path, name: &str, fault: Option<&str>) -> Service {
    let log = work.join(format!("{name}-{}.log", now_ms()));
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .env(
            "RUST_LOG",
            std::env::var("FAULTS_RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .env("NO_COLOR", "1")
        .env_remove(census_stream::util::fault::ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    if let Some(f) = fault {
        cmd.env(census_stream::util::fault::ENV, f);
    }
    Service {
        child: cmd.spawn().expect("binary starts"),
        log,
    }
}

/// The name to give [`predictor_with`] for a predictor started without `--instance-id` (its
/// default identity: the host's name and a slot on this host).
pub const DEFAULT_IDENTITY: &str = "";

/// A predictor of `group` serving the shared bundle v1, a static member named `instance`.
pub fn predictor(
    s: &KafkaSettings,
    work: &Path,
    group: &str,
    instance: &str,
    fault: Option<&str>,
) -> Service {
    predictor_with(s, work, group, instance, fault, &[])
}

/// A predictor as [`predictor`], with more flags.
pub fn predictor_with(
    s: &KafkaSettings,
    work: &Path,
    group: &str,
    instance: &str,
    fault: Option<&str>,
    flags: &[&str],
) -> Service {
    let v1 = bundle_v1();
    let mut args = kafka_flags(s);
    args.extend(flags.iter().map(|f| f.to_string()));
    args.extend([
        format!("--group={group}"),
        format!("--models-dir={}", v1.join("models").display()),
        format!("--processors-dir={}", v1.join("dataprocessors").display()),
    ]);
    if instance != DEFAULT_IDENTITY {
        args.push(format!("--instance-id={instance}"));
    }
    let name = match instance {
        DEFAULT_IDENTITY => "predictor",
        named => named,
    };
    spawn(env!("CARGO_BIN_EXE_predictor"), &args, work, name, fault)
}

/// The flags of a retrainer child of `group` named `instance`, its store in `store` and its
/// rows in `rows_file`, reading adult.data from the suite's data folder.
pub fn retrainer_flags(
    s: &KafkaSettings,
    group: &str,
    instance: &str,
    store: &Path,
    rows_file: &Path,
) -> Vec<String> {
    let mut args = kafka_flags(s);
    args.extend([
        format!("--group={group}"),
        format!("--instance-id={instance}"),
        format!("--models-dir={}", store.join("models").display()),
        format!(
            "--processors-dir={}",
            store.join("dataprocessors").display()
        ),
        format!("--data-dir={}", data_dir().display()),
        format!("--rows-file={}", rows_file.display()),
        // The test's session (its shell, cargo, CI) is not the retrainer's to lower.
        "--session-nice=0".to_owned(),
    ]);
    args
}

/// Streams `n` rows of adult.test at `rate` records/s into the scenario's requests topic; the
/// summary comes when every answer arrived or `wait` passed after the last send.
pub fn stream(
    s: &KafkaSettings,
    n: usize,
    rate: f64,
    wait: Duration,
) -> tokio::task::JoinHandle<Summary> {
    stream_labelled(s, n, rate, wait, None)
}

/// As [`stream`], with the labels sent apart on the labels topic when `labels` is given.
pub fn stream_labelled(
    s: &KafkaSettings,
    n: usize,
    rate: f64,
    wait: Duration,
    labels: Option<LabelPlan>,
) -> tokio::task::JoinHandle<Summary> {
    let mut prod = ProducerConfig::new(s.clone(), Input::Uci(data_dir().join("adult.test")));
    prod.limit = Some(n);
    prod.rate = Rate::new(rate).unwrap();
    prod.wait = wait;
    prod.show_per_sec = 0;
    prod.labels = labels;
    tokio::spawn(async move {
        producer::run(prod, CancellationToken::new())
            .await
            .expect("the producer runs")
    })
}

/// One message read back, as the oracle needs it.
struct Read {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: HashMap<String, String>,
}

/// Every message of `topic`, from its beginning to its end as of now, as a `read_committed`
/// reader sees it: records of aborted transactions left out. A transaction's commit marker
/// takes an offset but never reaches the reader, so the end is the partition's end-of-file
/// event, not the last offset.
async fn read_all(s: &KafkaSettings, topic: &str) -> Vec<Read> {
    let mut s = s.clone();
    s.consumer_extra
        .insert("enable.partition.eof".into(), "true".into());
    let ends: BTreeMap<i32, i64> = s.end_offsets(topic).await.unwrap().into_iter().collect();
    let reader: StreamConsumer = s.reader().unwrap();
    s.assign_all(&reader, topic, false).await.unwrap();
    let mut at_end = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    while at_end.len() < ends.len() {
        let m = tokio::time::timeout(Duration::from_secs(30), reader.recv())
            .await
            .unwrap_or_else(|_| panic!("{topic}: read {} messages, then nothing", out.len()));
        let m = match m {
            Err(rdkafka::error::KafkaError::PartitionEOF(p)) => {
                at_end.insert(p);
                continue;
            }
            m => m.unwrap(),
        };
        if m.offset() >= ends[&m.partition()] {
            at_end.insert(m.partition());
            continue;
        }
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        let v = String::from_utf8_lossy(h.value.unwrap_or_default());
                        (h.key.to_owned(), v.into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(Read {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
            headers,
        });
    }
    out
}

/// What the oracle found.
#[derive(Debug, Default)]
pub struct Verdict {
    pub requests: usize,
    pub lost: Vec<(i32, i64)>,
    pub duplicates: usize,
    /// Request offsets per partition with their answers: predictions and dead letters.
    answers: HashMap<(i32, i64), usize>,
    /// Predictions' `(sent_at_ms, predicted_at_ms)`, in no order.
    times_ms: Vec<(i64, i64)>,
}

/// Reads `census.requests`, `census.predictions` and `census.dlq` to their ends: every request
/// offset with the predictions and dead letters that answer it.
pub async fn oracle(s: &KafkaSettings) -> Verdict {
    let requests = read_all(s, &s.topics.requests).await;
    let mut v = Verdict {
        requests: requests.len(),
        ..Verdict::default()
    };
    for p in read_all(s, &s.topics.predictions).await {
        let prediction: Prediction =
            serde_json::from_slice(p.payload.as_deref().unwrap()).expect("a prediction");
        assert_eq!(p.key.as_deref(), Some(prediction.request_id.as_bytes()));
        *v.answers
            .entry((prediction.partition, prediction.offset))
            .or_default() += 1;
        v.times_ms
            .push((prediction.sent_at_ms, prediction.predicted_at_ms));
    }
    for d in read_all(s, &s.topics.dlq).await {
        let at = |k: &str| d.headers[k].parse::<i64>().unwrap();
        *v.answers
            .entry((at("dlq.source.partition") as i32, at("dlq.source.offset")))
            .or_default() += 1;
    }
    for r in &requests {
        match v.answers.get(&(r.partition, r.offset)) {
            None => v.lost.push((r.partition, r.offset)),
            Some(&n) => v.duplicates += n - 1,
        }
    }
    v
}

impl Verdict {
    /// Each prediction's send time and how long its request waited for it.
    pub fn waits_ms(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.times_ms.iter().map(|&(sent, at)| (sent, at - sent))
    }

    /// The request offsets below `committed` that have no answer (must be none: a commit
    /// never passes an unanswered record).
    pub fn unanswered_below(&self, committed: &BTreeMap<i32, i64>) -> Vec<(i32, i64)> {
        let mut out = Vec::new();
        for (&p, &c) in committed {
            for o in 0..c {
                if !self.answers.contains_key(&(p, o)) {
                    out.push((p, o));
                }
            }
        }
        out
    }
}

/// The group's committed offsets on the requests topic (partitions without one are left out).
/// Offsets in a transaction still open (a killed exactly-once predictor's) do not count: a
/// `read_uncommitted` client gets the last stable ones at once, where a `read_committed` one
/// would wait for the transaction to end.
pub async fn committed(s: &KafkaSettings, group: &str) -> BTreeMap<i32, i64> {
    let ends = s.end_offsets(&s.topics.requests).await.unwrap();
    let mut tpl = TopicPartitionList::new();
    for (p, _) in &ends {
        tpl.add_partition(&s.topics.requests, *p);
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &s.brokers)
        .set("group.id", group)
        .set("isolation.level", "read_uncommitted")
        .create()
        .unwrap();
    let got = tokio::task::spawn_blocking(move || {
        consumer.committed_offsets(tpl, Duration::from_secs(10))
    })
    .await
    .unwrap()
    .expect("committed offsets");
    got.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// The group's lag on the requests topic: records not committed yet.
pub async fn lag(s: &KafkaSettings, group: &str) -> i64 {
    let ends = s.end_offsets(&s.topics.requests).await.unwrap();
    let c = committed(s, group).await;
    ends.iter()
        .map(|(p, e)| e - c.get(p).copied().unwrap_or(0))
        .sum()
}

/// Waits until the group has committed every request (lag 0); returns how long it took.
pub async fn wait_for_lag_zero(
    s: &KafkaSettings,
    group: &str,
    secs: u64,
) -> Result<Duration, String> {
    let started = Instant::now();
    loop {
        let lag = lag(s, group).await;
        if lag == 0 {
            return Ok(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(secs) {
            return Err(format!("group {group} still has lag {lag} after {secs} s"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The first prediction made after `after_ms`, if any: when the stream came back.
pub fn first_after(v: &Verdict, after_ms: i64) -> Option<i64> {
    v.times_ms
        .iter()
        .map(|&(_, at)| at)
        .filter(|&t| t > after_ms)
        .min()
}

/// Prints one scenario's figures as one line, for the suite's output.
pub fn report(scenario: &str, v: &Verdict, kills: usize, recovery: &[Duration]) {
    let worst = recovery.iter().max().map_or(0.0, Duration::as_secs_f64);
    eprintln!(
        "fault suite | {scenario}: records {}, kills {kills}, lost {}, duplicates {}, \
         recovery worst {worst:.2} s (each: {:?})",
        v.requests,
        v.lost.len(),
        v.duplicates,
        recovery
            .iter()
            .map(|d| format!("{:.2}", d.as_secs_f64()))
            .collect::<Vec<_>>()
    );
}

/// The keys and payloads of a transactional topic (the registry), in order: read until the
/// topic has been quiet for two seconds (its control records take offsets of their own, so the
/// end offset is no stopping point).
pub async fn read_registry_records(s: &KafkaSettings) -> Vec<(String, Vec<u8>)> {
    let reader: StreamConsumer = s.reader().unwrap();
    s.assign_all(&reader, &s.topics.models, false)
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Ok(m) = tokio::time::timeout(Duration::from_secs(2), reader.recv()).await {
        let m = m.unwrap();
        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
        out.push((key, m.payload().unwrap_or_default().to_vec()));
    }
    out
}

/// The (partition, offset) of every request that carries a valid label: what the retrainer
/// must keep, once each.
pub async fn labeled_requests(s: &KafkaSettings) -> std::collections::BTreeSet<(i32, i64)> {
    read_all(s, &s.topics.requests)
        .await
        .into_iter()
        .filter(|r| {
            census_stream::stream::decode::decode_request(r.payload.as_deref())
                .ok()
                .and_then(|q| q.income_bracket)
                .and_then(|l| census_stream::data::parse_label(&l))
                .is_some()
        })
        .map(|r| (r.partition, r.offset))
        .collect()
}

/// The (partition, offset) of every request whose label came apart on the labels topic, with
/// that label (true for >50K): what a retrainer joining them must keep, once each.
pub async fn labelled_apart(s: &KafkaSettings) -> BTreeMap<(i32, i64), bool> {
    let labels: HashMap<String, bool> = read_all(s, &s.topics.labels)
        .await
        .into_iter()
        .filter_map(|r| {
            let l: Label = serde_json::from_slice(r.payload.as_deref()?).ok()?;
            Some((
                l.request_id,
                census_stream::data::parse_label(&l.income_bracket)?,
            ))
        })
        .collect();
    read_all(s, &s.topics.requests)
        .await
        .into_iter()
        .filter_map(|r| {
            let q = census_stream::stream::decode::decode_request(r.payload.as_deref()).ok()?;
            Some(((r.partition, r.offset), *labels.get(&q.request_id)?))
        })
        .collect()
}

/// The reason and error of every dead letter on the scenario's DLQ.
pub async fn dead_letters(s: &KafkaSettings) -> Vec<(String, String)> {
    read_all(s, &s.topics.dlq)
        .await
        .into_iter()
        .map(|d| {
            let h = |k: &str| d.headers.get(k).cloned().unwrap_or_default();
            (h("dlq.reason"), h("dlq.error"))
        })
        .collect()
}

/// A copy of the shared bundle v1's folders, for a service that writes to its store.
pub fn store_copy(into: &Path) {
    for folder in ["models", "dataprocessors"] {
        let to = into.join(folder);
        std::fs::create_dir_all(&to).unwrap();
        for entry in std::fs::read_dir(bundle_v1().join(folder)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// A free TCP port on this host (for a service's HTTP address).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The value of the Prometheus sample `name` (labels included, e.g.
/// `census_model_version{role="champion"}`) at `http://127.0.0.1:port/metrics`, if it answers.
pub fn scrape(port: u16, name: &str) -> Option<f64> {
    let text = ureq::get(&format!("http://127.0.0.1:{port}/metrics"))
        .call()
        .ok()?
        .body_mut()
        .read_to_string()
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}
