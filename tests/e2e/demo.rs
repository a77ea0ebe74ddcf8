//! README's run command (`wsctl dev` on the repository's own wsctl.yaml), and its demo page in
//! headless Chromium, driven over the DevTools protocol: join, send, see the message come back
//! through the channel.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use wsctl_tests::dev::{Client, Dev, http, http_get};
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

struct Page {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    id: u64,
}

impl Page {
    async fn call(&mut self, method: &str, params: Value) -> Value {
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

    async fn eval(&mut self, expression: &str) -> Value {
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
    let mut client = wsctl_tests::dev::Client::connect(&dev.field("connect_url"))
        .await
        .expect("the printed URL and token connect");
    client.send(json!({"action": "ping", "id": 1})).await;
    client
        .expect("pong", |v| v["type"] == "pong", Duration::from_secs(10))
        .await;

    let page_url = dev.field("page");
    assert!(http_get(&page_url).await.contains("wsctl dev"));
    let browser = chromium(&page_url);
    let targets: Value = serde_json::from_str(
        &http_get(&format!("http://127.0.0.1:{}/json/list", browser.port)).await,
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
    let mut page = Page { ws, id: 0 };

    page.wait_for(
        "the join form",
        "document.readyState === 'complete' && !!document.getElementById('join')",
    )
    .await;
    page.eval("document.getElementById('user').value = 'chromium'; document.getElementById('channel').value = 'demo'; document.getElementById('joinButton').click(); true").await;
    page.wait_for(
        "the connection",
        "document.getElementById('status').textContent === 'connected'",
    )
    .await;
    page.wait_for(
        "its own presence",
        "document.getElementById('members').innerText.includes('chromium')",
    )
    .await;
    page.eval("document.getElementById('text').value = 'hello from chromium'; document.getElementById('sendButton').click(); true").await;
    let shown = page
        .wait_for("the echoed message", "[...document.querySelectorAll('#messages li.message')].map(l => l.innerText).find(t => t.includes('hello from chromium')) || null")
        .await;
    assert!(
        shown.as_str().unwrap().contains("chromium"),
        "shown as sent by its user: {shown}"
    );

    // Out of order: fan-outs run in parallel, so serial N+2 can arrive before N+1. Here N+1
    // is stored but its delivery has not happened, and N+2 (twice) reaches the page first: it
    // must fetch N+1 with `history since` and show N+1 then N+2, once each.
    let n = page
        .eval("Number([...document.querySelectorAll('#messages li.message')].pop().dataset.serial)")
        .await
        .as_u64()
        .expect("a serial");
    store_unsent(&dev, "demo", n + 1, "second").await;
    let page_id = page_connection(&dev, &mut client).await;
    let third = json!({"type": "message", "channel": "demo", "serial": n + 2, "id": "late-3", "from": "server", "data": {"text": "third"}, "ts": 1});
    for _ in 0..2 {
        let (status, body) = http(
            &format!("{}/{page_id}", dev.field("connections_url")),
            "POST",
            third.to_string().as_bytes(),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    page.wait_for(
        "the fetched gap",
        "document.getElementById('messages').innerText.includes('second')",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let texts = page.eval("[...document.querySelectorAll('#messages li.message')].map(l => l.dataset.serial + ' ' + l.lastChild.textContent)").await;
    let texts: Vec<String> = texts
        .as_array()
        .expect("list")
        .iter()
        .map(|t| t.as_str().unwrap_or_default().to_string())
        .collect();
    let tail: Vec<&str> = texts
        .iter()
        .rev()
        .take(2)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        vec![format!("{} second", n + 1), format!("{} third", n + 2)],
        "in serial order, once each: {texts:?}"
    );

    // A screenshot for people reading the test output.
    let shot = page
        .call("Page.captureScreenshot", json!({"format": "png"}))
        .await;
    if let Some(data) = shot["result"]["data"].as_str() {
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("PNG");
        let _ = std::fs::write(root().join("target/demo-page.png"), png);
    }
}

/// Stores `text` as `channel`'s message `serial` (history item and counter), as a publish
/// whose fan-out has not arrived yet leaves it.
async fn store_unsent(dev: &Dev, channel: &str, serial: u64, text: &str) {
    use aws_sdk_dynamodb::types::AttributeValue::{N, S};
    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "local", "local", None, None, "test",
        ))
        .endpoint_url(dev.base())
        .build();
    let db = aws_sdk_dynamodb::Client::from_conf(conf);
    let data = json!({"text": text}).to_string();
    db.put_item()
        .table_name("chat-dev-history")
        .item("channel", S(channel.into()))
        .item("serial", N(serial.to_string()))
        .item("id", S(format!("unsent-{serial}")))
        .item("from", S("server".into()))
        .item("data", S(data))
        .item("ts", N("1".into()))
        .send()
        .await
        .expect("history item");
    db.put_item()
        .table_name("chat-dev-counters")
        .item("channel", S(channel.into()))
        .item("serial", N(serial.to_string()))
        .send()
        .await
        .expect("counter");
}

/// The id of the page's connection: the one open connection that is not `client`'s.
async fn page_connection(dev: &Dev, client: &mut Client) -> String {
    let ids: Vec<String> = serde_json::from_str::<Value>(
        &http_get(&format!("{}/_wsctl/connections", dev.base())).await,
    )
    .expect("ids")["connections"]
        .as_array()
        .expect("list")
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    let probe = json!({"probe": ids[0]});
    http(
        &format!("{}/{}", dev.field("connections_url"), ids[0]),
        "POST",
        probe.to_string().as_bytes(),
    )
    .await;
    let mine = client
        .expect_or_none(|v| v["probe"] == ids[0].as_str(), Duration::from_secs(2))
        .await
        .is_some();
    if mine { ids[1].clone() } else { ids[0].clone() }
}
