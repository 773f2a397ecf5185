//! The page: one HTML file with its script and style, built into the binary (no CDN, nothing
//! fetched from elsewhere). The first response already shows the figures and carries the state
//! the script draws its charts from; server-sent events keep it current.

use std::sync::Arc;

use super::snapshot::Snapshot;

const TEMPLATE: &str = include_str!("page/index.html");
pub const SCRIPT: &str = include_str!("page/app.js");
pub const STYLE: &str = include_str!("page/style.css");

/// The state as the page gets it: the snapshot's JSON, and the tiles' figures already
/// rendered for the first response.
#[derive(Debug, Clone, Default)]
pub struct Published {
    pub json: Arc<str>,
    pub tiles: Arc<Tiles>,
}

/// The figures of the tiles at the top, as text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tiles {
    pub requests_per_s: String,
    pub predictions_per_s: String,
    pub p50: String,
    pub p99: String,
    pub lag: String,
    pub predictions_total: String,
    pub dead_letters_total: String,
    pub labels_pending: String,
    pub champion: String,
    pub challenger: String,
}

/// 1234567 as "1,234,567".
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn millis(ms: Option<f64>) -> String {
    ms.map_or_else(|| "–".to_owned(), |m| format!("{m:.1} ms"))
}

impl Tiles {
    pub fn of(s: &Snapshot) -> Self {
        let version = |a: &Option<super::snapshot::AliasView>| {
            a.as_ref()
                .and_then(|a| a.version)
                .map_or_else(|| "none".to_owned(), |v| format!("v{v}"))
        };
        Tiles {
            requests_per_s: format!("{:.0}", s.requests_per_s),
            predictions_per_s: format!("{:.0}", s.predictions_per_s),
            p50: millis(s.p50_ms),
            p99: millis(s.p99_ms),
            lag: s
                .lag
                .map_or_else(|| "–".to_owned(), |l| grouped(l.max(0) as u64)),
            predictions_total: grouped(s.totals.predictions),
            dead_letters_total: grouped(s.totals.dead_letters),
            labels_pending: grouped(s.totals.labels_pending),
            champion: version(&s.champion),
            challenger: version(&s.challenger),
        }
    }
}

/// The page with `state` in it.
pub fn render(state: &Published) -> String {
    let t = &state.tiles;
    // The JSON goes inside a <script> element, which nothing in it may close or comment out:
    // '<' only appears inside JSON strings, where \u003c means the same.
    let json = state.json.replace('<', "\\u003c");
    TEMPLATE
        .replace("{{requests_per_s}}", &t.requests_per_s)
        .replace("{{predictions_per_s}}", &t.predictions_per_s)
        .replace("{{p50}}", &t.p50)
        .replace("{{p99}}", &t.p99)
        .replace("{{lag}}", &t.lag)
        .replace("{{predictions_total}}", &t.predictions_total)
        .replace("{{dead_letters_total}}", &t.dead_letters_total)
        .replace("{{labels_pending}}", &t.labels_pending)
        .replace("{{champion}}", &t.champion)
        .replace("{{challenger}}", &t.challenger)
        .replace("{{version}}", env!("CARGO_PKG_VERSION"))
        .replace("{{state}}", &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1234567), "1,234,567");
    }

    #[test]
    fn the_state_cannot_close_its_script_element() {
        let published = Published {
            json: r#"{"reason": "</script><script>alert(1)</script>"}"#.into(),
            tiles: Default::default(),
        };
        let html = render(&published);
        assert!(!html.contains("</script><script>alert"));
        assert!(html.contains(r#"\u003c/script>\u003cscript>alert(1)\u003c/script>"#));
    }
}
