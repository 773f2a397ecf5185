//! The dashboard in a real browser: Chromium, headless, driven over WebDriver (chromedriver)
//! while the demo's pipeline streams. `scripts/test.sh` installs both (Debian's `chromium` and
//! `chromium-driver`); in CI a missing browser fails the test rather than skipping it.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use census_stream::dashboard;
use census_stream::demo::{self, DemoConfig};
use census_stream::lifecycle::triggers::Triggers;
use census_stream::producer::Sink;
use census_stream::retrainer::Promotion;
use census_stream::settings::Rate;
use tokio_util::sync::CancellationToken;

use crate::helpers::{adult_dir, own_dashboard, small_search, test_kafka};
use crate::webdriver::Session;

/// The program named by `var`, else the first of `names` on the PATH.
fn program(var: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(var) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| names.iter().map(move |n| d.join(n)))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// chromedriver, killed when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn browser(driver: &std::path::Path, chromium: &std::path::Path) -> (Driver, Session) {
    let port = free_port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver(child);
    let caps = serde_json::json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1400,2000"],
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Session::new(&format!("http://127.0.0.1:{port}"), caps.clone()).await {
            Ok(c) => return (driver, c),
            Err(e) if Instant::now() > deadline => panic!("no WebDriver session: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

async fn text(c: &Session, css: &str) -> String {
    c.find(css)
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

/// A tile's figure, as the page shows it ("12,345").
async fn number(c: &Session, css: &str) -> u64 {
    let t = text(c, css).await;
    t.replace(',', "").parse().unwrap_or(0)
}

async fn wait_for<F, Fut>(what: &str, within: Duration, mut ok: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !ok().await {
        assert!(Instant::now() < deadline, "waited {within:?} for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The request ids of the explained predictions shown, newest first.
async fn explained_ids(c: &Session) -> Vec<String> {
    let ids = c
        .execute(
            "return [...document.querySelectorAll('#explained li[data-request]')]\
             .map((e) => e.dataset.request);",
            vec![],
        )
        .await
        .expect("a script runs in the page");
    serde_json::from_value(ids).expect("a list of ids")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_page_follows_the_stream_and_shows_a_retrain_in_a_real_browser() {
    let (Some(driver), Some(chromium)) = (
        program("CHROMEDRIVER", &["chromedriver"]),
        program(
            "CHROMIUM",
            &["chromium", "chromium-browser", "google-chrome"],
        ),
    ) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium and chromedriver are needed (scripts/test.sh installs them)"
        );
        eprintln!("SKIPPED: no chromium/chromedriver (scripts/test.sh installs them)");
        return;
    };
    let Some(data_dir) = adult_dir() else { return };
    let kafka = test_kafka(3).await;
    let stop = CancellationToken::new();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let board = dashboard::start(own_dashboard(&kafka.settings, addr), stop.clone())
        .await
        .expect("dashboard starts");
    let url = board.url.clone();

    // The demo's pipeline: a weak v1, then retrains every 1,500 labeled rows, gated.
    let pipeline = demo::run(
        DemoConfig {
            kafka: kafka.settings.clone(),
            embedded: false,
            data_dir,
            rows: 14_000,
            rate: Rate::new(400.0).unwrap(),
            retrain_every: std::num::NonZeroUsize::new(1500).unwrap(),
            search: small_search(2),
            scoring: crate::helpers::scoring(),
            bootstrap_rows: Some(1000),
            promotion: Promotion::Gate(Default::default()),
            shuffle_labels: false,
            biased_challenger: None,
            triggers: Triggers::default(),
            sink: Sink::new(std::io::sink()),
            status: None,
            dashboard: None,
            stay: false,
            // As the demo: labels 2 s late on average, 80 % labelled.
            labels: Some(census_stream::producer::LabelPlan {
                delay: Duration::from_secs(2),
                spread: census_stream::producer::Spread::Uniform,
                fraction: 0.8,
                seed: 0,
            }),
            scenario: None,
            // One in 20 explained: the importance of each minute rests on 20 predictions a
            // second.
            explain: census_stream::predictor::Explain::Sample(0.05),
        },
        stop.child_token(),
    );
    let (summary, ()) = tokio::join!(
        pipeline,
        watch_the_page(&driver, &chromium, &url, board, &stop)
    );
    summary.expect("the pipeline ran");
}

/// What a person would see: the page, its figures moving, a retrain arriving; then the page
/// noticing that its dashboard is gone.
async fn watch_the_page(
    driver: &std::path::Path,
    chromium: &std::path::Path,
    url: &str,
    board: dashboard::Dashboard,
    stop: &CancellationToken,
) {
    let (_driver, c) = browser(driver, chromium).await;
    c.goto(url).await.expect("the page loads");
    assert_eq!(c.title().await.unwrap(), "census-stream · live");

    wait_for(
        "predictions on the page",
        Duration::from_secs(120),
        || async { number(&c, "#t-predictions-total").await > 0 },
    )
    .await;
    // The same page, not reloaded: only its event stream can move the counter. A mark set on
    // the page's window would be gone after a reload.
    c.execute("window.censusMark = 'before';", vec![])
        .await
        .expect("a script runs in the page");
    let first = number(&c, "#t-predictions-total").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let second = number(&c, "#t-predictions-total").await;
    assert!(
        second > first,
        "the counter stayed at {first} while the stream ran"
    );
    let mark = c
        .execute("return window.censusMark;", vec![])
        .await
        .unwrap();
    assert_eq!(
        mark, "before",
        "the page was reloaded between the two reads"
    );

    // Reasons: a sample of predictions is explained by default (the demo's predictors).
    wait_for(
        "an explained prediction on the page",
        Duration::from_secs(120),
        || async {
            c.find_all("#explained li[data-request]")
                .await
                .map_or(0, |l| l.len())
                > 0
        },
    )
    .await;
    let first_explained = explained_ids(&c).await;
    // Figures per group, on the labeled predictions.
    let male_tpr = "#groups table[data-attribute='sex'] tr[data-group='Male'] td:nth-child(4)";
    wait_for(
        "figures per group on the page",
        Duration::from_secs(60),
        || async {
            c.find_all("#groups table[data-attribute='sex'] tr[data-group='Female']")
                .await
                .map_or(0, |l| l.len())
                == 1
        },
    )
    .await;
    let first_groups = text(&c, "#groups-hint").await;
    let tpr = text(&c, male_tpr).await;
    assert!(
        tpr.starts_with("0.") && tpr.contains('['),
        "men's TPR with its interval: {tpr:?}"
    );
    let eo = text(&c, "#gaps div[data-attribute='sex'] .eo").await;
    assert!(eo.contains('['), "the sex gap with its interval: {eo:?}");
    let reasons = c.find_all("#explained li .reason").await.unwrap();
    assert!(
        !reasons.is_empty(),
        "an explained prediction without reasons"
    );

    wait_for(
        "a retrain on the timeline",
        Duration::from_secs(150),
        || async {
            c.find_all("#timeline li[data-kind='trained']")
                .await
                .map_or(0, |l| l.len())
                >= 2
        },
    )
    .await;
    // Charts and tables catch up with the retrain for a few updates.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let v1_accuracy = text(&c, "#versions tr[data-version='1'] td:nth-child(5)").await;
    assert!(v1_accuracy.ends_with('%'), "v1's accuracy: {v1_accuracy:?}");
    assert!(
        !c.find_all("#c-accuracy svg path").await.unwrap().is_empty(),
        "no accuracy line drawn"
    );
    let importance = c.find_all("#importance .row").await.unwrap();
    assert_eq!(
        importance.len(),
        census_stream::features::N_FEATURES,
        "a bar per feature"
    );
    // Attribution over time: the champion's largest features, minute by minute.
    let attribution = c.find_all("#c-attribution svg path").await.unwrap();
    assert_eq!(
        attribution.len(),
        5,
        "a line per feature of the five largest"
    );
    let attribution_hint = text(&c, "#attribution-hint").await;
    assert!(
        attribution_hint.contains("Shift of the last minute from the whole"),
        "{attribution_hint:?}"
    );
    let later_groups = text(&c, "#groups-hint").await;
    assert!(
        later_groups.contains("served predictions with labels") && later_groups != first_groups,
        "the figures per group did not move: {later_groups:?}"
    );
    let later_explained = explained_ids(&c).await;
    assert_ne!(
        later_explained, first_explained,
        "the explained predictions did not move"
    );
    let rate = number(&c, "#t-predictions-rate").await;
    assert!(rate > 0, "the screenshot would show no throughput");
    let png = c.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"));
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::write(&shot, &png).unwrap();
    eprintln!(
        "dashboard screenshot: {} ({} bytes; {rate} predictions/s shown)",
        shot.display(),
        png.len()
    );

    // With the dashboard gone, the page must say its figures are stale.
    stop.cancel();
    board.finished().await.expect("the dashboard stops cleanly");
    wait_for(
        "the page to say it is stale",
        Duration::from_secs(15),
        || async { text(&c, "#status").await.contains("no update") },
    )
    .await;
    c.close().await.unwrap();
}
