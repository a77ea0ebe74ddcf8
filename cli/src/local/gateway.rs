//! The WebSocket gateway: one loopback HTTP port that behaves like a deployed API Gateway
//! WebSocket API and its stage.
//!
//! - `GET /{stage}` with `Upgrade: websocket`: the handshake, through the REQUEST authorizer and
//!   the `$connect` integration, then frames routed by the route selection expression;
//! - `/{stage}/@connections/{id}`: the management API (see [`super::connections`]);
//! - `/2015-03-31/functions/{name}/invocations`: Lambda's Invoke (see [`super::invoke`]);
//! - `/` the demo page and `/_wsctl/*` the dev-only helpers (a token, the fault switch);
//! - anything else is forwarded to the emulator (see [`super::proxy`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::connections::{Conn, Out, Registry};
use super::events::{self, Handshake, Origin};
use super::runtime::{Failure, Pool};

pub type Body = Full<Bytes>;

/// API Gateway's quotas for WebSocket APIs.
pub const MAX_MESSAGE: usize = 128 * 1024;
pub const MAX_FRAME: usize = 32 * 1024;
/// The longest API Gateway waits for an integration.
pub const INTEGRATION_TIMEOUT: Duration = Duration::from_secs(29);

/// A route's integration: the function it invokes and how long the gateway waits.
#[derive(Clone)]
pub struct Integration {
    pub pool: Arc<Pool>,
    pub timeout: Duration,
}

/// The `$connect` REQUEST authorizer.
#[derive(Clone)]
pub struct Authorizer {
    pub pool: Arc<Pool>,
    /// `route.request.querystring.NAME` / `route.request.header.NAME`.
    pub identity_source: Vec<String>,
}

/// What was deployed, as read back from the control plane.
pub struct Api {
    pub api_id: String,
    pub stage: String,
    pub region: String,
    pub account: String,
    /// The JSON path the route selection expression selects (`$request.body.action` → `["action"]`);
    /// `None` when the expression is not over the body, so every frame goes to `$default`.
    pub selection: Option<Vec<String>>,
    pub routes: HashMap<String, Integration>,
    pub authorizer: Option<Authorizer>,
    /// Every function of the stack by name, for the Invoke endpoint.
    pub functions: HashMap<String, Arc<Pool>>,
}

impl Api {
    /// Parses `$request.body.a.b` (or `${request.body.a.b}`) into `["a", "b"]`.
    pub fn selection_path(expression: &str) -> Option<Vec<String>> {
        let e = expression.trim();
        let e = e
            .strip_prefix("${")
            .and_then(|s| s.strip_suffix('}'))
            .map(|s| format!("${s}"))
            .unwrap_or_else(|| e.to_string());
        let path = e.strip_prefix("$request.body.")?;
        let parts: Vec<String> = path.split('.').map(str::to_string).collect();
        (!parts.iter().any(String::is_empty)).then_some(parts)
    }

    /// The route a frame goes to: the selected value if a route has that key, else `$default`.
    pub fn route_for(&self, text: Option<&str>) -> &str {
        let selected = (|| {
            let path = self.selection.as_ref()?;
            let mut v: Value = serde_json::from_str(text?).ok()?;
            for p in path {
                v = v.get_mut(p)?.take();
            }
            match v {
                Value::String(s) => Some(s),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            }
        })();
        match selected {
            Some(key) if !key.starts_with('$') => match self.routes.get_key_value(key.as_str()) {
                Some((k, _)) => k,
                None => "$default",
            },
            _ => "$default",
        }
    }
}

/// How long connections may live.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub idle: Duration,
    pub lifetime: Duration,
}

/// Signs dev tokens with the stack's own secret, for the audience its authorizer requires.
pub struct Minter {
    pub secret: Vec<u8>,
    pub audience: Option<String>,
}

impl Minter {
    pub fn token(&self, user: &str, ttl: Duration) -> String {
        use wsctl_functions::auth::{Capabilities, Claims, mint};
        let claims = Claims::issue(user, Capabilities::everything(), ttl)
            .with_audience(self.audience.as_deref());
        mint(&self.secret, &claims)
    }
}

pub struct Gateway {
    pub api: Api,
    pub limits: Limits,
    pub conns: Registry,
    pub minter: Option<Minter>,
    pub page: String,
    /// `host:port` the gateway listens on: the `domainName` of events.
    pub domain: String,
    pub log: super::runtime::LogSink,
    pub stop: watch::Receiver<bool>,
    /// Where other AWS calls go (moto).
    pub upstream: super::proxy::Upstream,
}

impl Gateway {
    fn note(&self, line: &str) {
        (self.log)("gateway", line);
    }
}

/// Serves until `stop` turns true.
pub async fn serve(gw: Arc<Gateway>, listener: TcpListener) {
    let mut stop = gw.stop.clone();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of file descriptors, most likely: back off rather than spin.
                Err(_) => { tokio::time::sleep(Duration::from_millis(50)).await; continue }
            },
            _ = stop.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let gw = gw.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| route(gw.clone(), req, peer));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

pub fn respond(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

pub fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut r = respond(status, body.to_string());
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

/// API Gateway's error shape: `{"message": "..."}`.
fn message(status: StatusCode, text: &str) -> Response<Body> {
    json_response(status, &json!({ "message": text }))
}

pub fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match bytes[i] {
            b'%' if i + 2 < bytes.len() => hex(bytes[i + 1])
                .zip(hex(bytes[i + 2]))
                .map(|(h, l)| h * 16 + l),
            _ => None,
        };
        match (decoded, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

async fn route(
    gw: Arc<Gateway>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let stage = gw.api.stage.as_str();
    let websocket = matches!(segments.as_slice(), [s] | [s, ""] if *s == stage)
        && req.headers().contains_key("upgrade");
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let port = gw.domain.rsplit_once(':').map_or("", |(_, p)| p);
    if let Some(why) = super::guard::refuse(header("host"), header("origin"), port, websocket) {
        gw.note(&format!("refused {} {path}: {why}", req.method()));
        return Ok(message(StatusCode::FORBIDDEN, &why));
    }
    Ok(match segments.as_slice() {
        [s] | [s, ""] if *s == stage && req.headers().contains_key("upgrade") => {
            handshake(gw, req, peer).await
        }
        [s] | [s, ""] if *s == stage => message(
            StatusCode::UPGRADE_REQUIRED,
            "this is a WebSocket endpoint: connect with a WebSocket client",
        ),
        [s, "@connections", id] if *s == stage => {
            let id = percent_decode(id);
            let method = req.method().clone();
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            super::connections::api(&gw, &method, &id, body).await
        }
        ["2015-03-31", "functions", name, "invocations"] => {
            let name = percent_decode(name);
            super::invoke::handle(&gw, req, &name).await
        }
        [""] | ["index.html"] if req.method() == Method::GET => {
            let mut r = respond(StatusCode::OK, gw.page.clone());
            r.headers_mut().insert(
                "content-type",
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        }
        ["_wsctl", "token"] => dev_token(&gw, req.uri().query()),
        ["_wsctl", "connections"] if req.method() == Method::GET => {
            json_response(StatusCode::OK, &json!({ "connections": gw.conns.ids() }))
        }
        ["_wsctl", "connections", id, "drop"] if req.method() == Method::POST => {
            // The fault switch: the socket goes, `$disconnect` never runs (a zombie id).
            match gw.conns.get(&percent_decode(id)) {
                Some(conn) => {
                    let _ = conn.tx.try_send(Out::Drop);
                    gw.conns.remove(&conn.origin.connection_id);
                    json_response(
                        StatusCode::OK,
                        &json!({ "dropped": conn.origin.connection_id }),
                    )
                }
                None => message(StatusCode::GONE, "no such connection"),
            }
        }
        ["_wsctl", ..] => message(StatusCode::NOT_FOUND, "no such dev endpoint"),
        _ => gw.upstream.forward(req).await,
    })
}

fn dev_token(gw: &Gateway, query: Option<&str>) -> Response<Body> {
    let Some(minter) = &gw.minter else {
        return message(StatusCode::NOT_FOUND, "this stack has no token secret");
    };
    let user = query_pairs(query)
        .into_iter()
        .find(|(k, _)| k == "user")
        .map(|(_, v)| v)
        .filter(|u| !u.is_empty());
    let user = user.unwrap_or_else(|| "dev".into());
    if let Err(why) = wsctl_functions::auth::check_user(&user) {
        return message(StatusCode::BAD_REQUEST, &format!("user: {why}"));
    }
    json_response(
        StatusCode::OK,
        &json!({ "user": user, "token": minter.token(&user, Duration::from_secs(24 * 3600)) }),
    )
}

/// Header names as clients usually spell them (hyper lowercases them).
fn title_case(name: &str) -> String {
    name.split('-')
        .map(|w| match w {
            "websocket" => "WebSocket".to_string(),
            _ => {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                    .unwrap_or_default()
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Whether the handshake lacks what an identity source names (API Gateway then answers 401
/// without calling the authorizer). Stage-variable and context sources are not emulated.
fn identity_missing(source: &str, hs: &Handshake) -> bool {
    let source = source.trim();
    let found = if let Some(name) = source.strip_prefix("route.request.querystring.") {
        hs.query.iter().rev().find(|(k, _)| k == name)
    } else if let Some(name) = source.strip_prefix("route.request.header.") {
        hs.headers
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
    } else {
        return false;
    };
    found.is_none_or(|(_, v)| v.is_empty())
}

/// Whether an authorizer policy allows `execute-api:Invoke` on `arn`.
fn allows(policy: &Value, arn: &str) -> bool {
    let as_list = |v: Option<&Value>| -> Vec<String> {
        match v {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            _ => vec![],
        }
    };
    let statements = match policy.get("Statement") {
        Some(Value::Array(a)) => a.clone(),
        Some(s @ Value::Object(_)) => vec![s.clone()],
        _ => vec![],
    };
    let matching = |s: &Value| {
        let actions = as_list(s.get("Action"));
        let resources = as_list(s.get("Resource"));
        actions
            .iter()
            .any(|a| wsctl_functions::auth::glob_match(a, "execute-api:Invoke"))
            && resources
                .iter()
                .any(|r| wsctl_functions::auth::glob_match(r, arn))
    };
    let effect = |s: &Value| {
        s.get("Effect")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let denied = statements
        .iter()
        .any(|s| effect(s) == "Deny" && matching(s));
    let allowed = statements
        .iter()
        .any(|s| effect(s) == "Allow" && matching(s));
    allowed && !denied
}

/// Runs the authorizer. `Ok(context)` to go on, `Err(response)` to refuse the handshake.
async fn authorize(
    gw: &Gateway,
    auth: &Authorizer,
    origin: &Origin,
    hs: &Handshake,
) -> Result<Value, Response<Body>> {
    if auth.identity_source.iter().any(|s| identity_missing(s, hs)) {
        return Err(message(StatusCode::UNAUTHORIZED, "Unauthorized"));
    }
    let arn = origin.method_arn(&gw.api.region, &gw.api.account);
    let started = std::time::Instant::now();
    let event = events::authorizer(origin, hs, &arn, events::epoch_ms());
    let outcome = tokio::time::timeout(
        INTEGRATION_TIMEOUT,
        auth.pool.invoke(Bytes::from(event.to_string())),
    )
    .await;
    let body = match outcome {
        Ok(Ok(body)) => body,
        Ok(Err(Failure::Handled { message: m, .. })) if m == "Unauthorized" => {
            return Err(message(StatusCode::UNAUTHORIZED, "Unauthorized"));
        }
        Ok(Err(f)) => {
            gw.note(&format!(
                "authorizer failed for {}: {f}",
                origin.connection_id
            ));
            return Err(message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal server error",
            ));
        }
        Err(_) => {
            return Err(message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal server error",
            ));
        }
    };
    let doc: Value = serde_json::from_slice(&body).unwrap_or_default();
    if !allows(doc.get("policyDocument").unwrap_or(&Value::Null), &arn) {
        return Err(message(StatusCode::FORBIDDEN, "Forbidden"));
    }
    // The context reaches later events flat, next to principalId and integrationLatency.
    let mut context = match doc.get("context") {
        Some(Value::Object(m)) => m.clone(),
        _ => Default::default(),
    };
    context.insert(
        "principalId".into(),
        doc.get("principalId").cloned().unwrap_or(json!("")),
    );
    context.insert(
        "integrationLatency".into(),
        json!(started.elapsed().as_millis() as u64),
    );
    Ok(Value::Object(context))
}

async fn handshake(
    gw: Arc<Gateway>,
    mut req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let headers = req.headers();
    let key = headers
        .get("sec-websocket-key")
        .map(|k| k.as_bytes().to_vec());
    let is_ws = headers
        .get("upgrade")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let (Some(key), true) = (key, is_ws) else {
        return message(
            StatusCode::BAD_REQUEST,
            "not a WebSocket handshake: Upgrade: websocket and Sec-WebSocket-Key are required",
        );
    };
    if headers
        .get("sec-websocket-version")
        .and_then(|v| v.to_str().ok())
        != Some("13")
    {
        return message(
            StatusCode::BAD_REQUEST,
            "unsupported Sec-WebSocket-Version: 13 is required",
        );
    }
    let hs = Handshake {
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    title_case(k.as_str()),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .chain([
                ("X-Forwarded-For".into(), peer.ip().to_string()),
                ("X-Forwarded-Proto".into(), "http".into()),
            ])
            .collect(),
        query: query_pairs(req.uri().query()),
    };
    let origin = Origin {
        api_id: gw.api.api_id.clone(),
        stage: gw.api.stage.clone(),
        domain: gw.domain.clone(),
        connection_id: events::connection_id(),
        connected_at: events::epoch_ms(),
        source_ip: peer.ip().to_string(),
        user_agent: headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    };
    let authorizer = match &gw.api.authorizer {
        Some(auth) => match authorize(&gw, auth, &origin, &hs).await {
            Ok(ctx) => Some(ctx),
            Err(refused) => return refused,
        },
        None => None,
    };
    // Known but not open while `$connect` runs: posting to it answers 410, as on AWS.
    let (tx, rx) = mpsc::channel(256);
    let conn = Arc::new(Conn::new(origin.clone(), authorizer.clone(), tx));
    gw.conns.insert(conn.clone());
    // If the client goes away during `$connect`, hyper drops this future: forget the id then.
    let pending = Pending {
        gw: &gw,
        id: origin.connection_id.clone(),
        armed: true,
    };
    let mut protocol = None;
    if let Some(route) = gw.api.routes.get("$connect") {
        let event = events::connect(&origin, &hs, authorizer.as_ref(), events::epoch_ms());
        let outcome = tokio::time::timeout(
            route.timeout,
            route.pool.invoke(Bytes::from(event.to_string())),
        )
        .await;
        let refused = match outcome {
            Ok(Ok(body)) => {
                let doc: Value = serde_json::from_slice(&body).unwrap_or_default();
                protocol = doc
                    .pointer("/headers/Sec-WebSocket-Protocol")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                match doc.get("statusCode").and_then(Value::as_u64) {
                    Some(code) if !(200..300).contains(&code) => Some(
                        u16::try_from(code)
                            .ok()
                            .and_then(|c| StatusCode::from_u16(c).ok())
                            .filter(|c| c.as_u16() >= 300)
                            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    ),
                    _ => None,
                }
            }
            Ok(Err(f)) => {
                gw.note(&format!(
                    "$connect failed for {}: {f}",
                    origin.connection_id
                ));
                Some(StatusCode::INTERNAL_SERVER_ERROR)
            }
            Err(_) => Some(StatusCode::GATEWAY_TIMEOUT),
        };
        if let Some(status) = refused {
            return message(
                status,
                if status == StatusCode::INTERNAL_SERVER_ERROR {
                    "Internal server error"
                } else {
                    "Connection refused by $connect"
                },
            );
        }
    }
    pending.disarm();
    // Open from before the 101 goes out, as on AWS: a client that has its handshake can be
    // posted to at once. Frames posted before the socket task starts wait in its queue.
    conn.open.store(true, Ordering::SeqCst);
    let upgrade = hyper::upgrade::on(&mut req);
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
    let gw2 = gw.clone();
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => run(gw2, conn, rx, TokioIo::new(upgraded)).await,
            Err(_) => {
                gw2.conns.remove(&conn.origin.connection_id);
                disconnect(
                    &gw2,
                    &conn,
                    1006,
                    "Connection closed abnormally before the handshake completed",
                )
                .await;
            }
        }
    });
    let mut r = respond(StatusCode::SWITCHING_PROTOCOLS, Bytes::new());
    let h = r.headers_mut();
    h.insert("upgrade", HeaderValue::from_static("websocket"));
    h.insert("connection", HeaderValue::from_static("Upgrade"));
    h.insert(
        "sec-websocket-accept",
        HeaderValue::from_str(&accept).expect("base64 is a valid header"),
    );
    if let Some(p) = protocol.and_then(|p| HeaderValue::from_str(&p).ok()) {
        h.insert("sec-websocket-protocol", p);
    }
    r
}

struct Pending<'a> {
    gw: &'a Gateway,
    id: String,
    armed: bool,
}

impl Pending<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.gw.conns.remove(&self.id);
        }
    }
}

/// How long a write to one client may take before the client counts as gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends a server-side close and waits briefly for the client's reply, so the close code
/// arrives rather than a reset.
async fn close<S>(ws: &mut WebSocketStream<S>, code: u16, reason: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if tokio::time::timeout(WRITE_TIMEOUT, ws.send(close_frame(code, reason)))
        .await
        .is_ok()
    {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
    }
}

fn config() -> WebSocketConfig {
    // A small eagerly-allocated read buffer keeps 10,000 idle connections cheap.
    let mut c = WebSocketConfig::default();
    c.read_buffer_size = 4096;
    c.write_buffer_size = 0;
    c.max_message_size = Some(MAX_MESSAGE);
    c.max_frame_size = Some(MAX_FRAME);
    c
}

fn close_frame(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code: code.into(),
        reason: reason.to_string().into(),
    }))
}

/// One open connection: frames in, `@connections` posts out, limits enforced.
async fn run<S>(gw: Arc<Gateway>, conn: Arc<Conn>, mut rx: mpsc::Receiver<Out>, io: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config())).await;
    let idle = tokio::time::sleep(gw.limits.idle);
    let lifetime = tokio::time::sleep(gw.limits.lifetime);
    tokio::pin!(idle, lifetime);
    let mut stop = gw.stop.clone();
    let (code, reason): (u16, String) = loop {
        tokio::select! {
            frame = ws.next() => {
                conn.touch();
                idle.as_mut().reset(tokio::time::Instant::now() + gw.limits.idle);
                match frame {
                    Some(Ok(Message::Text(t))) => dispatch(&gw, &conn, t.as_str().to_string(), false),
                    Some(Ok(Message::Binary(b))) => dispatch(&gw, &conn, base64::engine::general_purpose::STANDARD.encode(&b), true),
                    Some(Ok(Message::Close(frame))) => {
                        let _ = ws.flush().await;
                        break match frame {
                            Some(f) => (u16::from(f.code), format!("Client-side close frame status set: {}", f.reason)),
                            None => (1005, "Client-side close frame status not set".into()),
                        };
                    }
                    Some(Ok(_)) => {}
                    Some(Err(WsError::Capacity(e))) => {
                        gw.note(&format!("{}: {e}; closing with 1009", conn.origin.connection_id));
                        let _ = tokio::time::timeout(WRITE_TIMEOUT, ws.send(close_frame(1009, "Message too big"))).await;
                        break (1009, "Message too big".into());
                    }
                    Some(Err(_)) | None => break (1006, "Connection closed abnormally".into()),
                }
            }
            out = rx.recv() => match out {
                Some(Out::Frame(m)) => {
                    if !matches!(tokio::time::timeout(WRITE_TIMEOUT, ws.send(m)).await, Ok(Ok(()))) {
                        break (1006, "Connection closed abnormally".into());
                    }
                }
                Some(Out::Close) => {
                    // Gone for `@connections` from now on, not after the close handshake.
                    gw.conns.remove(&conn.origin.connection_id);
                    close(&mut ws, 1000, "").await;
                    break (1000, "Connection closed through the @connections API".into());
                }
                Some(Out::Drop) | None => {
                    // The fault switch: gone without a close frame and without `$disconnect`.
                    gw.conns.remove(&conn.origin.connection_id);
                    return;
                }
            },
            _ = &mut idle => {
                gw.conns.remove(&conn.origin.connection_id);
                close(&mut ws, 1001, "Going away").await;
                break (1001, "Idle timeout".into());
            }
            _ = &mut lifetime => {
                gw.conns.remove(&conn.origin.connection_id);
                close(&mut ws, 1001, "Going away").await;
                break (1001, "Maximum connection lifetime reached".into());
            }
            _ = stop.changed() => {
                let _ = ws.send(close_frame(1001, "Going away")).await;
                gw.conns.remove(&conn.origin.connection_id);
                return;
            }
        }
    };
    gw.conns.remove(&conn.origin.connection_id);
    drop(ws);
    disconnect(&gw, &conn, code, &reason).await;
}

async fn disconnect(gw: &Gateway, conn: &Conn, code: u16, reason: &str) {
    let Some(route) = gw.api.routes.get("$disconnect") else {
        return;
    };
    let event = events::disconnect(
        &conn.origin,
        code,
        reason,
        conn.authorizer.as_ref(),
        events::epoch_ms(),
    );
    match tokio::time::timeout(
        route.timeout,
        route.pool.invoke(Bytes::from(event.to_string())),
    )
    .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(f)) => gw.note(&format!(
            "$disconnect failed for {}: {f}",
            conn.origin.connection_id
        )),
        Err(_) => gw.note(&format!(
            "$disconnect timed out for {}",
            conn.origin.connection_id
        )),
    }
}

/// Hands a frame to its route's function. Frames of one connection run concurrently, as on
/// API Gateway; a failed integration answers the client with the service's error frame.
fn dispatch(gw: &Arc<Gateway>, conn: &Arc<Conn>, body: String, base64: bool) {
    let route_key = gw
        .api
        .route_for((!base64).then_some(body.as_str()))
        .to_string();
    let request_id = events::request_id(events::epoch_ms());
    let Some(route) = gw.api.routes.get(&route_key).cloned() else {
        let _ = conn.tx.try_send(error_frame(
            "Forbidden",
            &conn.origin.connection_id,
            &request_id,
        ));
        return;
    };
    // Queued here, in the order the frames arrived; only the wait for the result is spawned.
    let event = events::message(
        &conn.origin,
        &route_key,
        &body,
        base64,
        conn.authorizer.as_ref(),
        events::epoch_ms(),
    );
    let result = route.pool.submit(Bytes::from(event.to_string()));
    let (gw, conn) = (gw.clone(), conn.clone());
    tokio::spawn(async move {
        let outcome = tokio::time::timeout(route.timeout, result).await;
        let text = match outcome {
            Ok(Ok(_)) => return,
            Ok(Err(f)) => {
                gw.note(&format!(
                    "{route_key} failed for {}: {f}",
                    conn.origin.connection_id
                ));
                "Internal server error"
            }
            Err(_) => "Endpoint request timed out",
        };
        let _ = conn
            .tx
            .send(error_frame(text, &conn.origin.connection_id, &request_id))
            .await;
    });
}

/// What API Gateway sends a client whose frame could not be handled.
fn error_frame(text: &str, connection_id: &str, request_id: &str) -> Out {
    Out::Frame(Message::text(
        json!({"message": text, "connectionId": connection_id, "requestId": request_id})
            .to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_selection_expressions() {
        assert_eq!(
            Api::selection_path("$request.body.action"),
            Some(vec!["action".to_string()])
        );
        assert_eq!(
            Api::selection_path("${request.body.msg.kind}"),
            Some(vec!["msg".to_string(), "kind".to_string()])
        );
        assert_eq!(Api::selection_path("$request.header.x"), None);
    }

    #[test]
    fn policies() {
        let arn = "arn:aws:execute-api:us-east-1:123456789012:abc/dev/$connect";
        let allow = json!({"Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": ["arn:aws:execute-api:us-east-1:123456789012:abc/*"]}]});
        let deny = json!({"Statement": [{"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": arn}]});
        let other = json!({"Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": "arn:aws:execute-api:us-east-1:123456789012:zzz/dev/$connect"}]});
        assert!(allows(&allow, arn));
        assert!(!allows(&deny, arn));
        assert!(!allows(&other, arn));
        assert!(!allows(&Value::Null, arn));
    }

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("L0SM9cOFvHcCIhw%3D"), "L0SM9cOFvHcCIhw=");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(title_case("sec-websocket-key"), "Sec-WebSocket-Key");
        assert_eq!(
            query_pairs(Some("token=a%20b&x")),
            vec![("token".into(), "a b".into()), ("x".into(), String::new())]
        );
    }
}
