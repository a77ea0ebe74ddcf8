//! A recording HTTP proxy in front of moto. It names each AWS call (service and operation),
//! tells reads from mutations, and can freeze after the k-th mutation so the client can be
//! killed at exactly that point.

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

#[derive(Default)]
struct State {
    calls: Mutex<Vec<Call>>,
    mutations: AtomicUsize,
    /// Forward at most this many mutations, then hold every request.
    freeze_after: Mutex<Option<usize>>,
    frozen: std::sync::atomic::AtomicBool,
}

pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<State>,
    _runtime: tokio::runtime::Runtime,
}

impl Proxy {
    /// Starts a proxy forwarding to `upstream` (e.g. `http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> Proxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let state = Arc::new(State::default());
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let upstream: hyper::Uri = upstream.parse().expect("upstream uri");
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let serve_state = state.clone();
        runtime.spawn(async move {
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
        });
        Proxy {
            addr,
            state,
            _runtime: runtime,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }

    pub fn mutations(&self) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.mutating).collect()
    }

    pub fn clear(&self) {
        self.state.calls.lock().unwrap().clear();
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
    state.calls.lock().unwrap().push(call);
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_string();
    parts.uri = format!("{}{}", upstream.to_string().trim_end_matches('/'), path)
        .parse()
        .expect("upstream path");
    let response = client
        .request(Request::from_parts(parts, Full::new(body)))
        .await;
    if mutating && limit.is_some_and(|k| state.mutations.load(Ordering::SeqCst) >= k) {
        state.frozen.store(true, Ordering::SeqCst);
    }
    match response {
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            let bytes = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok(Response::from_parts(parts, Full::new(bytes)))
        }
        Err(e) => Ok(Response::builder()
            .status(502)
            .body(Full::new(Bytes::from(e.to_string())))
            .unwrap()),
    }
}

const MUTATING_PREFIXES: &[&str] = &[
    "Create", "Put", "Delete", "Update", "Attach", "Detach", "Tag", "Untag", "Add", "Remove",
    "Set", "Batch", "Transact",
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
    let operation = if let Some((_, op)) = target.split_once('.') {
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
