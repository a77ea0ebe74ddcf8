//! README's run command (`wsctl dev` on the repository's own wsctl.yaml), and its demo page in
//! headless Chromium, driven over the DevTools protocol: join, send, see the message come back
//! through the channel.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use wsctl_tests::dev::{Dev, http_get};
use wsctl_tests::{die_with_parent, root};

const CHROMIUM: &str = "/usr/bin/chromium";

struct Browser {
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

fn chromium(url: &str) -> Browser {
    assert!(std::path::Path::new(CHROMIUM).exists(), "{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)");
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
        if let Some(port) = std::fs::read_to_string(&file).ok().and_then(|t| t.lines().next().and_then(|l| l.trim().parse().ok())) {
            break port;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "chromium did not open its DevTools port");
        std::thread::sleep(Duration::from_millis(50));
    };
    Browser { child, _profile: profile, port }
}

struct Page {
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    id: u64,
}

impl Page {
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.id += 1;
        let id = self.id;
        self.ws.send(Message::text(json!({"id": id, "method": method, "params": params}).to_string())).await.expect("CDP send");
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(20), self.ws.next()).await.expect("CDP answer").expect("CDP open").expect("CDP frame");
            if let Message::Text(t) = msg {
                let v: Value = serde_json::from_str(t.as_str()).expect("CDP JSON");
                if v["id"] == id {
                    return v;
                }
            }
        }
    }

    async fn eval(&mut self, expression: &str) -> Value {
        let r = self.call("Runtime.evaluate", json!({"expression": expression, "returnByValue": true, "awaitPromise": true})).await;
        assert!(r["result"]["exceptionDetails"].is_null(), "{expression}: {r}");
        r["result"]["result"]["value"].clone()
    }

    async fn wait_for(&mut self, what: &str, expression: &str) -> Value {
        let started = Instant::now();
        loop {
            let v = self.eval(expression).await;
            if !v.is_null() && v != json!(false) {
                return v;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "the page never showed {what}; status: {}", self.eval("document.getElementById('status').textContent + ' / ' + document.getElementById('messages').innerText").await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn readme_run_command_and_demo_page_in_chromium() {
    // README's run command is `wsctl dev` in the repository: the root wsctl.yaml.
    let dev = Dev::start(&root().join("wsctl.yaml"), &[]);
    let mut client = wsctl_tests::dev::Client::connect(&dev.field("connect_url")).await.expect("the printed URL and token connect");
    client.send(json!({"action": "ping", "id": 1})).await;
    client.expect("pong", |v| v["type"] == "pong", Duration::from_secs(10)).await;

    let page_url = dev.field("page");
    assert!(http_get(&page_url).await.contains("wsctl dev"));
    let browser = chromium(&page_url);
    let targets: Value = serde_json::from_str(&http_get(&format!("http://127.0.0.1:{}/json/list", browser.port)).await).expect("targets");
    let target = targets.as_array().and_then(|t| t.iter().find(|t| t["type"] == "page")).expect("a page target").clone();
    let (ws, _) = tokio_tungstenite::connect_async(target["webSocketDebuggerUrl"].as_str().expect("debugger URL")).await.expect("CDP connect");
    let mut page = Page { ws, id: 0 };

    page.wait_for("the join form", "document.readyState === 'complete' && !!document.getElementById('join')").await;
    page.eval("document.getElementById('user').value = 'chromium'; document.getElementById('channel').value = 'demo'; document.getElementById('joinButton').click(); true").await;
    page.wait_for("the connection", "document.getElementById('status').textContent === 'connected'").await;
    page.wait_for("its own presence", "document.getElementById('members').innerText.includes('chromium')").await;
    page.eval("document.getElementById('text').value = 'hello from chromium'; document.getElementById('sendButton').click(); true").await;
    let shown = page
        .wait_for("the echoed message", "[...document.querySelectorAll('#messages li.message')].map(l => l.innerText).find(t => t.includes('hello from chromium')) || null")
        .await;
    assert!(shown.as_str().unwrap().contains("chromium"), "shown as sent by its user: {shown}");

    // A screenshot for people reading the test output.
    let shot = page.call("Page.captureScreenshot", json!({"format": "png"})).await;
    if let Some(data) = shot["result"]["data"].as_str() {
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD.decode(data).expect("PNG");
        let _ = std::fs::write(root().join("target/demo-page.png"), png);
    }
}
