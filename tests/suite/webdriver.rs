//! A small W3C WebDriver client (https://www.w3.org/TR/webdriver2/), enough for the browser
//! test: a session, navigation, the page's title, elements found by CSS selector and their text,
//! scripts, screenshots. Blocking HTTP with ureq; every call runs on tokio's blocking pool, so an
//! async test can drive the browser while other futures of its task (the pipeline) keep running.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

/// The key of a web element's id in WebDriver's JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A command the driver refused or could not be sent.
#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Clone, Copy)]
enum Method {
    Get,
    Post,
    Delete,
}

/// One browser session on a WebDriver server (chromedriver).
#[derive(Clone)]
pub struct Session {
    agent: ureq::Agent,
    /// The session's URL: `{server}/session/{id}`.
    url: String,
}

/// An element of the page, by its WebDriver id.
pub struct Element {
    session: Session,
    id: String,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(5)))
        .timeout_global(Some(Duration::from_secs(120)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// Sends one command and returns the `value` of its answer, or the driver's error.
fn command(agent: &ureq::Agent, method: Method, url: &str, body: Option<&Value>) -> Result<Value> {
    let sent = match method {
        Method::Get => agent.get(url).call(),
        Method::Delete => agent.delete(url).call(),
        Method::Post => agent
            .post(url)
            .header("Content-Type", "application/json; charset=utf-8")
            .send(body.unwrap_or(&json!({})).to_string()),
    };
    let mut response = sent.map_err(|e| Error(format!("{url}: {e}")))?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(256 << 20)
        .read_to_string()
        .map_err(|e| Error(format!("{url}: {e}")))?;
    let mut answer: Value = serde_json::from_str(&text)
        .map_err(|e| Error(format!("{url}: answer is not JSON ({e}): {text:.200}")))?;
    let value = answer["value"].take();
    if (200..300).contains(&status) {
        return Ok(value);
    }
    Err(Error(format!(
        "{url}: {status} {}: {}",
        value["error"].as_str().unwrap_or("error"),
        value["message"].as_str().unwrap_or(&text)
    )))
}

impl Session {
    /// A new session on the WebDriver server at `server` (`http://host:port`), with
    /// `capabilities` as its `alwaysMatch` capabilities.
    pub async fn new(server: &str, capabilities: Value) -> Result<Session> {
        let agent = agent();
        let url = format!("{}/session", server.trim_end_matches('/'));
        let body = json!({ "capabilities": { "alwaysMatch": capabilities } });
        let a = agent.clone();
        let u = url.clone();
        let value = blocking(move || command(&a, Method::Post, &u, Some(&body))).await?;
        let id = value["sessionId"]
            .as_str()
            .ok_or_else(|| Error(format!("no sessionId in the new session's answer: {value}")))?;
        Ok(Session {
            agent,
            url: format!("{url}/{id}"),
        })
    }

    /// Sends `method` to `path` under the session's URL, on the blocking pool.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        let agent = self.agent.clone();
        let url = format!("{}{path}", self.url);
        blocking(move || command(&agent, method, &url, body.as_ref())).await
    }

    /// Navigates to `url`; returns once the page has loaded.
    pub async fn goto(&self, url: &str) -> Result<()> {
        self.call(Method::Post, "/url", Some(json!({ "url": url })))
            .await
            .map(drop)
    }

    /// The page's title.
    pub async fn title(&self) -> Result<String> {
        let v = self.call(Method::Get, "/title", None).await?;
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| Error(format!("title is not a string: {v}")))
    }

    /// The first element that the CSS selector `css` matches; an error when there is none.
    pub async fn find(&self, css: &str) -> Result<Element> {
        let v = self
            .call(Method::Post, "/element", Some(by_css(css)))
            .await?;
        self.element(&v)
    }

    /// Every element that the CSS selector `css` matches (none is not an error).
    pub async fn find_all(&self, css: &str) -> Result<Vec<Element>> {
        let v = self
            .call(Method::Post, "/elements", Some(by_css(css)))
            .await?;
        v.as_array()
            .ok_or_else(|| Error(format!("elements are not a list: {v}")))?
            .iter()
            .map(|e| self.element(e))
            .collect()
    }

    fn element(&self, v: &Value) -> Result<Element> {
        let id = v[ELEMENT_KEY]
            .as_str()
            .ok_or_else(|| Error(format!("not an element: {v}")))?;
        Ok(Element {
            session: self.clone(),
            id: id.to_owned(),
        })
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page and returns what
    /// it returns.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        let body = json!({ "script": script, "args": args });
        self.call(Method::Post, "/execute/sync", Some(body)).await
    }

    /// A screenshot of the window, as PNG.
    pub async fn screenshot(&self) -> Result<Vec<u8>> {
        let v = self.call(Method::Get, "/screenshot", None).await?;
        let b64 = v
            .as_str()
            .ok_or_else(|| Error(format!("screenshot is not a string: {v}")))?;
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| Error(format!("screenshot is not base64: {e}")))
    }

    /// Ends the session (the browser closes).
    pub async fn close(self) -> Result<()> {
        self.call(Method::Delete, "", None).await.map(drop)
    }
}

impl Element {
    /// The element's rendered text.
    pub async fn text(&self) -> Result<String> {
        let path = format!("/element/{}/text", self.id);
        let v = self.session.call(Method::Get, &path, None).await?;
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| Error(format!("text is not a string: {v}")))
    }
}

fn by_css(css: &str) -> Value {
    json!({ "using": "css selector", "value": css })
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error(format!("the WebDriver call panicked: {e}")))?
}
