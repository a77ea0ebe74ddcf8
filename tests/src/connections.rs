//! A local `@connections` API for function tests: POST to a live id is recorded and answers
//! 200, DELETE closes it (204); an unknown or closed id answers 410 GoneException, as API
//! Gateway does.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

#[derive(Default)]
struct State {
    live: HashSet<String>,
    posts: Vec<(String, String)>,
    deleted: Vec<String>,
}

#[derive(Clone)]
pub struct ConnectionsServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl ConnectionsServer {
    /// Serves on the caller's runtime; stops with it.
    pub async fn start() -> ConnectionsServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state: Arc<Mutex<State>> = Arc::default();
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let state = state.clone();
                            async move {
                                let path = req.uri().path().to_string();
                                let delete = req.method() == hyper::Method::DELETE;
                                let body = req.into_body().collect().await?.to_bytes();
                                let id = path.rsplit('/').next().unwrap_or_default().to_string();
                                let mut s = state.lock().unwrap();
                                let resp = if delete && s.live.remove(&id) {
                                    s.deleted.push(id);
                                    Response::builder()
                                        .status(204)
                                        .body(Full::new(Bytes::new()))
                                        .unwrap()
                                } else if !delete && s.live.contains(&id) {
                                    s.posts
                                        .push((id, String::from_utf8_lossy(&body).into_owned()));
                                    Response::builder()
                                        .status(200)
                                        .body(Full::new(Bytes::new()))
                                        .unwrap()
                                } else {
                                    Response::builder()
                                        .status(410)
                                        .header("x-amzn-ErrorType", "GoneException")
                                        .header("content-type", "application/json")
                                        .body(Full::new(Bytes::from_static(
                                            br#"{"message":"Gone"}"#,
                                        )))
                                        .unwrap()
                                };
                                Ok::<_, hyper::Error>(resp)
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        ConnectionsServer { addr, state }
    }

    /// The URL a function is given as `WSCTL_CONNECTIONS_URL` (stage `test`).
    pub fn url(&self) -> String {
        format!("http://{}/test", self.addr)
    }

    pub fn connect(&self, id: &str) {
        self.state.lock().unwrap().live.insert(id.to_string());
    }

    /// Ids closed with DELETE, in order.
    pub fn deleted(&self) -> Vec<String> {
        self.state.lock().unwrap().deleted.clone()
    }

    pub fn posts(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().posts.clone()
    }

    pub fn posts_by_connection(&self) -> HashMap<String, Vec<String>> {
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for (id, body) in self.posts() {
            out.entry(id).or_default().push(body);
        }
        out
    }

    pub fn clear(&self) {
        self.state.lock().unwrap().posts.clear();
    }
}
