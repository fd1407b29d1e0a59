//! A real browser for the console's tests: headless Chromium driven by
//! ChromeDriver over the W3C WebDriver protocol.
//!
//! The protocol is a dozen JSON calls over loopback HTTP, made here with
//! the reqwest client the tests already use; the WebDriver crates would
//! bring a TLS stack and Unicode segmentation tables into the build for it.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::processes::free_port;

/// The W3C key of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Keys as WebDriver names them.
pub(crate) const TAB: &str = "\u{E004}";
pub(crate) const ENTER: &str = "\u{E007}";

/// One browser session, closed (and its driver stopped) on drop.
pub(crate) struct Browser {
    http: reqwest::Client,
    session: String,
    _driver: Child,
}

/// An element of the current page.
#[derive(Debug, Clone)]
pub(crate) struct Element(String);

impl Browser {
    /// Starts ChromeDriver and a headless Chromium at 1280×800; `None`
    /// (with a note) on a machine without them: `.ci/run` installs them.
    pub(crate) async fn start() -> Option<Browser> {
        let driver_path = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists());
        let Some(driver_path) = driver_path else {
            eprintln!("SKIPPED: no chromedriver (install Debian's chromium and chromium-driver, as .ci/run does)");
            return None;
        };
        let port = free_port();
        let driver = Command::new(driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("client");
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            // Destructive buttons ask "are you sure?"; the test answers.
            "unhandledPromptBehavior": "ignore",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,800"],
            },
        }}});
        let answer: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .expect("session")
            .json()
            .await
            .expect("json");
        let session = answer["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {answer}"));
        Some(Browser { http, session: format!("{base}/session/{session}"), _driver: driver })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.expect("webdriver").json().await.expect("webdriver json");
        if let Some(error) = answer["value"].get("error") {
            panic!("webdriver {path}: {error}: {}", answer["value"]["message"]);
        }
        answer["value"].clone()
    }

    pub(crate) async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    pub(crate) async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None).await.as_str().unwrap_or_default().to_owned()
    }

    pub(crate) async fn set_size(&self, width: u32, height: u32) {
        self.call(reqwest::Method::POST, "/window/rect", Some(json!({"width": width, "height": height}))).await;
    }

    /// The elements matching a CSS selector now.
    pub(crate) async fn all(&self, css: &str) -> Vec<Element> {
        let found =
            self.call(reqwest::Method::POST, "/elements", Some(json!({"using": "css selector", "value": css}))).await;
        found
            .as_array()
            .map(|a| a.iter().filter_map(|e| e[ELEMENT].as_str().map(|id| Element(id.to_owned()))).collect())
            .unwrap_or_default()
    }

    /// The first element matching `css`, waiting up to 20 s for it.
    pub(crate) async fn find(&self, css: &str) -> Element {
        let started = Instant::now();
        loop {
            if let Some(element) = self.all(css).await.into_iter().next() {
                return element;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "no {css} on {}", self.url().await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) async fn click(&self, element: &Element) {
        self.call(reqwest::Method::POST, &format!("/element/{}/click", element.0), Some(json!({}))).await;
    }

    /// Types into an element (WebDriver key codes such as [`ENTER`] included).
    pub(crate) async fn type_into(&self, element: &Element, text: &str) {
        self.call(reqwest::Method::POST, &format!("/element/{}/value", element.0), Some(json!({"text": text}))).await;
    }

    /// Presses a key on whatever has the focus, as a person would.
    pub(crate) async fn press(&self, key: &str) {
        let actions = json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
            {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}]}]});
        self.call(reqwest::Method::POST, "/actions", Some(actions)).await;
    }

    /// The visible text of the whole page; empty while a page is being
    /// replaced by the next (a form's redirect, a live refresh).
    pub(crate) async fn page_text(&self) -> String {
        let script = json!({"script": "return document.body ? document.body.innerText : ''", "args": []});
        let answer: Value = match self.http.post(format!("{}/execute/sync", self.session)).json(&script).send().await {
            Ok(response) => response.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        answer["value"].as_str().unwrap_or_default().to_owned()
    }

    /// Runs a script in the page; its return value.
    pub(crate) async fn script(&self, script: &str) -> Value {
        self.call(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": []}))).await
    }

    /// Waits up to `limit` for the page's text to satisfy `check`.
    pub(crate) async fn wait_for_text(&self, limit: Duration, what: &str, check: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let text = self.page_text().await;
            if check(&text) {
                return text;
            }
            assert!(started.elapsed() < limit, "waited {limit:?} for {what}; the page says:\n{text}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The window as a PNG.
    pub(crate) async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let encoded = self.call(reqwest::Method::GET, "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD.decode(encoded.as_str().unwrap_or_default()).expect("base64 PNG")
    }

    /// Says yes to the page's "are you sure?" question.
    pub(crate) async fn accept_prompt(&self) {
        let started = Instant::now();
        loop {
            let answer: Value = self
                .http
                .post(format!("{}/alert/accept", self.session))
                .json(&json!({}))
                .send()
                .await
                .expect("webdriver")
                .json()
                .await
                .expect("json");
            if answer["value"].get("error").is_none() {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "no question was asked: {answer}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Ends the session, so Chromium exits before its driver is stopped.
    pub(crate) async fn close(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}
