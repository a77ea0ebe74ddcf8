//! Open connections, and the `@connections` management API over them: POST sends, GET
//! describes, DELETE disconnects; an unknown or closed id (or one still in `$connect`)
//! answers 410 `GoneException`, as API Gateway does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{Method, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::crowd::Arrivals;
use super::events::{self, Origin};
use super::http::{Body, json_response, respond};
use super::meter::Meter;

/// API Gateway's quota for one message, either way.
pub const MAX_MESSAGE: usize = 128 * 1024;

/// What a connection's task is told to do.
pub enum Out {
    Frame(Message),
    /// Close normally (DELETE on `@connections`); `$disconnect` runs.
    Close,
    /// Vanish without a close frame and without `$disconnect` (the fault switch).
    Drop,
}

/// Where a connection is in its life; it only moves forward.
const CONNECTING: u8 = 0;
const OPEN: u8 = 1;
const CLOSING: u8 = 2;

pub struct Conn {
    pub origin: Origin,
    /// The authorizer's output, passed to every event of the connection.
    pub authorizer: Option<Value>,
    pub tx: mpsc::Sender<Out>,
    phase: AtomicU8,
    last_active: AtomicU64,
    /// Posts still to be answered 200 and never delivered (the dev server's loss switch).
    lose: AtomicU32,
    /// A virtual subscriber's record of what reached it; `None` for a real connection.
    arrivals: Option<Arrivals>,
}

impl Conn {
    pub fn new(origin: Origin, authorizer: Option<Value>, tx: mpsc::Sender<Out>) -> Conn {
        let now = origin.connected_at;
        Conn {
            origin,
            authorizer,
            tx,
            phase: AtomicU8::new(CONNECTING),
            last_active: AtomicU64::new(now),
            lose: AtomicU32::new(0),
            arrivals: None,
        }
    }

    /// A virtual subscriber: posts to it are recorded in `arrivals`, not sent.
    pub fn with_arrivals(self, arrivals: Arrivals) -> Conn {
        Conn {
            arrivals: Some(arrivals),
            ..self
        }
    }

    pub fn arrivals(&self) -> Option<&Arrivals> {
        self.arrivals.as_ref()
    }

    pub fn touch(&self) {
        self.last_active
            .store(events::epoch_ms(), Ordering::Relaxed);
    }

    /// `$connect` accepted it: it can be posted to and is listed. Not if it was closed meanwhile.
    pub fn open(&self) {
        let _ = self
            .phase
            .compare_exchange(CONNECTING, OPEN, Ordering::SeqCst, Ordering::SeqCst);
    }

    pub fn is_open(&self) -> bool {
        self.phase.load(Ordering::SeqCst) == OPEN
    }

    /// Gone for `@connections` and the listing from now on, while the socket still closes.
    /// True for the one call that closed it.
    pub fn close(&self) -> bool {
        self.phase.swap(CLOSING, Ordering::SeqCst) != CLOSING
    }

    /// The next `frames` posts are accepted and never delivered.
    pub fn lose(&self, frames: u32) {
        self.lose.store(frames, Ordering::SeqCst);
    }

    /// True when this post is one the loss switch swallows.
    fn swallow(&self) -> bool {
        self.lose
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// The user the authorizer let in (its `principalId`).
    pub fn user(&self) -> Option<&str> {
        self.authorizer.as_ref()?.get("principalId")?.as_str()
    }
}

/// The connections the gateway knows, by id: open ones and those still in `$connect`; and
/// the meter their time and messages count on.
#[derive(Clone)]
pub struct Registry {
    conns: Arc<Mutex<HashMap<String, Arc<Conn>>>>,
    pub meter: Arc<Meter>,
}

impl Default for Registry {
    fn default() -> Registry {
        Registry {
            conns: Default::default(),
            meter: Arc::new(Meter::new(events::epoch_ms())),
        }
    }
}

impl Registry {
    /// Lists `conn` for as long as the returned entry lives: dropping the entry is the one way
    /// a connection leaves the registry.
    pub fn enter(&self, conn: Arc<Conn>) -> Entry {
        self.conns
            .lock()
            .unwrap()
            .insert(conn.origin.connection_id.clone(), conn.clone());
        Entry {
            registry: self.clone(),
            conn,
        }
    }

    /// A connection not yet closing.
    pub fn get(&self, id: &str) -> Option<Arc<Conn>> {
        let conn = self.conns.lock().unwrap().get(id).cloned();
        conn.filter(|c| c.phase.load(Ordering::SeqCst) != CLOSING)
    }

    /// When each open connection opened (epoch ms).
    pub fn open_since(&self) -> Vec<u64> {
        self.conns
            .lock()
            .unwrap()
            .values()
            .filter(|c| c.is_open())
            .map(|c| c.origin.connected_at)
            .collect()
    }

    /// Open connections only; with `user`, only that user's.
    pub fn ids(&self, user: Option<&str>) -> Vec<String> {
        self.conns
            .lock()
            .unwrap()
            .values()
            .filter(|c| c.is_open() && user.is_none_or(|u| c.user() == Some(u)))
            .map(|c| c.origin.connection_id.clone())
            .collect()
    }
}

/// A connection's place in the [`Registry`].
pub struct Entry {
    registry: Registry,
    conn: Arc<Conn>,
}

impl Entry {
    pub fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.registry
            .conns
            .lock()
            .unwrap()
            .remove(&self.conn.origin.connection_id);
        self.registry
            .meter
            .closed(self.conn.origin.connected_at, events::epoch_ms());
    }
}

/// An error in the shape the AWS SDK parses: the type in `x-amzn-ErrorType`, a message body.
fn error(status: StatusCode, kind: &'static str, text: &str) -> Response<Body> {
    let mut r = json_response(status, &json!({ "message": text }));
    r.headers_mut()
        .insert("x-amzn-errortype", HeaderValue::from_static(kind));
    r
}

/// The account's throttle refused the call, as API Gateway answers it.
pub fn throttled() -> Response<Body> {
    error(
        StatusCode::TOO_MANY_REQUESTS,
        "LimitExceededException",
        "Rate exceeded: the account's API Gateway throttle is spent",
    )
}

pub fn api(conns: &Registry, method: &Method, id: &str, body: Bytes) -> Response<Body> {
    let conn = conns.get(id).filter(|c| c.is_open());
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
            if conn.swallow() {
                conn.touch();
                return respond(StatusCode::OK, Bytes::new());
            }
            conns.meter.message(body.len());
            if let Some(arrivals) = &conn.arrivals {
                arrivals.record(&body);
                conn.touch();
                return respond(StatusCode::OK, Bytes::new());
            }
            let frame = match Utf8Bytes::try_from(body.clone()) {
                Ok(text) => Message::Text(text),
                Err(_) => Message::Binary(body),
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
            respond(StatusCode::OK, Bytes::new())
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
            conn.close();
            let _ = conn.tx.try_send(Out::Close);
            respond(StatusCode::NO_CONTENT, Bytes::new())
        }
        _ => error(
            StatusCode::FORBIDDEN,
            "ForbiddenException",
            "only POST, GET and DELETE are allowed on @connections",
        ),
    }
}
