//! Open connections, and the `@connections` management API over them: POST sends, GET
//! describes, DELETE disconnects; an unknown or closed id (or one still in `$connect`)
//! answers 410 `GoneException`, as API Gateway does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{Method, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::events::{self, Origin};
use super::gateway::{Body, Gateway, MAX_MESSAGE, json_response};

/// What a connection's task is told to do.
pub enum Out {
    Frame(Message),
    /// Close normally (DELETE on `@connections`); `$disconnect` runs.
    Close,
    /// Vanish without a close frame and without `$disconnect` (the fault switch).
    Drop,
}

pub struct Conn {
    pub origin: Origin,
    /// The authorizer's output, passed to every event of the connection.
    pub authorizer: Option<Value>,
    pub tx: mpsc::Sender<Out>,
    /// False while `$connect` runs.
    pub open: AtomicBool,
    last_active: AtomicU64,
}

impl Conn {
    pub fn new(origin: Origin, authorizer: Option<Value>, tx: mpsc::Sender<Out>) -> Conn {
        let now = origin.connected_at;
        Conn {
            origin,
            authorizer,
            tx,
            open: AtomicBool::new(false),
            last_active: AtomicU64::new(now),
        }
    }

    pub fn touch(&self) {
        self.last_active
            .store(events::epoch_ms(), Ordering::Relaxed);
    }
}

#[derive(Default)]
pub struct Registry(Mutex<HashMap<String, Arc<Conn>>>);

impl Registry {
    pub fn insert(&self, conn: Arc<Conn>) {
        self.0
            .lock()
            .unwrap()
            .insert(conn.origin.connection_id.clone(), conn);
    }

    pub fn remove(&self, id: &str) {
        self.0.lock().unwrap().remove(id);
    }

    pub fn get(&self, id: &str) -> Option<Arc<Conn>> {
        self.0.lock().unwrap().get(id).cloned()
    }

    /// Open connections only.
    pub fn ids(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .values()
            .filter(|c| c.open.load(Ordering::Relaxed))
            .map(|c| c.origin.connection_id.clone())
            .collect()
    }
}

/// An error in the shape the AWS SDK parses: the type in `x-amzn-ErrorType`, a message body.
fn error(status: StatusCode, kind: &'static str, text: &str) -> Response<Body> {
    let mut r = json_response(status, &json!({ "message": text }));
    r.headers_mut()
        .insert("x-amzn-errortype", HeaderValue::from_static(kind));
    r
}

pub async fn api(gw: &Gateway, method: &Method, id: &str, body: Bytes) -> Response<Body> {
    let conn = gw.conns.get(id).filter(|c| c.open.load(Ordering::SeqCst));
    let Some(conn) = conn else {
        return error(
            StatusCode::GONE,
            "GoneException",
            &format!("connection {id} is gone"),
        );
    };
    match *method {
        Method::POST => {
            if body.len() > MAX_MESSAGE {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "PayloadTooLargeException",
                    &format!("{} bytes is over the 128 KB message limit", body.len()),
                );
            }
            let frame = match String::from_utf8(body.to_vec()) {
                Ok(text) => Message::text(text),
                Err(_) => Message::binary(body),
            };
            // Never wait on a slow reader: its queue full is the caller's problem to retry.
            match conn.tx.try_send(Out::Frame(frame)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    return error(
                        StatusCode::TOO_MANY_REQUESTS,
                        "LimitExceededException",
                        &format!("connection {id} is not reading: 256 messages wait for it"),
                    );
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    return error(
                        StatusCode::GONE,
                        "GoneException",
                        &format!("connection {id} is gone"),
                    );
                }
            }
            conn.touch();
            super::gateway::respond(StatusCode::OK, Bytes::new())
        }
        Method::GET => {
            let mut identity = json!({ "sourceIp": conn.origin.source_ip });
            if let Some(ua) = &conn.origin.user_agent {
                identity["userAgent"] = json!(ua);
            }
            json_response(
                StatusCode::OK,
                &json!({
                    "connectedAt": events::iso8601(conn.origin.connected_at),
                    "identity": identity,
                    "lastActiveAt": events::iso8601(conn.last_active.load(Ordering::Relaxed)),
                }),
            )
        }
        Method::DELETE => {
            conn.open.store(false, Ordering::SeqCst);
            let _ = conn.tx.try_send(Out::Close);
            super::gateway::respond(StatusCode::NO_CONTENT, Bytes::new())
        }
        _ => error(
            StatusCode::FORBIDDEN,
            "ForbiddenException",
            "only POST, GET and DELETE are allowed on @connections",
        ),
    }
}
