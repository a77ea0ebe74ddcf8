//! What the handles ask of the engine, and how it answers.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::channel::Channel;
use crate::link::Link;
use crate::types::{Error, Event, Member, Message, PresenceEvent, PublishResult};

use super::Engine;

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

impl Engine {
    pub(super) fn command(&mut self, command: Command) {
        match command {
            Command::Subscribe {
                channel,
                since,
                listener,
                done,
            } => {
                let (ch, conn) = self.channel(&channel);
                ch.subscribe(conn, since, listener, done);
            }
            Command::Unsubscribe { channel } => {
                let (ch, conn) = self.channel(&channel);
                ch.unsubscribe(conn);
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
                let (ch, conn) = self.channel(&channel);
                ch.history(conn, since, limit, reply);
            }
            Command::LastSerial { channel, reply } => {
                let _ = reply.send(self.channels.get(&channel).and_then(Channel::last_serial));
            }
            Command::Enter { channel, data } => {
                let (ch, conn) = self.channel(&channel);
                ch.presence.enter(conn, data);
            }
            Command::Leave { channel } => {
                if let Some(ch) = self.channels.get_mut(&channel) {
                    ch.presence.leave(&mut self.conn);
                }
            }
            Command::Members { channel, reply } => {
                let (ch, conn) = self.channel(&channel);
                ch.presence.members(conn, reply);
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
                self.channel(&channel).0.presence.listen(listener);
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
}
