//! A channel's presence set. The server announces connections; this collapses them per user,
//! so a user with two tabs, or whose dropped connection lingers until the server notices,
//! enters once and leaves once.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::link::{Link, Timer, ends_connection, retry_delay, retryable};
use crate::types::{Error, Event, Member, PresenceEvent};

struct Listing {
    after: Option<String>,
    got: Vec<Member>,
    at: Option<Instant>,
    waiters: Vec<oneshot::Sender<Result<Vec<Member>, Error>>>,
}

/// A user present through one or more connections, with the latest data seen.
struct User {
    connections: usize,
    data: Value,
}

pub(crate) struct Presence {
    channel: String,
    /// What this client entered with, entered again on every new connection.
    mine: Option<Value>,
    by_connection: HashMap<String, Member>,
    users: HashMap<String, User>,
    listing: Option<Listing>,
    listed: bool,
    /// Users whose last connection left, announced only if they do not come back meanwhile.
    leaving: HashMap<String, (u64, Value)>,
    rounds: u64,
    leave_delay: Duration,
    listeners: Vec<mpsc::UnboundedSender<PresenceEvent>>,
}

impl Presence {
    pub fn new(channel: String, leave_delay: Duration) -> Presence {
        Presence {
            channel,
            mine: None,
            by_connection: HashMap::new(),
            users: HashMap::new(),
            listing: None,
            listed: false,
            leaving: HashMap::new(),
            rounds: 0,
            leave_delay,
            listeners: Vec::new(),
        }
    }

    pub fn listen(&mut self, listener: mpsc::UnboundedSender<PresenceEvent>) {
        self.listeners.push(listener);
    }

    /// Enters the presence set with `data` (≤ 2 KB), now and after every reconnect.
    pub fn enter(&mut self, link: &mut dyn Link, data: Value) {
        self.mine = Some(data);
        self.send_mine(link);
    }

    pub fn leave(&mut self, link: &mut dyn Link) {
        self.mine = None;
        link.send(json!({"action": "presence", "channel": self.channel, "leave": true}));
    }

    /// Every member (all pages), one entry per connection.
    pub fn members(
        &mut self,
        link: &mut dyn Link,
        reply: oneshot::Sender<Result<Vec<Member>, Error>>,
    ) {
        if self.listing.is_none() {
            self.listing = Some(Listing {
                after: None,
                got: Vec::new(),
                at: None,
                waiters: Vec::new(),
            });
            self.send_listing(link);
        }
        if let Some(l) = &mut self.listing {
            l.waiters.push(reply);
        }
    }

    /// The users present as last seen through events and listings, with their latest data.
    pub fn users(&self) -> HashMap<String, Value> {
        self.users
            .iter()
            .map(|(u, p)| (u.clone(), p.data.clone()))
            .collect()
    }

    // ---- driven by the channel ----

    pub fn connected(&mut self, link: &mut dyn Link, subscribed: bool) {
        self.send_mine(link);
        if let Some(l) = &mut self.listing {
            l.after = None;
            l.got.clear();
            self.send_listing(link);
        } else if subscribed && self.listed {
            // Events were missed while disconnected: list again and announce the difference.
            let (reply, _) = oneshot::channel();
            self.members(link, reply);
        }
    }

    pub fn disconnected(&mut self) {
        if let Some(l) = &mut self.listing {
            l.at = None;
        }
    }

    pub fn waiting_since(&self) -> Option<Instant> {
        self.listing.as_ref().and_then(|l| l.at)
    }

    pub fn frame(&mut self, link: &mut dyn Link, f: &Value) {
        if f["type"] == "presence" {
            let Ok(m) = serde_json::from_value::<Member>(f["member"].clone()) else {
                return;
            };
            let user = m.user.clone();
            let before = self.users.get(&user).map(|u| u.data.clone());
            match f["event"].as_str() {
                Some("enter") => {
                    if let Some(old) = self.by_connection.insert(m.connection.clone(), m.clone()) {
                        self.forget(&old);
                    }
                    self.add(&m);
                }
                Some("leave") => {
                    if let Some(old) = self.by_connection.remove(&m.connection) {
                        self.forget(&old);
                    }
                }
                _ => return,
            }
            self.announce(link, &user, before);
        } else if f["type"] == "members" {
            let Some(l) = &mut self.listing else { return };
            let page: Vec<Member> =
                serde_json::from_value(f["members"].clone()).unwrap_or_default();
            l.got.extend(page);
            if let Some(next) = f["next"].as_str().filter(|n| !n.is_empty()) {
                l.after = Some(next.to_string());
                self.send_listing(link);
                return;
            }
            let l = self.listing.take().expect("a listing");
            let before = self.users();
            // A page asked twice (a resend after a refusal) lists its members twice: one each.
            self.by_connection.clear();
            let mut members = Vec::with_capacity(l.got.len());
            for m in l.got {
                if !self.by_connection.contains_key(&m.connection) {
                    self.by_connection.insert(m.connection.clone(), m.clone());
                    members.push(m);
                }
            }
            self.users.clear();
            for m in &members {
                self.add(m);
            }
            self.listed = true;
            let mut names: Vec<&String> = before.keys().chain(self.users.keys()).collect();
            names.sort();
            names.dedup();
            let names: Vec<String> = names.into_iter().cloned().collect();
            for user in names {
                let was = before.get(&user).cloned();
                self.announce(link, &user, was);
            }
            for w in l.waiters {
                let _ = w.send(Ok(members.clone()));
            }
        }
    }

    pub fn error(&mut self, link: &mut dyn Link, f: &Value) {
        if ends_connection(f) {
            return; // entered and listed again on the next connection
        }
        if retryable(f) {
            link.later(
                retry_delay(f),
                Timer::ResendPresence {
                    channel: self.channel.clone(),
                },
            );
            return;
        }
        let err = Error::server(f);
        if let Some(l) = self.listing.take() {
            for w in l.waiters {
                let _ = w.send(Err(err.clone()));
            }
        }
        link.emit(Event::Error(err));
    }

    /// After `rate_limited` or `internal`: what was refused, again.
    pub fn resend(&mut self, link: &mut dyn Link) {
        self.send_mine(link);
        self.send_listing(link);
    }

    /// The leave grace of `user` ended: announced unless they came back.
    pub fn leave_due(&mut self, user: &str, round: u64) {
        if self.leaving.get(user).map(|(r, _)| *r) != Some(round) {
            return;
        }
        let Some((_, data)) = self.leaving.remove(user) else {
            return;
        };
        if !self.users.contains_key(user) {
            self.emit(PresenceEvent::Leave {
                user: user.to_string(),
                data,
            });
        }
    }

    pub fn fail(&mut self, err: Error) {
        if let Some(l) = self.listing.take() {
            for w in l.waiters {
                let _ = w.send(Err(err.clone()));
            }
        }
        self.listeners.clear();
    }

    /// One more connection of `m.user`, whose data is now `m.data`.
    fn add(&mut self, m: &Member) {
        let u = self.users.entry(m.user.clone()).or_insert(User {
            connections: 0,
            data: Value::Null,
        });
        u.connections += 1;
        u.data = m.data.clone();
    }

    fn forget(&mut self, m: &Member) {
        if let Some(u) = self.users.get_mut(&m.user) {
            u.connections -= 1;
            if u.connections == 0 {
                self.users.remove(&m.user);
            }
        }
    }

    fn send_mine(&mut self, link: &mut dyn Link) {
        if let Some(data) = &self.mine {
            link.send(json!({"action": "presence", "channel": self.channel, "enter": data}));
        }
    }

    fn send_listing(&mut self, link: &mut dyn Link) {
        let Some(l) = &mut self.listing else { return };
        let mut frame = json!({"action": "presence", "channel": self.channel});
        if let Some(after) = &l.after {
            frame["after"] = json!(after);
        }
        if link.send(frame) {
            l.at = Some(link.now());
        }
    }

    /// The per-user event for `user`, who was present with `before` (or absent).
    fn announce(&mut self, link: &mut dyn Link, user: &str, before: Option<Value>) {
        let now = self.users.get(user).map(|u| u.data.clone());
        match (before, now) {
            (before, Some(data)) => {
                if self.leaving.remove(user).is_some() {
                    // Left and came back within the grace (a reconnect): no event either way.
                } else if before.is_none() {
                    self.emit(PresenceEvent::Enter {
                        user: user.to_string(),
                        data,
                    });
                } else if before.as_ref() != Some(&data) {
                    self.emit(PresenceEvent::Update {
                        user: user.to_string(),
                        data,
                    });
                }
            }
            (Some(data), None) => {
                if self.leaving.contains_key(user) {
                    return;
                }
                self.rounds += 1;
                self.leaving.insert(user.to_string(), (self.rounds, data));
                link.later(
                    self.leave_delay,
                    Timer::AnnounceLeave {
                        channel: self.channel.clone(),
                        user: user.to_string(),
                        round: self.rounds,
                    },
                );
            }
            (None, None) => {}
        }
    }

    fn emit(&mut self, event: PresenceEvent) {
        self.listeners.retain(|l| l.send(event.clone()).is_ok());
    }
}
