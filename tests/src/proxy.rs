//! A recording HTTP proxy in front of moto. It names each AWS call (service and operation),
//! tells reads from mutations, and can freeze after the k-th mutation so the client can be
//! killed at exactly that point.
//!
//! It also plays the AWS behaviours moto lacks ([`crate::aws`]): each [`Behaviour`] may answer a
//! call itself, the way the service would, or rewrite moto's answer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub service: String,
    pub operation: String,
    pub mutating: bool,
}

/// A call with what it was asked to act on, as recorded for [`Proxy::requests`].
#[derive(Debug, Clone)]
pub struct Recorded {
    pub call: Call,
    pub method: String,
    /// Path and query, percent-encoded as sent.
    pub path: String,
    pub body: Bytes,
}

impl Recorded {
    /// The JSON body (or a CBOR one, as JSON), or `Null`.
    pub fn json(&self) -> serde_json::Value {
        body_value(&self.body)
    }

    /// A form field of a Query-protocol body (IAM, STS).
    pub fn form(&self, key: &str) -> Option<String> {
        std::str::from_utf8(&self.body)
            .ok()?
            .split('&')
            .find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k == key).then(|| percent_decode(v))
            })
    }
}

/// One request as the proxy received it.
pub struct Exchange {
    pub method: hyper::Method,
    /// Path and query, e.g. `/v2/apis/abc/stages/dev`.
    pub path: String,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Exchange {
    /// The JSON body (DynamoDB, Lambda, API Gateway), or `Null`.
    pub fn json(&self) -> serde_json::Value {
        body_value(&self.body)
    }

    /// A form field of a Query-protocol body (IAM, STS).
    pub fn form(&self, key: &str) -> Option<String> {
        std::str::from_utf8(&self.body)
            .ok()?
            .split('&')
            .find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k == key).then(|| percent_decode(v))
            })
    }
}

/// A JSON body, or a CBOR one (Smithy RPC v2, CloudWatch's protocol) read as JSON; else `Null`.
fn body_value(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .ok()
        .or_else(|| ciborium::from_reader(body).ok())
        .unwrap_or_default()
}

pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A reply the proxy sends instead of (or rewritten from) moto's.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Reply {
    /// A JSON error the way the service's protocol spells it: DynamoDB and Lambda carry the
    /// type in `__type`/`x-amzn-ErrorType`, API Gateway in `message` plus the header.
    pub fn error(status: u16, kind: &str, message: &str) -> Reply {
        Reply {
            status,
            headers: vec![
                ("x-amzn-errortype".into(), kind.into()),
                ("content-type".into(), "application/x-amz-json-1.0".into()),
            ],
            body: Bytes::from(
                serde_json::json!({"__type": kind, "message": message, "Message": message})
                    .to_string(),
            ),
        }
    }

    /// A Smithy RPC v2 CBOR error (CloudWatch): the type in `__type`, the body CBOR.
    pub fn cbor_error(status: u16, kind: &str, message: &str, extra: serde_json::Value) -> Reply {
        let mut body = serde_json::json!({"__type": kind, "message": message});
        if let (Some(b), serde_json::Value::Object(more)) = (body.as_object_mut(), extra) {
            b.extend(more);
        }
        let mut bytes = Vec::new();
        ciborium::into_writer(&body, &mut bytes).expect("CBOR of a JSON value");
        Reply {
            status,
            headers: vec![
                ("smithy-protocol".into(), "rpc-v2-cbor".into()),
                ("content-type".into(), "application/cbor".into()),
            ],
            body: Bytes::from(bytes),
        }
    }

    /// A Query-protocol (IAM) error.
    pub fn xml_error(status: u16, code: &str, message: &str) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "text/xml".into())],
            body: Bytes::from(format!(
                "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>proxy</RequestId></ErrorResponse>"
            )),
        }
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from(value.to_string()),
        }
    }
}

/// An AWS behaviour moto does not have, played by the proxy. Each implementation cites the
/// AWS document it follows.
pub trait Behaviour: Send + Sync {
    /// Answers `call` instead of moto (AWS would refuse it, or moto lacks the operation).
    fn answer(&self, _call: &Call, _req: &Exchange) -> Option<Reply> {
        None
    }

    /// What moto is sent instead of `req` (path with query, body), when the behaviour keeps a
    /// part of the request to itself (e.g. a page token of its own making).
    fn forward_as(&self, _call: &Call, _req: &Exchange) -> Option<(String, Bytes)> {
        None
    }

    /// Sees (and may change) moto's reply to a forwarded call.
    fn rewrite(&self, _call: &Call, _req: &Exchange, _reply: &mut Reply) {}

    /// Forgets what it learnt, when the emulator behind it is reset.
    fn reset(&self) {}
}

/// A behaviour the test keeps a handle on (to move its clock) plays as itself.
impl<B: Behaviour> Behaviour for Arc<B> {
    fn answer(&self, call: &Call, req: &Exchange) -> Option<Reply> {
        (**self).answer(call, req)
    }

    fn forward_as(&self, call: &Call, req: &Exchange) -> Option<(String, Bytes)> {
        (**self).forward_as(call, req)
    }

    fn rewrite(&self, call: &Call, req: &Exchange, reply: &mut Reply) {
        (**self).rewrite(call, req, reply)
    }

    fn reset(&self) {
        (**self).reset()
    }
}

#[derive(Default)]
struct State {
    calls: Mutex<Vec<Call>>,
    requests: Mutex<Vec<Recorded>>,
    mutations: AtomicUsize,
    /// Forward at most this many mutations, then hold every request.
    freeze_after: Mutex<Option<usize>>,
    frozen: std::sync::atomic::AtomicBool,
    behaviours: Vec<Box<dyn Behaviour>>,
}

pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<State>,
    /// Dropping it stops the server thread, which owns its runtime: a proxy may be started
    /// and dropped inside a test's own runtime.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Proxy {
    /// Starts a proxy forwarding to `upstream` (e.g. `http://127.0.0.1:PORT`) that behaves as
    /// AWS does where moto does not ([`crate::aws::behaviours`]).
    pub fn start(upstream: &str) -> Proxy {
        Proxy::with(upstream, crate::aws::behaviours())
    }

    /// Starts a proxy that plays only `behaviours` (none: moto as it is).
    pub fn with(upstream: &str, behaviours: Vec<Box<dyn Behaviour>>) -> Proxy {
        let state = Arc::new(State {
            behaviours,
            ..State::default()
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("proxy addr");
        let upstream: hyper::Uri = upstream.parse().expect("upstream uri");
        let serve_state = state.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let client: Client<HttpConnector, Full<Bytes>> =
                    Client::builder(TokioExecutor::new()).build_http();
                let serve = async move {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        let (state, client, upstream) =
                            (serve_state.clone(), client.clone(), upstream.clone());
                        tokio::spawn(async move {
                            let service = hyper::service::service_fn(move |req| {
                                forward(req, state.clone(), client.clone(), upstream.clone())
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                };
                tokio::select! {
                    _ = serve => {}
                    _ = stopped => {}
                }
            });
            // Requests held by a freeze never finish: do not wait for them.
            runtime.shutdown_background();
        });
        Proxy {
            addr,
            state,
            _stop: stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }

    /// Every call with its method, path and body, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn mutations(&self) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.mutating).collect()
    }

    pub fn clear(&self) {
        self.state.calls.lock().unwrap().clear();
        self.state.requests.lock().unwrap().clear();
        self.state.mutations.store(0, Ordering::SeqCst);
        self.state.frozen.store(false, Ordering::SeqCst);
        *self.state.freeze_after.lock().unwrap() = None;
    }

    /// After `k` mutations have been forwarded, every further request is held unanswered.
    pub fn freeze_after(&self, k: usize) {
        self.clear();
        *self.state.freeze_after.lock().unwrap() = Some(k);
    }

    pub fn frozen(&self) -> bool {
        self.state.frozen.load(Ordering::SeqCst)
    }

    /// Forgets the behaviours' state; call it with [`crate::Moto::reset`].
    pub fn reset_behaviours(&self) {
        for b in &self.state.behaviours {
            b.reset();
        }
    }
}

async fn forward(
    req: Request<Incoming>,
    state: Arc<State>,
    client: Client<HttpConnector, Full<Bytes>>,
    upstream: hyper::Uri,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let (mut parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let call = classify(&parts, &body);
    let limit = *state.freeze_after.lock().unwrap();
    let hold = if call.mutating {
        let n = state.mutations.fetch_add(1, Ordering::SeqCst) + 1;
        limit.is_some_and(|k| n > k)
    } else {
        state.frozen.load(Ordering::SeqCst)
    };
    if hold {
        // The client is about to be killed; never answer.
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }
    let mutating = call.mutating;
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_string();
    let exchange = Exchange {
        method: parts.method.clone(),
        path: path.clone(),
        headers: parts.headers.clone(),
        body: body.clone(),
    };
    state.calls.lock().unwrap().push(call.clone());
    state.requests.lock().unwrap().push(Recorded {
        call: call.clone(),
        method: parts.method.to_string(),
        path: path.clone(),
        body: body.clone(),
    });
    let answered = state
        .behaviours
        .iter()
        .find_map(|b| b.answer(&call, &exchange));
    if let Some(reply) = answered {
        if mutating && limit.is_some_and(|k| state.mutations.load(Ordering::SeqCst) >= k) {
            state.frozen.store(true, Ordering::SeqCst);
        }
        return Ok(respond(reply));
    }
    let (sent_path, sent_body) = state
        .behaviours
        .iter()
        .find_map(|b| b.forward_as(&call, &exchange))
        .unwrap_or((path, body));
    parts.headers.remove(hyper::header::CONTENT_LENGTH);
    parts.uri = format!(
        "{}{}",
        upstream.to_string().trim_end_matches('/'),
        sent_path
    )
    .parse()
    .expect("upstream path");
    let response = client
        .request(Request::from_parts(parts, Full::new(sent_body)))
        .await;
    if mutating && limit.is_some_and(|k| state.mutations.load(Ordering::SeqCst) >= k) {
        state.frozen.store(true, Ordering::SeqCst);
    }
    let mut reply = match response {
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            let bytes = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Reply {
                status: parts.status.as_u16(),
                headers: parts
                    .headers
                    .iter()
                    .filter(|(k, _)| {
                        *k != hyper::header::CONTENT_LENGTH
                            && *k != hyper::header::TRANSFER_ENCODING
                    })
                    .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
                    .collect(),
                body: bytes,
            }
        }
        Err(e) => Reply {
            status: 502,
            headers: vec![],
            body: Bytes::from(e.to_string()),
        },
    };
    for b in &state.behaviours {
        b.rewrite(&call, &exchange, &mut reply);
    }
    Ok(respond(reply))
}

fn respond(reply: Reply) -> Response<Full<Bytes>> {
    let mut builder = Response::builder().status(reply.status);
    for (k, v) in &reply.headers {
        builder = builder.header(k, v);
    }
    builder.body(Full::new(reply.body)).expect("a valid reply")
}

const MUTATING_PREFIXES: &[&str] = &[
    "Create",
    "Put",
    "Delete",
    "Update",
    "Attach",
    "Detach",
    "Tag",
    "Untag",
    "Add",
    "Remove",
    "Set",
    "Batch",
    "Transact",
    "Subscribe",
    "Unsubscribe",
];

fn classify(parts: &hyper::http::request::Parts, body: &[u8]) -> Call {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    // Credential=KEY/DATE/REGION/SERVICE/aws4_request
    let service = header("authorization")
        .split("Credential=")
        .nth(1)
        .and_then(|c| c.split('/').nth(3))
        .unwrap_or("?")
        .to_string();
    let target = header("x-amz-target");
    // Smithy RPC v2 (CloudWatch): `POST /service/SERVICE/operation/OPERATION`.
    let rpc = parts.uri.path().split_once("/operation/").map(|(_, op)| op);
    let operation = if let Some((_, op)) = target.split_once('.') {
        op.to_string()
    } else if let Some(op) = rpc {
        op.to_string()
    } else if let Some(action) = std::str::from_utf8(body)
        .ok()
        .and_then(|b| b.split('&').find_map(|kv| kv.strip_prefix("Action=")))
    {
        action.to_string()
    } else {
        format!("{} {}", parts.method, parts.uri.path())
    };
    let mutating = if operation.contains(' ') {
        !matches!(parts.method, hyper::Method::GET | hyper::Method::HEAD)
    } else {
        MUTATING_PREFIXES.iter().any(|p| operation.starts_with(p))
    };
    Call {
        service,
        operation,
        mutating,
    }
}
