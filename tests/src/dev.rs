//! A running `wsctl dev` (its own moto, free ports) and WebSocket clients that speak to it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::{die_with_parent, isolate, root, wsctl_bin};

/// `templates/wsctl.yaml` (the bundled functions) plus the echo fixture on a `crash` route,
/// written into `dir`: what the `wsctl dev` tests run.
pub fn dev_config(dir: &Path) -> PathBuf {
    let template = std::fs::read_to_string(root().join("templates/wsctl.yaml")).expect("template");
    let functions = root().join("functions");
    let echo = root().join("tests/fixtures/echo");
    let text = template
        .replace(
            "crate: functions/",
            &format!("crate: {}/", functions.display()),
        )
        .replace("architecture: arm64", "architecture: x86_64")
        .replace(
            "functions:\n",
            &format!(
                "functions:\n  echo:\n    crate: {}\n    timeout: 2\n",
                echo.display()
            ),
        )
        .replace("routes:\n", "routes:\n  crash: echo\n");
    let path = dir.join("wsctl.yaml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// `wsctl dev --port 0 --output json`, stopped (SIGTERM) when dropped.
pub struct Dev {
    child: Child,
    /// What it printed on start: url, token, connections_url, page, …
    pub info: Value,
    /// Every stderr line so far (function logs, gateway notes).
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl Dev {
    pub fn start(config: &Path, extra: &[&str]) -> Dev {
        let mut cmd = Command::new(wsctl_bin());
        cmd.arg("--config")
            .arg(config)
            .args(["--output", "json", "dev", "--port", "0"])
            .args(extra);
        isolate(&mut cmd);
        cmd.current_dir(config.parent().expect("config dir"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().expect("start wsctl dev");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut first = String::new();
        stdout
            .read_line(&mut first)
            .expect("read wsctl dev's first line");
        let info: Value = serde_json::from_str(&first).unwrap_or_else(|e| {
            let _ = child.kill();
            std::thread::sleep(Duration::from_millis(200));
            panic!(
                "wsctl dev did not come up ({e}): stdout {first:?}\nstderr:\n{}",
                logs.lock().unwrap().join("\n")
            )
        });
        // Keep draining stdout so the process never blocks on a full pipe.
        std::thread::spawn(move || for _ in stdout.lines() {});
        Dev { child, info, logs }
    }

    pub fn field(&self, key: &str) -> String {
        self.info[key]
            .as_str()
            .unwrap_or_else(|| panic!("no {key} in {}", self.info))
            .to_string()
    }

    /// The gateway's `http://host:port`.
    pub fn base(&self) -> String {
        self.field("lambda_endpoint")
    }

    /// `wsctl --config CONFIG --endpoint-url BASE ARGS…` with dummy keys, as a user points any
    /// command at the local stack; stdin empty, output captured unless the caller says.
    pub fn command(&self, config: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(wsctl_bin());
        cmd.arg("--config")
            .arg(config)
            .args(["--endpoint-url", &self.base()])
            .args(args);
        isolate(&mut cmd);
        cmd.env("AWS_ACCESS_KEY_ID", "local")
            .env("AWS_SECRET_ACCESS_KEY", "local")
            .env("AWS_REGION", "us-east-1")
            .stdin(Stdio::null());
        die_with_parent(&mut cmd);
        cmd
    }

    /// The SDK's settings for the dev server's AWS endpoint, as its banner's `Try:` line uses
    /// it: any SDK client built from them talks to the local stack.
    pub fn sdk(&self) -> aws_config::SdkConfig {
        sdk_at(&self.base())
    }

    /// A DynamoDB client on the dev server's AWS endpoint (its items are DynamoDB Local's).
    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk())
    }

    /// An `@connections` client on the dev server's stage, as an application's backend builds
    /// one from the stage's `@connections` URL.
    pub fn management(&self) -> aws_sdk_apigatewaymanagement::Client {
        let url = self.field("connections_url");
        let conf = sdk_at(url.trim_end_matches("/@connections"));
        aws_sdk_apigatewaymanagement::Client::new(&conf)
    }

    /// A token for `user`, minted by the dev server with the stack's secret.
    pub async fn token(&self, user: &str) -> String {
        let body = http_get(&format!("{}/_wsctl/token?user={user}", self.base())).await;
        let v: Value = serde_json::from_str(&body).expect("token JSON");
        v["token"].as_str().expect("token").to_string()
    }

    pub async fn connect(&self, user: &str) -> Client {
        let token = self.token(user).await;
        Client::connect(&format!("{}?token={token}", self.field("url")))
            .await
            .expect("connect")
    }

    /// Ids of the open connections.
    pub async fn connection_ids(&self) -> Vec<String> {
        let body = http_get(&format!("{}/_wsctl/connections", self.base())).await;
        let v: Value = serde_json::from_str(&body).expect("connections JSON");
        v["connections"]
            .as_array()
            .expect("list")
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect()
    }

    /// Waits until a log line matching `pred` appears.
    pub fn wait_log(&self, what: &str, pred: impl Fn(&str) -> bool, timeout: Duration) -> String {
        let started = Instant::now();
        loop {
            if let Some(l) = self.logs.lock().unwrap().iter().find(|l| pred(l)) {
                return l.clone();
            }
            assert!(
                started.elapsed() < timeout,
                "no log line {what} within {timeout:?}; logs:\n{}",
                self.logs.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if started.elapsed() > Duration::from_secs(15) {
                let _ = self.child.kill();
                panic!("wsctl dev did not stop within 15 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.stop();
        }
    }
}

/// A plain HTTP/1.1 GET over loopback.
pub async fn http_get(url: &str) -> String {
    let (status, body) = http(url, "GET", b"").await;
    assert_eq!(status, 200, "GET {url}: {body}");
    body
}

/// Any request; `(status, body)`.
pub async fn http(url: &str, method: &str, body: &[u8]) -> (u16, String) {
    http_with(url, method, &[], body).await
}

/// Any request with extra headers; a `Host` among them replaces the URL's.
pub async fn http_with(
    url: &str,
    method: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let text = http_raw(url, method, headers, body).await;
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The whole answer, status line and headers included.
pub async fn http_raw(url: &str, method: &str, headers: &[(&str, &str)], body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut s = tokio::net::TcpStream::connect(host).await.expect("connect");
    let name = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("host"))
        .map_or(host, |(_, v)| *v);
    let extra: String = headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {name}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    // Read by Content-Length: not every server closes the connection when asked to.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf))
            .await
            .expect("HTTP response in time")
            .expect("read");
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw);
        let complete = text.split_once("\r\n\r\n").is_some_and(|(head, body)| {
            let length = head.lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .and_then(|v| v.trim().parse::<usize>().ok())
            });
            length.is_some_and(|len| body.len() >= len)
        });
        if n == 0 || complete {
            break;
        }
    }
    String::from_utf8_lossy(&raw).into_owned()
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A real WebSocket client.
pub struct Client {
    pub ws: Ws,
}

/// How a handshake ended.
#[derive(Debug)]
pub enum Refused {
    Status(u16),
    Other(String),
}

impl Client {
    pub async fn connect(url: &str) -> Result<Client, Refused> {
        let req = url
            .into_client_request()
            .map_err(|e| Refused::Other(e.to_string()))?;
        match tokio_tungstenite::connect_async(req).await {
            Ok((ws, _)) => Ok(Client { ws }),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                Err(Refused::Status(resp.status().as_u16()))
            }
            Err(e) => Err(Refused::Other(e.to_string())),
        }
    }

    pub async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .expect("send");
    }

    /// The next text frame as JSON, or None on timeout/close.
    pub async fn recv(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    return Some(serde_json::from_str(t.as_str()).expect("JSON frame"));
                }
                Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) | Err(_) => {
                    return None;
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Frames until one matches `pred`; panics after `timeout` with what did arrive.
    pub async fn expect(
        &mut self,
        what: &str,
        pred: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            match self.recv(deadline - Instant::now()).await {
                Some(v) if pred(&v) => return v,
                Some(v) => seen.push(v),
                None => break,
            }
        }
        panic!("expected {what} within {timeout:?}; got {seen:?}");
    }

    /// The first frame matching `pred` within `timeout`, or None (timeout or closed).
    pub async fn expect_or_none(
        &mut self,
        pred: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        while let Some(v) = self
            .recv(deadline.saturating_duration_since(Instant::now()))
            .await
        {
            if pred(&v) {
                return Some(v);
            }
        }
        None
    }

    /// Every text frame that arrives within `window`.
    pub async fn drain(&mut self, window: Duration) -> Vec<Value> {
        let deadline = Instant::now() + window;
        let mut got = Vec::new();
        while let Some(v) = self
            .recv(deadline.saturating_duration_since(Instant::now()))
            .await
        {
            got.push(v);
        }
        got
    }

    /// Reads (and drops) frames until the server closes the connection: whether it did
    /// within `timeout`.
    pub async fn closed(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return false,
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return true,
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Reads until the server closes; the close code, if a close frame came.
    pub async fn close_code(&mut self, timeout: Duration) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Ok(Some(Ok(Message::Close(Some(f))))) => return Some(f.code.into()),
                Ok(Some(Ok(Message::Close(None)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => {
                    return None;
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }
}

/// `%3D` → `=`: connection ids arrive percent-encoded in `@connections` paths.
pub fn percent_decode(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The SDK's settings for a local endpoint (`wsctl dev`'s, or the moto behind it): region
/// us-east-1 and the `local` credentials `wsctl dev` accepts.
pub fn sdk_at(endpoint: &str) -> aws_config::SdkConfig {
    use aws_sdk_dynamodb::config::{
        BehaviorVersion, Credentials, Region, SharedCredentialsProvider,
    };
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "local", "local", None, None, "test",
        )))
        .endpoint_url(endpoint)
        .build()
}
