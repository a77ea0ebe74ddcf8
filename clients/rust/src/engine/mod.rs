//! The task behind a [`crate::Client`]: owns the WebSocket, its reconnects, tokens and timers,
//! and every channel's state. Handles talk to it through `Command`s; the socket's reader and
//! writer, token fetches and handshakes come back as `Input`s tagged with the generation of the
//! connection they belong to, so nothing from an old socket touches a new one.

mod commands;
mod connection;
mod tokens;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::channel::Channel;
use crate::link::{Link, Timer};
use crate::presence::Presence;
use crate::publishes::Publishes;
use crate::types::{Error, Event, Options, State, StateChange, TokenGrant};

pub(crate) use commands::Command;
pub use connection::with_token;
pub use tokens::jwt_expiry;

enum Input {
    Token {
        round: u64,
        grant: Result<TokenGrant, String>,
    },
    Opened {
        generation: u64,
        result: Result<Box<Socket>, Failure>,
    },
    Frame {
        generation: u64,
        text: String,
    },
    Closed {
        generation: u64,
        code: u16,
        reason: String,
    },
    Renewed {
        round: u64,
        grant: Result<TokenGrant, String>,
    },
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

enum Failure {
    Status(u16),
    Other(String),
}

/// The open connection as channels see it, and the client's timers and listeners.
struct Conn {
    out: Option<mpsc::UnboundedSender<WsMessage>>,
    state: State,
    state_tx: watch::Sender<StateChange>,
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    due: HashMap<u64, Timer>,
    timer_ids: u64,
    last_sent: Instant,
    listeners: Vec<mpsc::UnboundedSender<Event>>,
    /// The status of the handshake just refused, told with the next state.
    refusal: Option<u16>,
    /// When the keep-alive ping that has no `pong` yet went out.
    ping_at: Option<Instant>,
}

impl Link for Conn {
    fn send(&mut self, frame: Value) -> bool {
        let Some(out) = &self.out else { return false };
        if self.state != State::Connected || out.send(WsMessage::text(frame.to_string())).is_err() {
            return false;
        }
        self.last_sent = Instant::now();
        true
    }

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn later(&mut self, after: Duration, timer: Timer) {
        self.timer_ids += 1;
        // A delay set to "never" (Duration::MAX) is a century, not an overflow.
        let at = Instant::now()
            .checked_add(after)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(100 * 365 * 86_400));
        self.timers.push(Reverse((at, self.timer_ids)));
        self.due.insert(self.timer_ids, timer);
    }

    fn emit(&mut self, event: Event) {
        self.listeners.retain(|l| l.send(event.clone()).is_ok());
    }
}

impl Conn {
    fn set_state(&mut self, state: State, reason: Option<String>, retry_in: Option<Duration>) {
        self.state = state;
        let change = StateChange {
            state,
            reason,
            retry_in,
            status: self.refusal.take(),
        };
        self.state_tx.send_replace(change.clone());
        self.emit(Event::State(change));
    }
}

pub(crate) struct Engine {
    opts: Options,
    conn: Conn,
    channels: HashMap<String, Channel>,
    publishes: Publishes,
    inputs: mpsc::UnboundedSender<Input>,
    /// Failures since the last stable connection: the backoff's exponent.
    attempt: u32,
    /// Names the pending connect (its timer, its token fetch), so an older one does nothing.
    connect_round: u64,
    generation: u64,
    opened_at: Instant,
    reader: Option<JoinHandle<()>>,
    token: Option<String>,
    /// The token's expiry, epoch seconds, when known.
    expires: Option<u64>,
    /// The server refused the token, or it ended: ask `get_token` for another before
    /// reconnecting.
    stale: bool,
    renew_round: u64,
    closed: bool,
    id_prefix: String,
    ids: u64,
    taps: Vec<mpsc::UnboundedSender<String>>,
}

pub(crate) fn spawn(
    opts: Options,
) -> (mpsc::UnboundedSender<Command>, watch::Receiver<StateChange>) {
    let (commands_tx, commands) = mpsc::unbounded_channel();
    let (inputs_tx, inputs) = mpsc::unbounded_channel();
    let (state_tx, state_rx) = watch::channel(StateChange {
        state: State::Connecting,
        reason: None,
        retry_in: None,
        status: None,
    });
    let token = opts.token.clone();
    let expires = token.as_deref().and_then(jwt_expiry);
    let mut engine = Engine {
        publishes: Publishes::new(opts.publish_window),
        opts,
        conn: Conn {
            out: None,
            state: State::Connecting,
            state_tx,
            timers: BinaryHeap::new(),
            due: HashMap::new(),
            timer_ids: 0,
            last_sent: Instant::now(),
            listeners: Vec::new(),
            refusal: None,
            ping_at: None,
        },
        channels: HashMap::new(),
        inputs: inputs_tx,
        attempt: 0,
        connect_round: 0,
        generation: 0,
        opened_at: Instant::now(),
        reader: None,
        token,
        expires,
        stale: false,
        renew_round: 0,
        closed: false,
        id_prefix: format!("{:016x}", fastrand::u64(..)),
        ids: 0,
        taps: Vec::new(),
    };
    engine.later_connect(Duration::ZERO);
    engine.conn.later(Duration::from_secs(1), Timer::Watch);
    tokio::spawn(engine.run(commands, inputs));
    (commands_tx, state_rx)
}

impl Engine {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut inputs: mpsc::UnboundedReceiver<Input>,
    ) {
        while !self.closed {
            let next = self.conn.timers.peek().map(|Reverse((at, _))| *at);
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.command(command),
                    // Every handle is gone: nobody can read what would arrive.
                    None => self.close("every handle to the client was dropped"),
                },
                Some(input) = inputs.recv() => self.input(input),
                _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                    self.fire_due();
                }
            }
        }
    }

    fn fire_due(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, id))) = self.conn.timers.peek().copied() {
            if at > now {
                break;
            }
            self.conn.timers.pop();
            if let Some(timer) = self.conn.due.remove(&id) {
                self.timer(timer);
            }
        }
    }

    /// The channel `name` (made on first use), with the connection it sends on.
    fn channel(&mut self, name: &str) -> (&mut Channel, &mut Conn) {
        let delay = self.opts.presence_leave_delay;
        let channel = self.channels.entry(name.to_string()).or_insert_with(|| {
            Channel::new(name.to_string(), Presence::new(name.to_string(), delay))
        });
        (channel, &mut self.conn)
    }

    fn input(&mut self, input: Input) {
        if self.closed {
            return;
        }
        match input {
            Input::Token { round, grant } if round == self.connect_round => match grant {
                Ok(grant) => {
                    self.take(grant);
                    self.stale = false;
                    self.dial();
                }
                Err(why) => self.retry(format!("get_token failed: {why}"), 0),
            },
            Input::Opened { generation, result } if generation == self.generation => match result {
                Ok(socket) => self.opened(socket),
                Err(failure) => self.lost(false, failure),
            },
            Input::Frame { generation, text } if generation == self.generation => self.frame(&text),
            Input::Closed {
                generation,
                code,
                reason,
            } if generation == self.generation && self.conn.out.is_some() => {
                self.conn.out = None;
                // A failed write ends a socket the reader may still be waiting on.
                if let Some(reader) = self.reader.take() {
                    reader.abort();
                }
                let why = if reason.is_empty() {
                    format!("closed ({code})")
                } else {
                    format!("closed ({code} {reason})")
                };
                self.lost(true, Failure::Other(why));
            }
            Input::Renewed { round, grant } if round == self.renew_round => match grant {
                Err(_) => self.schedule_renew(Duration::from_secs(5)),
                Ok(grant) => {
                    self.take(grant);
                    let frame = json!({"action": "auth", "token": self.token});
                    if self.conn.send(frame) {
                        // Asked again if no `authenticated` comes back.
                        self.schedule_renew(Duration::from_secs(10));
                    }
                }
            },
            _ => {}
        }
    }

    fn timer(&mut self, timer: Timer) {
        match timer {
            Timer::Connect { attempt } if attempt == self.connect_round => self.connect(),
            Timer::PlannedReconnect { generation } if generation == self.generation => {
                self.drop_socket(
                    "planned reconnect before API Gateway's 2-hour limit",
                    Some(Duration::ZERO),
                );
            }
            Timer::Watch => self.watch(),
            Timer::Renew { round } if round == self.renew_round => self.renew(),
            Timer::ResendPublish {
                id,
                seq,
                connection,
            } => self.publishes.resend(&mut self.conn, &id, seq, connection),
            Timer::ResendHead { channel, op } => {
                if let Some(ch) = self.channels.get_mut(&channel) {
                    ch.resend_head(&mut self.conn, op);
                }
            }
            Timer::ResendPresence { channel } => {
                if let Some(ch) = self.channels.get_mut(&channel) {
                    ch.presence.resend(&mut self.conn);
                }
            }
            Timer::AnnounceLeave {
                channel,
                user,
                round,
            } => {
                if let Some(ch) = self.channels.get_mut(&channel) {
                    ch.presence.leave_due(&user, round);
                }
            }
            _ => {}
        }
    }

    fn frame(&mut self, text: &str) {
        self.taps.retain(|t| t.send(text.to_string()).is_ok());
        let Ok(f) = serde_json::from_str::<Value>(text) else {
            let head: String = text.chars().take(100).collect();
            return self.conn.emit(Event::Error(Error::BadFrame(head)));
        };
        match f["type"].as_str() {
            Some("ack") => self.publishes.ack(&mut self.conn, &f),
            Some("error") => self.error(&f),
            Some("authenticated") => {
                self.expires = f["expires"].as_u64().or(self.expires);
                for name in f["dropped"].as_array().into_iter().flatten() {
                    if let Some(ch) = name.as_str().and_then(|n| self.channels.get_mut(n)) {
                        ch.dropped(&mut self.conn);
                    }
                }
                self.conn.emit(Event::Token {
                    user: f["user"].as_str().unwrap_or_default().to_string(),
                    expires: f["expires"].as_u64().unwrap_or_default(),
                });
                self.schedule_renewal();
            }
            Some("pong") => self.conn.ping_at = None,
            Some(_) if f["channel"].is_string() => {
                let name = f["channel"].as_str().unwrap_or_default();
                if let Some(ch) = self.channels.get_mut(name) {
                    ch.frame(&mut self.conn, &f);
                }
            }
            // API Gateway's own answer when an integration failed ({"message": "Internal
            // server error", ...}) names no request: the watchdog resends what goes unanswered.
            _ => {
                let message = f["message"].as_str().map(str::to_string);
                let head: String = text.chars().take(200).collect();
                self.conn
                    .emit(Event::Error(Error::Gateway(message.unwrap_or(head))));
            }
        }
    }

    fn error(&mut self, f: &Value) {
        if matches!(f["code"].as_str(), Some("token_expired" | "token_revoked")) {
            // The server closes the connection after this frame; the next needs a new token.
            self.stale = true;
        }
        if f["action"] == "publish" {
            return self.publishes.error(&mut self.conn, f);
        }
        if f["action"] == "auth" {
            return self.renewal_refused(f);
        }
        if let Some(ch) = f["channel"].as_str().and_then(|n| self.channels.get_mut(n)) {
            return ch.error(&mut self.conn, f);
        }
        self.conn.emit(Event::Error(Error::server(f)));
    }

    // ---- the watchdog ----

    /// Once a second: a keep-alive ping when idle; a reconnect when a request goes unanswered.
    fn watch(&mut self) {
        self.conn.later(Duration::from_secs(1), Timer::Watch);
        if self.conn.state != State::Connected {
            return;
        }
        if self.conn.last_sent.elapsed() >= self.opts.ping_after
            && self.conn.send(json!({"action": "ping"}))
        {
            self.conn.ping_at.get_or_insert_with(Instant::now);
        }
        // An unanswered ping too: a half-open socket delivers nothing and says nothing.
        let oldest = self
            .channels
            .values()
            .filter_map(Channel::waiting_since)
            .chain(self.publishes.waiting_since())
            .chain(self.conn.ping_at)
            .min();
        // A frame lost on the way (API Gateway answered an integration failure, a dropped
        // invocation): start over on a new connection, which sends every open request again.
        if oldest.is_some_and(|at| at.elapsed() > self.opts.request_timeout) {
            self.drop_socket("a request went unanswered", Some(Duration::ZERO));
        }
    }
}
