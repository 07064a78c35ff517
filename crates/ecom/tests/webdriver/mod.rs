//! A thin WebDriver client over reqwest, driving Debian's Chromium through
//! chromedriver: the few commands the browser tests need (open a page,
//! find by label or text, click, type, read, screenshot), each retried
//! until a deadline, since pages change as answers arrive.
//!
//! The driver is found as `chromedriver` on the PATH (or `ECOM_CHROMEDRIVER`);
//! without it [`Browser::start`] returns `None` and the test prints a note,
//! except when `CI=true`, where a missing browser is a failure.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

/// How long a step may take before the test fails: long enough for an
/// order to pass through the bus and a 2 s poll of the order page.
pub const PATIENCE: Duration = Duration::from_secs(30);
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A browser session, with its driver process and profile directory.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    _driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

/// An element of the current page.
#[derive(Clone)]
pub struct Element(String);

fn find_program(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

fn quote(text: &str) -> String {
    if text.contains('\'') {
        format!("\"{text}\"")
    } else {
        format!("'{text}'")
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile at
    /// 1280×800; `None` (with a note) when chromedriver is not installed
    /// outside CI.
    pub async fn start() -> Option<Browser> {
        let Some(driver) = find_program("ECOM_CHROMEDRIVER", &["chromedriver"]) else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("chromedriver is not installed: CI must run the browser tests (.ci/run installs chromium-driver)");
            }
            eprintln!("note: chromedriver not found: browser test skipped (apt-get install chromium chromium-driver)");
            return None;
        };
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let child = tokio::process::Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver.display()));
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let ready = match http.get(format!("{base}/status")).send().await {
                Ok(r) => r.json::<Value>().await.is_ok_and(|v| v["value"]["ready"] == true),
                Err(_) => false,
            };
            if ready {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let mut options = json!({
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1280,800",
                format!("--user-data-dir={}", profile.path().display()),
            ]
        });
        if let Some(chromium) = find_program("ECOM_CHROMIUM", &["chromium", "chromium-browser"]) {
            options["binary"] = json!(chromium.display().to_string());
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": options,
        }}});
        let resp: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = resp["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {resp}"))
            .to_owned();
        Some(Browser {
            http,
            session: format!("{base}/session/{id}"),
            _driver: child,
            _profile: profile,
        })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let mut req = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        let ok = resp.status().is_success();
        let value: Value = resp.json().await.map_err(|e| e.to_string())?;
        if ok {
            Ok(value["value"].clone())
        } else {
            Err(format!(
                "{}: {}",
                value["value"]["error"], value["value"]["message"]
            ))
        }
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, String> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// Opens `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await.unwrap();
    }

    /// Reloads the page and waits for it to load.
    pub async fn refresh(&self) {
        self.post("/refresh", json!({})).await.unwrap();
    }

    /// Runs `script` (a function body) in the page; its return value.
    pub async fn exec(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": args }))
            .await
            .unwrap()
    }

    /// The page's visible text.
    pub async fn text(&self) -> String {
        self.exec("return document.body.innerText;", json!([]))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until the page's text contains `needle`.
    pub async fn wait_text(&self, needle: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let text = self.text().await;
            if text.contains(needle) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("the page never showed {needle:?}; it shows:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Elements matching an XPath expression.
    async fn all(&self, xpath: &str) -> Vec<Element> {
        self.post("/elements", json!({ "using": "xpath", "value": xpath }))
            .await
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|e| e[ELEMENT].as_str().map(|s| Element(s.to_owned())))
            .collect()
    }

    async fn usable(&self, e: &Element) -> bool {
        let shown = self.get(&format!("/element/{}/displayed", e.0)).await;
        let enabled = self.get(&format!("/element/{}/enabled", e.0)).await;
        shown.is_ok_and(|v| v == true) && enabled.is_ok_and(|v| v == true)
    }

    /// Waits for a displayed, enabled element matching `xpath`.
    pub async fn find(&self, xpath: &str) -> Element {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            for e in self.all(xpath).await {
                if self.usable(&e).await {
                    return e;
                }
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "no usable element {xpath}; the page shows:\n{}",
                    self.text().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the first usable element matching `xpath`, retrying while the
    /// page changes under it.
    pub async fn click(&self, xpath: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let e = self.find(xpath).await;
            match self.post(&format!("/element/{}/click", e.0), json!({})).await {
                Ok(_) => return,
                Err(err) if tokio::time::Instant::now() > deadline => panic!("cannot click {xpath}: {err}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Clicks the button whose text is `text`.
    pub async fn button(&self, text: &str) {
        self.click(&format!("//button[normalize-space(.)={}]", quote(text)))
            .await;
    }

    /// Clicks the link whose text is `text`.
    pub async fn link(&self, text: &str) {
        self.click(&format!("//a[normalize-space(.)={}]", quote(text)))
            .await;
    }

    /// Clicks the button or link whose accessible name (aria-label) is `label`.
    pub async fn labelled(&self, label: &str) {
        self.click(&format!("//*[@aria-label={}]", quote(label))).await;
    }

    /// Types `value` into the input labelled `label` (a `<label for>` whose
    /// text is the label, with or without the required-field star), or
    /// whose aria-label is `label`.
    pub async fn fill(&self, label: &str, value: &str) {
        let l = quote(label);
        let starred = quote(&format!("{label} *"));
        let xpath = format!(
            "//input[@id=//label[normalize-space(.)={l} or normalize-space(.)={starred}]/@for] \
             | //textarea[@id=//label[normalize-space(.)={l} or normalize-space(.)={starred}]/@for] \
             | //input[@aria-label={l}]"
        );
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let e = self.find(&xpath).await;
            let done = async {
                self.post(&format!("/element/{}/clear", e.0), json!({})).await?;
                self.post(&format!("/element/{}/value", e.0), json!({ "text": value }))
                    .await
            }
            .await;
            match done {
                Ok(_) => return,
                Err(err) if tokio::time::Instant::now() > deadline => {
                    panic!("cannot type into {label}: {err}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Types `keys` into whatever has the focus, one key at a time, as a
    /// person would (for editors whose input element is hidden). Control is
    /// `\u{E009}`, held for the next key only.
    pub async fn keys(&self, keys: &str) {
        let mut actions = Vec::new();
        let mut chars = keys.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\u{E009}' {
                if let Some(next) = chars.next() {
                    actions.push(json!({"type": "keyDown", "value": c.to_string()}));
                    actions.push(json!({"type": "keyDown", "value": next.to_string()}));
                    actions.push(json!({"type": "keyUp", "value": next.to_string()}));
                    actions.push(json!({"type": "keyUp", "value": c.to_string()}));
                }
                continue;
            }
            actions.push(json!({"type": "keyDown", "value": c.to_string()}));
            actions.push(json!({"type": "keyUp", "value": c.to_string()}));
        }
        self.post(
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]}),
        )
        .await
        .unwrap();
    }

    /// Sets the window size (the page reflows to it).
    pub async fn resize(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({ "width": width, "height": height }))
            .await
            .unwrap();
    }

    /// Makes the viewport exactly `width`×`height` CSS pixels at scale 1
    /// (`mobile` adds a phone's viewport rules), through chromedriver's
    /// DevTools passthrough: a window size would include the browser's frame.
    pub async fn emulate(&self, width: u32, height: u32, mobile: bool) {
        self.post(
            "/goog/cdp/execute",
            json!({"cmd": "Emulation.setDeviceMetricsOverride", "params": {
                "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}}),
        )
        .await
        .unwrap();
    }

    /// Undoes [`Browser::emulate`].
    pub async fn stop_emulating(&self) {
        self.post(
            "/goog/cdp/execute",
            json!({"cmd": "Emulation.clearDeviceMetricsOverride", "params": {}}),
        )
        .await
        .unwrap();
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        let data = self.get("/screenshot").await.unwrap();
        base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap())
            .unwrap()
    }

    /// Opens a new tab (its own sessionStorage: another person's window) and
    /// switches to it; its handle.
    pub async fn new_tab(&self) -> String {
        let v = self.post("/window/new", json!({ "type": "tab" })).await.unwrap();
        let handle = v["handle"].as_str().unwrap().to_owned();
        self.switch_to(&handle).await;
        handle
    }

    /// The handle of the current tab.
    pub async fn tab(&self) -> String {
        self.get("/window").await.unwrap().as_str().unwrap().to_owned()
    }

    /// Switches to the tab `handle`.
    pub async fn switch_to(&self, handle: &str) {
        self.post("/window", json!({ "handle": handle })).await.unwrap();
    }

    /// Every URL the current page loaded (document, scripts, styles, icons,
    /// fetches).
    pub async fn loaded_urls(&self) -> Vec<String> {
        let v = self
            .exec(
                "return [location.href].concat(performance.getEntriesByType('resource').map(e => e.name));",
                json!([]),
            )
            .await;
        v.as_array()
            .unwrap()
            .iter()
            .filter_map(|u| u.as_str().map(str::to_owned))
            .collect()
    }

    /// Ends the session (Chromium exits; the driver is killed on drop).
    pub async fn quit(self) {
        let _ = self.call(reqwest::Method::DELETE, "", None).await;
    }
}
