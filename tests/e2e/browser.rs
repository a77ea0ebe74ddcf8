//! Headless Chromium driven over the DevTools protocol: what the tests of pages (the demo page,
//! the bench report) see in a real browser.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use wsctl_tests::dev::http_get;
use wsctl_tests::{die_with_parent, target_dir};

const CHROMIUM: &str = "/usr/bin/chromium";

pub struct Browser {
    child: std::process::Child,
    _profile: tempfile::TempDir,
    port: u16,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Chromium, headless, showing `url`.
pub fn chromium(url: &str) -> Browser {
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)"
    );
    let profile = tempfile::tempdir().expect("profile dir");
    let mut cmd = Command::new(CHROMIUM);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        "--window-size=1000,700",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .arg(url)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    die_with_parent(&mut cmd);
    let child = cmd.spawn().expect("start chromium");
    // Chromium writes the port it chose into the profile.
    let file = profile.path().join("DevToolsActivePort");
    let started = Instant::now();
    let port = loop {
        if let Some(port) = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse().ok()))
        {
            break port;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "chromium did not open its DevTools port"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    Browser {
        child,
        _profile: profile,
        port,
    }
}

impl Browser {
    /// The page it opened.
    pub async fn page(&self) -> Page {
        let targets: Value = serde_json::from_str(
            &http_get(&format!("http://127.0.0.1:{}/json/list", self.port)).await,
        )
        .expect("targets");
        let target = targets
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .expect("a page target")
            .clone();
        let (ws, _) = tokio_tungstenite::connect_async(
            target["webSocketDebuggerUrl"]
                .as_str()
                .expect("debugger URL"),
        )
        .await
        .expect("CDP connect");
        Page { ws, id: 0 }
    }
}

pub struct Page {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    id: u64,
}

impl Page {
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.id += 1;
        let id = self.id;
        self.ws
            .send(Message::text(
                json!({"id": id, "method": method, "params": params}).to_string(),
            ))
            .await
            .expect("CDP send");
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(20), self.ws.next())
                .await
                .expect("CDP answer")
                .expect("CDP open")
                .expect("CDP frame");
            if let Message::Text(t) = msg {
                let v: Value = serde_json::from_str(t.as_str()).expect("CDP JSON");
                if v["id"] == id {
                    return v;
                }
            }
        }
    }

    pub async fn eval(&mut self, expression: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        assert!(
            r["result"]["exceptionDetails"].is_null(),
            "{expression}: {r}"
        );
        r["result"]["result"]["value"].clone()
    }

    /// Until `expression` is truthy; `shown` says what the page showed instead if it never is.
    pub async fn wait_for(&mut self, what: &str, expression: &str, shown: &str) -> Value {
        let started = Instant::now();
        loop {
            let v = self.eval(expression).await;
            if !v.is_null() && v != json!(false) {
                return v;
            }
            if started.elapsed() > Duration::from_secs(20) {
                panic!(
                    "the page never showed {what}; it shows: {}",
                    self.eval(shown).await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A screenshot in the target directory, for people reading the test output; with
    /// `WSCTL_UPDATE_DOCS` set, also the book's picture of the same name
    /// (`docs/src/images/NAME`), so the book shows the page as it is.
    pub async fn screenshot(&mut self, name: &str) {
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await;
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["result"]["data"].as_str().expect("a screenshot"))
            .expect("PNG");
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");
        std::fs::write(target_dir().join(name), &png).expect("write the screenshot");
        if std::env::var_os("WSCTL_UPDATE_DOCS").is_some() {
            let book = wsctl_tests::root().join("docs/src/images").join(name);
            std::fs::write(&book, &png).expect("write the book's picture");
        }
    }
}
