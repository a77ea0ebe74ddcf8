use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A message on a channel, as every subscriber receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    #[serde(default)]
    pub channel: String,
    /// Per channel, increasing: every subscriber sees the same order.
    pub serial: u64,
    /// The publisher's id (idempotency key), or one the server made up.
    #[serde(default)]
    pub id: String,
    /// The publishing user (`sub` of their token), or `server` for server-side publishes.
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub data: Value,
    /// When it was stored, epoch milliseconds.
    #[serde(default)]
    pub ts: u64,
}

/// The answer to a publish, once the server stored it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishResult {
    pub serial: u64,
    /// True when this id had been published before: `serial` is the first publish's.
    pub duplicate: bool,
}

/// One connection in a channel's presence set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub user: String,
    pub connection: String,
    #[serde(default)]
    pub data: Value,
}

/// A presence change, per user: a user with several connections (tabs, a reconnect that left
/// its old connection behind for a moment) enters once and leaves once.
#[derive(Debug, Clone, PartialEq)]
pub enum PresenceEvent {
    Enter { user: String, data: Value },
    Update { user: String, data: Value },
    Leave { user: String, data: Value },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Connecting,
    Connected,
    Disconnected,
    Closed,
}

/// What [`Event::State`] carries: the new state and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    pub state: State,
    /// The close code and reason, a refusal, `close()`…
    pub reason: Option<String>,
    /// For `Disconnected`: how long until the next attempt.
    pub retry_in: Option<Duration>,
    /// The HTTP status of a refused handshake: 401/403 (the token), 429 (too many connections).
    pub status: Option<u16>,
}

/// What [`crate::Client::events`] yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    State(StateChange),
    /// The server accepted a renewed token (an `auth` frame): `expires` is its `exp`.
    Token {
        user: String,
        expires: u64,
    },
    /// A refusal no request was waiting for, or a frame the client does not know.
    Error(Error),
}

/// Why a request failed. `Server` carries protocol.md's error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{code}: {message}")]
    Server { code: String, message: String },
    #[error("the client was closed")]
    Closed,
    /// Options that can never work, named with the fix.
    #[error("{0}")]
    Options(String),
    #[error("unsubscribed before the subscription was confirmed")]
    Unsubscribed,
    #[error("the server sent a frame that is not JSON: {0}")]
    BadFrame(String),
    /// API Gateway's own answer when an integration failed: it names no request.
    #[error("the gateway answered: {0}")]
    Gateway(String),
}

impl Error {
    pub(crate) fn server(frame: &Value) -> Error {
        Error::Server {
            code: frame["code"].as_str().unwrap_or("unknown").to_string(),
            message: frame["message"].as_str().unwrap_or_default().to_string(),
        }
    }

    /// protocol.md's code, for errors from the server.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Server { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A token, and its expiry (epoch seconds) when it is not a JWT the client can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    pub token: String,
    pub expires_at: Option<u64>,
}

impl From<String> for TokenGrant {
    fn from(token: String) -> TokenGrant {
        TokenGrant {
            token,
            expires_at: None,
        }
    }
}

impl From<&str> for TokenGrant {
    fn from(token: &str) -> TokenGrant {
        TokenGrant::from(token.to_string())
    }
}

type TokenFuture = Pin<Box<dyn Future<Output = Result<TokenGrant, String>> + Send>>;

/// `get_token`: called at connect, before the token expires and after the server refused one.
#[derive(Clone)]
pub(crate) struct TokenSource(pub Arc<dyn Fn() -> TokenFuture + Send + Sync>);

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSource")
    }
}

/// How to reach a stage and how patient to be. `Options::new(url).token(t)` or
/// `.get_token(|| async { … })`; the rest has defaults fit for API Gateway.
#[derive(Debug, Clone)]
pub struct Options {
    pub(crate) url: String,
    pub(crate) token: Option<String>,
    pub(crate) get_token: Option<TokenSource>,
    /// First reconnect delay; doubles on each failure, with jitter, up to `max_delay`.
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// Sends a `ping` after this long without sending anything (API Gateway closes idle
    /// connections at 10 minutes).
    pub ping_after: Duration,
    /// Reconnects on purpose after this long (API Gateway ends connections at 2 hours).
    pub max_connection: Duration,
    /// Gives up on a handshake, or a request with no answer, after this long.
    pub request_timeout: Duration,
    /// Publishes sent and not yet acknowledged at once (the server holds at most 8 numbered ones).
    pub publish_window: usize,
    /// How long a user who left a channel's presence set may take to come back (a reconnect)
    /// before the leave is announced.
    pub presence_leave_delay: Duration,
}

impl Options {
    /// The stage URL, `wss://…/STAGE`.
    pub fn new(url: impl Into<String>) -> Options {
        Options {
            url: url.into(),
            token: None,
            get_token: None,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(15),
            ping_after: Duration::from_secs(4 * 60),
            max_connection: Duration::from_secs(110 * 60),
            request_timeout: Duration::from_secs(15),
            publish_window: 6,
            presence_leave_delay: Duration::from_secs(2),
        }
    }

    /// A token for the whole life of the client.
    pub fn token(mut self, token: impl Into<String>) -> Options {
        self.token = Some(token.into());
        self
    }

    /// Where fresh tokens come from: called at connect, at 80% of a token's life (the new one
    /// is sent in an `auth` frame) and after the server refused one.
    pub fn get_token<F, Fut, G, E>(mut self, f: F) -> Options
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<G, E>> + Send + 'static,
        G: Into<TokenGrant>,
        E: fmt::Display,
    {
        self.get_token = Some(TokenSource(Arc::new(move || {
            let fut = f();
            Box::pin(async move { fut.await.map(Into::into).map_err(|e| e.to_string()) })
        })));
        self
    }

    pub fn delays(mut self, min: Duration, max: Duration) -> Options {
        self.min_delay = min;
        self.max_delay = max.max(min);
        self
    }
}
