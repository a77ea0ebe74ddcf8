//! The task behind a [`crate::Client`]: owns the WebSocket, its reconnects, tokens and timers,
//! and every channel's state. Handles talk to it through `Command`s; the socket's reader and
//! writer, token fetches and handshakes come back as `Input`s tagged with the generation of the
//! connection they belong to, so nothing from an old socket touches a new one.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::channel::Channel;
use crate::link::{Link, Timer};
use crate::presence::Presence;
use crate::publishes::Publishes;
use crate::types::{
    Error, Event, Member, Message, Options, PresenceEvent, PublishResult, State, StateChange,
    TokenGrant,
};

/// A connection that lived this long was a success: the next reconnect starts from the
/// shortest delay.
const STABLE: Duration = Duration::from_secs(1);

pub(crate) enum Command {
    Subscribe {
        channel: String,
        since: Option<u64>,
        listener: mpsc::UnboundedSender<Message>,
        done: oneshot::Sender<Result<(), Error>>,
    },
    Unsubscribe {
        channel: String,
    },
    Publish {
        channel: String,
        data: Value,
        id: Option<String>,
        reply: oneshot::Sender<Result<PublishResult, Error>>,
    },
    History {
        channel: String,
        since: Option<u64>,
        limit: Option<u32>,
        reply: oneshot::Sender<Result<Vec<Message>, Error>>,
    },
    LastSerial {
        channel: String,
        reply: oneshot::Sender<Option<u64>>,
    },
    Enter {
        channel: String,
        data: Value,
    },
    Leave {
        channel: String,
    },
    Members {
        channel: String,
        reply: oneshot::Sender<Result<Vec<Member>, Error>>,
    },
    Users {
        channel: String,
        reply: oneshot::Sender<HashMap<String, Value>>,
    },
    PresenceEvents {
        channel: String,
        listener: mpsc::UnboundedSender<PresenceEvent>,
    },
    Events(mpsc::UnboundedSender<Event>),
    Frames(mpsc::UnboundedSender<String>),
    SendFrame {
        frame: Value,
        reply: oneshot::Sender<bool>,
    },
    Reconnect,
    Close {
        done: oneshot::Sender<()>,
    },
}

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
        self.timers
            .push(Reverse((Instant::now() + after, self.timer_ids)));
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

    fn channel(&mut self, name: &str) -> &mut Channel {
        let delay = self.opts.presence_leave_delay;
        self.channels.entry(name.to_string()).or_insert_with(|| {
            Channel::new(name.to_string(), Presence::new(name.to_string(), delay))
        })
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Subscribe {
                channel,
                since,
                listener,
                done,
            } => {
                self.channel(&channel);
                let ch = self.channels.get_mut(&channel).expect("made");
                ch.subscribe(&mut self.conn, since, listener, done);
            }
            Command::Unsubscribe { channel } => {
                self.channel(&channel);
                let ch = self.channels.get_mut(&channel).expect("made");
                ch.unsubscribe(&mut self.conn);
            }
            Command::Publish {
                channel,
                data,
                id,
                reply,
            } => {
                let id = id.unwrap_or_else(|| {
                    self.ids += 1;
                    format!("{}-{}", self.id_prefix, self.ids)
                });
                self.publishes.add(&mut self.conn, channel, data, id, reply);
            }
            Command::History {
                channel,
                since,
                limit,
                reply,
            } => {
                self.channel(&channel);
                let ch = self.channels.get_mut(&channel).expect("made");
                ch.history(&mut self.conn, since, limit, reply);
            }
            Command::LastSerial { channel, reply } => {
                let _ = reply.send(self.channels.get(&channel).and_then(Channel::last_serial));
            }
            Command::Enter { channel, data } => {
                self.channel(&channel);
                let ch = self.channels.get_mut(&channel).expect("made");
                ch.presence.enter(&mut self.conn, data);
            }
            Command::Leave { channel } => {
                if let Some(ch) = self.channels.get_mut(&channel) {
                    ch.presence.leave(&mut self.conn);
                }
            }
            Command::Members { channel, reply } => {
                self.channel(&channel);
                let ch = self.channels.get_mut(&channel).expect("made");
                ch.presence.members(&mut self.conn, reply);
            }
            Command::Users { channel, reply } => {
                let users = self
                    .channels
                    .get(&channel)
                    .map(|c| c.presence.users())
                    .unwrap_or_default();
                let _ = reply.send(users);
            }
            Command::PresenceEvents { channel, listener } => {
                self.channel(&channel).presence.listen(listener);
            }
            Command::Events(listener) => self.conn.listeners.push(listener),
            Command::Frames(tap) => self.taps.push(tap),
            Command::SendFrame { frame, reply } => {
                let _ = reply.send(self.conn.send(frame));
            }
            Command::Reconnect => {
                self.drop_socket("reconnect asked for", Some(Duration::ZERO));
            }
            Command::Close { done } => {
                self.close("closed by the application");
                let _ = done.send(());
            }
        }
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
                self.reader = None;
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
            Timer::ResendPublish { id, seq } => self.publishes.resend(&mut self.conn, &id, seq),
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

    // ---- the connection ----

    fn later_connect(&mut self, after: Duration) {
        self.connect_round += 1;
        let attempt = self.connect_round;
        self.conn.later(after, Timer::Connect { attempt });
    }

    fn connect(&mut self) {
        if self.closed {
            return;
        }
        self.conn.set_state(State::Connecting, None, None);
        let soon = self
            .expires
            .is_some_and(|e| e.saturating_mul(1000) < now_ms() + 10_000);
        if let Some(source) = &self.opts.get_token
            && (self.stale || self.token.is_none() || soon)
        {
            let fetch = (source.0)();
            let inputs = self.inputs.clone();
            let round = self.connect_round;
            tokio::spawn(async move {
                let grant = fetch.await;
                let _ = inputs.send(Input::Token { round, grant });
            });
            return;
        }
        self.dial();
    }

    fn dial(&mut self) {
        let Some(token) = &self.token else {
            return self.retry(
                "there is no token: give the client one, or get_token".into(),
                0,
            );
        };
        self.generation += 1;
        let generation = self.generation;
        let url = with_token(&self.opts.url, token);
        let inputs = self.inputs.clone();
        let patience = self.opts.request_timeout;
        tokio::spawn(async move {
            let result =
                match tokio::time::timeout(patience, tokio_tungstenite::connect_async(url)).await {
                    Err(_) => Err(Failure::Other("the handshake timed out".into())),
                    Ok(Ok((socket, _))) => Ok(Box::new(socket)),
                    Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
                        Err(Failure::Status(response.status().as_u16()))
                    }
                    Ok(Err(e)) => Err(Failure::Other(format!("the handshake failed: {e}"))),
                };
            let _ = inputs.send(Input::Opened { generation, result });
        });
    }

    fn opened(&mut self, socket: Box<Socket>) {
        let generation = self.generation;
        let (mut sink, mut stream) = socket.split();
        let (out, mut queue) = mpsc::unbounded_channel::<WsMessage>();
        tokio::spawn(async move {
            while let Some(message) = queue.recv().await {
                let closing = matches!(message, WsMessage::Close(_));
                if sink.send(message).await.is_err() || closing {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let inputs = self.inputs.clone();
        self.reader = Some(tokio::spawn(async move {
            let (mut code, mut reason) = (1006, String::new());
            while let Some(frame) = stream.next().await {
                match frame {
                    Ok(WsMessage::Text(text)) => {
                        let text = text.as_str().to_string();
                        if inputs.send(Input::Frame { generation, text }).is_err() {
                            return;
                        }
                    }
                    Ok(WsMessage::Close(frame)) => {
                        if let Some(f) = frame {
                            (code, reason) = (u16::from(f.code), f.reason.to_string());
                        } else {
                            code = 1005;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            let _ = inputs.send(Input::Closed {
                generation,
                code,
                reason,
            });
        }));
        self.conn.out = Some(out);
        self.opened_at = Instant::now();
        self.conn.last_sent = self.opened_at;
        self.conn.set_state(State::Connected, None, None);
        self.publishes.connected(&mut self.conn);
        for ch in self.channels.values_mut() {
            ch.connected(&mut self.conn);
        }
        self.schedule_renewal();
        let after = self.opts.max_connection;
        self.conn
            .later(after, Timer::PlannedReconnect { generation });
    }

    /// The socket closed, or never opened: say why and come back.
    fn lost(&mut self, opened: bool, failure: Failure) {
        self.disconnected();
        if opened && self.opened_at.elapsed() >= STABLE {
            self.attempt = 0;
        }
        if let Failure::Status(status) = failure {
            self.conn.refusal = Some(status);
        }
        match failure {
            Failure::Status(status @ (401 | 403)) => {
                if self.opts.get_token.is_none() {
                    return self.close(&format!(
                        "the token was refused ({status}); give the client a get_token to renew it"
                    ));
                }
                self.stale = true;
                self.retry(format!("the token was refused ({status})"), 0);
            }
            // Too many connections for this user, or the account's throttle: wait longer.
            Failure::Status(429) => self.retry("too many connections (429)".into(), 2),
            Failure::Status(status) => {
                self.retry(format!("the handshake was refused ({status})"), 0)
            }
            Failure::Other(why) => self.retry(why, 0),
        }
    }

    fn retry(&mut self, reason: String, extra: u32) {
        if self.closed {
            return;
        }
        let min = self.opts.min_delay.as_secs_f64();
        let base = (min * 2f64.powi((self.attempt + extra).min(30) as i32))
            .min(self.opts.max_delay.as_secs_f64());
        let delay = Duration::from_secs_f64(base * (0.5 + fastrand::f64() * 0.5));
        self.attempt += 1;
        self.conn
            .set_state(State::Disconnected, Some(reason), Some(delay));
        self.later_connect(delay);
    }

    fn disconnected(&mut self) {
        for ch in self.channels.values_mut() {
            ch.disconnected();
        }
        self.publishes.disconnected();
    }

    /// Closes the open socket on purpose and reconnects after `delay` (None: with backoff).
    fn drop_socket(&mut self, reason: &str, delay: Option<Duration>) {
        let Some(out) = self.conn.out.take() else {
            return;
        };
        let _ = out.send(WsMessage::Close(Some(CloseFrame {
            code: CloseCode::Library(4000),
            reason: "reconnecting".into(),
        })));
        if let Some(reader) = self.reader.take() {
            reader.abort();
        }
        self.generation += 1;
        self.disconnected();
        match delay {
            None => self.retry(reason.to_string(), 0),
            Some(delay) => {
                self.conn
                    .set_state(State::Disconnected, Some(reason.to_string()), Some(delay));
                self.later_connect(delay);
            }
        }
    }

    fn close(&mut self, reason: &str) {
        if self.closed {
            return;
        }
        self.closed = true;
        if let Some(out) = self.conn.out.take() {
            let _ = out.send(WsMessage::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "closed by the application".into(),
            })));
        }
        if let Some(reader) = self.reader.take() {
            reader.abort();
        }
        self.disconnected();
        for ch in self.channels.values_mut() {
            ch.fail(Error::Closed);
        }
        self.publishes.fail(Error::Closed);
        self.conn.timers.clear();
        self.conn.due.clear();
        self.conn
            .set_state(State::Closed, Some(reason.to_string()), None);
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
            Some("pong") => {}
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

    // ---- tokens ----

    fn take(&mut self, grant: TokenGrant) {
        self.expires = grant.expires_at.or_else(|| jwt_expiry(&grant.token));
        self.token = Some(grant.token);
    }

    /// Renews at 80% of the token's remaining life, with an `auth` frame on the open connection.
    fn schedule_renewal(&mut self) {
        self.renew_round += 1;
        let (Some(_), Some(expires)) = (&self.opts.get_token, self.expires) else {
            return;
        };
        let left = expires.saturating_mul(1000).saturating_sub(now_ms());
        let after = Duration::from_millis(left * 4 / 5).max(Duration::from_secs(1));
        let round = self.renew_round;
        self.conn.later(after, Timer::Renew { round });
    }

    fn schedule_renew(&mut self, after: Duration) {
        self.renew_round += 1;
        let round = self.renew_round;
        self.conn.later(after, Timer::Renew { round });
    }

    fn renew(&mut self) {
        let Some(source) = &self.opts.get_token else {
            return;
        };
        if self.conn.state != State::Connected {
            return;
        }
        let fetch = (source.0)();
        let inputs = self.inputs.clone();
        let round = self.renew_round;
        tokio::spawn(async move {
            let grant = fetch.await;
            let _ = inputs.send(Input::Renewed { round, grant });
        });
    }

    fn renewal_refused(&mut self, f: &Value) {
        if crate::link::retryable(f) {
            let after = crate::link::retry_delay(f).max(Duration::from_secs(1));
            return self.schedule_renew(after);
        }
        self.conn.emit(Event::Error(Error::server(f)));
        self.stale = true;
    }

    // ---- the watchdog ----

    /// Once a second: a keep-alive ping when idle; a reconnect when a request goes unanswered.
    fn watch(&mut self) {
        self.conn.later(Duration::from_secs(1), Timer::Watch);
        if self.conn.state != State::Connected {
            return;
        }
        if self.conn.last_sent.elapsed() >= self.opts.ping_after {
            self.conn.send(json!({"action": "ping"}));
        }
        let oldest = self
            .channels
            .values()
            .filter_map(Channel::waiting_since)
            .chain(self.publishes.waiting_since())
            .min();
        // A frame lost on the way (API Gateway answered an integration failure, a dropped
        // invocation): start over on a new connection, which sends every open request again.
        if oldest.is_some_and(|at| at.elapsed() > self.opts.request_timeout) {
            self.drop_socket("a request went unanswered", Some(Duration::ZERO));
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// `url` with `token` as its `token` query parameter, where the stage's authorizer reads it.
pub fn with_token(url: &str, token: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    let mut encoded = String::with_capacity(token.len());
    for b in token.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{url}{separator}token={encoded}")
}

/// The `exp` of a JWT, or None when it has none or is not one.
pub fn jwt_expiry(token: &str) -> Option<u64> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<Value>(&bytes).ok()?["exp"].as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_goes_into_the_query_encoded() {
        assert_eq!(
            with_token("ws://h/dev", "a.b-c_d"),
            "ws://h/dev?token=a.b-c_d"
        );
        assert_eq!(
            with_token("ws://h/dev?x=1", "a+b/c="),
            "ws://h/dev?x=1&token=a%2Bb%2Fc%3D"
        );
    }

    #[test]
    fn the_expiry_of_a_jwt_is_read_and_anything_else_has_none() {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let jwt = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"HS256"}"#),
            b64(r#"{"exp":1700000000}"#)
        );
        assert_eq!(jwt_expiry(&jwt), Some(1_700_000_000));
        assert_eq!(jwt_expiry("opaque"), None);
        assert_eq!(jwt_expiry("a.!!!.c"), None);
    }
}
