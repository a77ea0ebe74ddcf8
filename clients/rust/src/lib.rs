//! A client for wsctl stages that keeps protocol.md's promises through every drop: it
//! reconnects with jittered backoff, resumes each channel after the last serial it delivered,
//! refills gaps from history, drops duplicates, numbers publishes so they keep their order and
//! sends unacknowledged ones again with the same id, pings before API Gateway's idle timeout,
//! reconnects on purpose before its 2-hour limit and renews its token with `auth` frames.
//!
//! ```no_run
//! # async fn demo() -> Result<(), wsctl_client::Error> {
//! use wsctl_client::{Client, Options};
//! let client = Client::new(Options::new("wss://abc.execute-api.eu-west-1.amazonaws.com/prod").token("eyJ…"))?;
//! let room = client.channel("room-1");
//! let mut messages = room.subscribe().await?;
//! room.publish(serde_json::json!({"text": "hi"})).await?;
//! while let Some(m) = messages.recv().await {
//!     println!("#{} from {}: {}", m.serial, m.from, m.data);
//! }
//! # Ok(()) }
//! ```
//!
//! A [`Client`] is a handle to a task on the current tokio runtime; clones share it, and it
//! closes when the last handle (client, channel or presence) is dropped or on [`Client::close`].

mod channel;
mod engine;
mod link;
mod presence;
mod publishes;
#[cfg(test)]
mod tests;
mod types;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use engine::Command;
pub use engine::{jwt_expiry, with_token};
pub use types::{
    Error, Event, Member, Message, Options, PresenceEvent, PublishResult, State, StateChange,
    TokenGrant,
};

/// One WebSocket to a wsctl stage, kept open.
#[derive(Clone)]
pub struct Client {
    commands: mpsc::UnboundedSender<Command>,
    state: watch::Receiver<StateChange>,
}

impl Client {
    /// Starts connecting on the current tokio runtime (it panics outside one, as
    /// `tokio::spawn` does). Fails only on options that can never work (a URL that is not
    /// `ws://` or `wss://`, no token and no `get_token`).
    pub fn new(options: Options) -> Result<Client, Error> {
        if !(options.url.starts_with("ws://") || options.url.starts_with("wss://")) {
            return Err(Error::Options(format!(
                "the URL {:?} is not a WebSocket URL: give the stage's wss://…/STAGE URL",
                options.url
            )));
        }
        if options.token.is_none() && options.get_token.is_none() {
            return Err(Error::Options(
                "give the client a token or a get_token function".into(),
            ));
        }
        let (commands, state) = engine::spawn(options);
        Ok(Client { commands, state })
    }

    /// The channel named `name`: a cheap handle, the same channel every time.
    pub fn channel(&self, name: impl Into<String>) -> Channel {
        Channel {
            client: self.clone(),
            name: name.into(),
        }
    }

    /// Publishes `data` on `channel`; resolves once, with the serial, after the server stored
    /// it, however many reconnects that takes. `id` makes it idempotent (one is made up
    /// otherwise). The publish is queued when this is called, not when the future is first
    /// polled, so publishes keep the order of the calls.
    pub fn publish(
        &self,
        channel: &str,
        data: Value,
        id: Option<String>,
    ) -> impl Future<Output = Result<PublishResult, Error>> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Publish {
            channel: channel.to_string(),
            data,
            id,
            reply,
        });
        async move { answer.await.unwrap_or(Err(Error::Closed)) }
    }

    /// The current state and why.
    pub fn state(&self) -> StateChange {
        self.state.borrow().clone()
    }

    /// Every state change from now on, the latest only (see [`Client::events`] for each one).
    pub fn states(&self) -> watch::Receiver<StateChange> {
        self.state.clone()
    }

    /// From now on: every state change, token renewal and unrequested error.
    pub fn events(&self) -> mpsc::UnboundedReceiver<Event> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.send(Command::Events(tx));
        rx
    }

    /// Every frame the server sends from now on, as it came: for tools that show the wire.
    pub fn frames(&self) -> mpsc::UnboundedReceiver<String> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.send(Command::Frames(tx));
        rx
    }

    /// Sends `frame` as it is on the open connection: false when there is none. Requests sent
    /// this way are not retried; the channel methods are.
    pub async fn send_frame(&self, frame: Value) -> bool {
        let (reply, answer) = oneshot::channel();
        self.send(Command::SendFrame { frame, reply });
        answer.await.unwrap_or(false)
    }

    /// Drops the connection and reconnects now, as after a network drop.
    pub fn reconnect(&self) {
        self.send(Command::Reconnect);
    }

    /// Closes the connection for good; waiting requests fail with [`Error::Closed`].
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        self.send(Command::Close { done });
        let _ = closed.await;
    }

    fn send(&self, command: Command) {
        // A closed client answers nothing: the dropped reply channel says so.
        let _ = self.commands.send(command);
    }
}

/// A channel of a [`Client`].
#[derive(Clone)]
pub struct Channel {
    client: Client,
    name: String,
}

/// `history`'s window: `since` a serial (every page, up to `limit`), or the last `limit`.
#[derive(Debug, Clone, Copy, Default)]
pub struct HistoryOptions {
    pub since: Option<u64>,
    pub limit: Option<u32>,
}

impl Channel {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Delivers each message once, in serial order, across any number of reconnects, from
    /// now on. Resolves when the server confirmed the subscription.
    pub async fn subscribe(&self) -> Result<Subscription, Error> {
        self.subscribe_from(None).await
    }

    /// As [`Channel::subscribe`], starting after `serial`: the messages since come first.
    pub async fn subscribe_since(&self, serial: u64) -> Result<Subscription, Error> {
        self.subscribe_from(Some(serial)).await
    }

    async fn subscribe_from(&self, since: Option<u64>) -> Result<Subscription, Error> {
        let (listener, messages) = mpsc::unbounded_channel();
        let (done, confirmed) = oneshot::channel();
        self.client.send(Command::Subscribe {
            channel: self.name.clone(),
            since,
            listener,
            done,
        });
        confirmed.await.unwrap_or(Err(Error::Closed))?;
        Ok(Subscription { messages })
    }

    /// Stops delivery (every [`Subscription`] of this channel ends); a later `subscribe`
    /// starts from then, not from where this one stopped.
    pub fn unsubscribe(&self) {
        self.client.send(Command::Unsubscribe {
            channel: self.name.clone(),
        });
    }

    /// Publishes on this channel: see [`Client::publish`].
    pub fn publish(
        &self,
        data: Value,
    ) -> impl Future<Output = Result<PublishResult, Error>> + Send + 'static {
        self.client.publish(&self.name, data, None)
    }

    /// Publishes with an idempotency key: a repeat of `id` answers the first serial.
    pub fn publish_with_id(
        &self,
        data: Value,
        id: impl Into<String>,
    ) -> impl Future<Output = Result<PublishResult, Error>> + Send + 'static {
        self.client.publish(&self.name, data, Some(id.into()))
    }

    /// The channel's past: `since` a serial (every page), or the last `limit` messages.
    pub async fn history(&self, options: HistoryOptions) -> Result<Vec<Message>, Error> {
        let (reply, answer) = oneshot::channel();
        self.client.send(Command::History {
            channel: self.name.clone(),
            since: options.since,
            limit: options.limit.map(|l| l.min(channel::MAX_LIMIT)),
            reply,
        });
        answer.await.unwrap_or(Err(Error::Closed))
    }

    /// The serial of the last message delivered, or None before the first.
    pub async fn last_serial(&self) -> Option<u64> {
        let (reply, answer) = oneshot::channel();
        self.client.send(Command::LastSerial {
            channel: self.name.clone(),
            reply,
        });
        answer.await.ok().flatten()
    }

    pub fn presence(&self) -> Presence {
        Presence {
            client: self.client.clone(),
            channel: self.name.clone(),
        }
    }
}

/// A channel's presence set, per user.
#[derive(Clone)]
pub struct Presence {
    client: Client,
    channel: String,
}

impl Presence {
    /// Enters with `data` (at most 2 KB), now and again after every reconnect. Sent, not
    /// confirmed: the `enter` event of the others says it arrived.
    pub fn enter(&self, data: Value) {
        self.client.send(Command::Enter {
            channel: self.channel.clone(),
            data,
        });
    }

    pub fn leave(&self) {
        self.client.send(Command::Leave {
            channel: self.channel.clone(),
        });
    }

    /// Every member (all pages), one entry per connection.
    pub async fn members(&self) -> Result<Vec<Member>, Error> {
        let (reply, answer) = oneshot::channel();
        self.client.send(Command::Members {
            channel: self.channel.clone(),
            reply,
        });
        answer.await.unwrap_or(Err(Error::Closed))
    }

    /// The users present as last seen through events and listings, with their latest data.
    pub async fn users(&self) -> HashMap<String, Value> {
        let (reply, answer) = oneshot::channel();
        self.client.send(Command::Users {
            channel: self.channel.clone(),
            reply,
        });
        answer.await.unwrap_or_default()
    }

    /// Per-user enter, update and leave from now on (a subscriber of the channel gets them).
    /// A user whose last connection left is announced after the leave grace, so a reconnect
    /// is neither a leave nor an enter.
    pub fn events(&self) -> mpsc::UnboundedReceiver<PresenceEvent> {
        let (listener, events) = mpsc::unbounded_channel();
        self.client.send(Command::PresenceEvents {
            channel: self.channel.clone(),
            listener,
        });
        events
    }
}

/// A channel's messages, each once and in serial order. Ends when the channel is unsubscribed
/// or the client closed.
pub struct Subscription {
    messages: mpsc::UnboundedReceiver<Message>,
}

impl Subscription {
    pub async fn recv(&mut self) -> Option<Message> {
        self.messages.recv().await
    }
}

impl futures::Stream for Subscription {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.messages.poll_recv(cx)
    }
}
