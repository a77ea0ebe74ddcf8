//! One channel's subscription: protocol.md's order and gap rule, resume with `since`, and the
//! requests whose answers carry no id (one in flight at a time, so each `history`, `subscribed`
//! or `unsubscribed` frame answers the one at the head).

use std::collections::{BTreeMap, VecDeque};

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::link::{Link, Timer, ends_connection, retry_delay, retryable};
use crate::presence::Presence;
use crate::types::{Error, Event, Message};

/// `history`'s page size, protocol.md's maximum.
pub(crate) const MAX_LIMIT: u32 = 1000;

enum Op {
    Subscribe {
        /// The `since` the frame asked with, if any.
        since: Option<u64>,
        replay_last: Option<u64>,
        more: bool,
    },
    Gap {
        since: u64,
        mark: u64,
    },
    History {
        since: Option<u64>,
        limit: Option<u32>,
        got: Vec<Message>,
        reply: Option<oneshot::Sender<Result<Vec<Message>, Error>>>,
    },
    Unsubscribe,
}

impl Op {
    fn action(&self) -> &'static str {
        match self {
            Op::Subscribe { .. } => "subscribe",
            Op::Gap { .. } | Op::History { .. } => "history",
            Op::Unsubscribe => "unsubscribe",
        }
    }

    fn fetches(&self) -> bool {
        matches!(self, Op::Gap { .. } | Op::Subscribe { .. })
    }
}

struct InFlight {
    op: Op,
    /// Names this request to its resend timer.
    number: u64,
    at: Option<Instant>,
}

pub(crate) struct Channel {
    name: String,
    pub presence: Presence,
    /// Serial of the last message delivered: where a resume starts.
    last: Option<u64>,
    /// Messages that arrived ahead of a missing serial, with the order they arrived in.
    held: BTreeMap<u64, (Message, u64)>,
    arrivals: u64,
    ops: VecDeque<Op>,
    in_flight: Option<InFlight>,
    numbers: u64,
    wanted: bool,
    subscribed: bool,
    waiters: Vec<oneshot::Sender<Result<(), Error>>>,
    listeners: Vec<mpsc::UnboundedSender<Message>>,
}

impl Channel {
    pub fn new(name: String, presence: Presence) -> Channel {
        Channel {
            name,
            presence,
            last: None,
            held: BTreeMap::new(),
            arrivals: 0,
            ops: VecDeque::new(),
            in_flight: None,
            numbers: 0,
            wanted: false,
            subscribed: false,
            waiters: Vec::new(),
            listeners: Vec::new(),
        }
    }

    pub fn last_serial(&self) -> Option<u64> {
        self.last
    }

    pub fn subscribe(
        &mut self,
        link: &mut dyn Link,
        since: Option<u64>,
        listener: mpsc::UnboundedSender<Message>,
        done: oneshot::Sender<Result<(), Error>>,
    ) {
        self.listeners.push(listener);
        if since.is_some() && self.last.is_none() {
            self.last = since;
        }
        if self.wanted && self.subscribed {
            let _ = done.send(Ok(()));
            return;
        }
        self.waiters.push(done);
        if !self.wanted {
            self.wanted = true;
            self.enqueue(
                link,
                Op::Subscribe {
                    since: None,
                    replay_last: None,
                    more: false,
                },
            );
        }
    }

    /// Stops delivery; a later `subscribe` starts from then, not from where this one stopped.
    pub fn unsubscribe(&mut self, link: &mut dyn Link) {
        self.wanted = false;
        self.subscribed = false;
        self.last = None;
        self.held.clear();
        self.listeners.clear();
        self.ops.retain(|op| matches!(op, Op::History { .. }));
        self.settle(Err(Error::Unsubscribed));
        self.enqueue(link, Op::Unsubscribe);
    }

    pub fn history(
        &mut self,
        link: &mut dyn Link,
        since: Option<u64>,
        limit: Option<u32>,
        reply: oneshot::Sender<Result<Vec<Message>, Error>>,
    ) {
        self.enqueue(
            link,
            Op::History {
                since,
                limit,
                got: Vec::new(),
                reply: Some(reply),
            },
        );
    }

    // ---- driven by the client ----

    /// A new connection: resubscribe from the last serial delivered, send unanswered requests
    /// again.
    pub fn connected(&mut self, link: &mut dyn Link) {
        // What was in flight is asked again; a history keeps its place at the front.
        if let Some(f) = self.in_flight.take()
            && matches!(f.op, Op::History { .. })
        {
            self.ops.push_front(f.op);
        }
        self.subscribed = false;
        // The resume replays everything after `last`, held messages included.
        self.held.clear();
        // A paged history goes on from the page it had reached, with what it already got.
        self.ops.retain(|op| matches!(op, Op::History { .. }));
        if self.wanted {
            self.ops.push_front(Op::Subscribe {
                since: None,
                replay_last: None,
                more: false,
            });
        }
        self.pump(link);
        self.presence.connected(link, self.wanted);
    }

    pub fn disconnected(&mut self) {
        if let Some(f) = &mut self.in_flight {
            f.at = None;
        }
        self.subscribed = false;
        self.presence.disconnected();
    }

    /// When the oldest unanswered request was sent, if any.
    pub fn waiting_since(&self) -> Option<Instant> {
        let mine = self.in_flight.as_ref().and_then(|f| f.at);
        match (mine, self.presence.waiting_since()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A server frame for this channel.
    pub fn frame(&mut self, link: &mut dyn Link, f: &Value) {
        match f["type"].as_str() {
            Some("message") => {
                let heading_subscribe = matches!(self.head(), Some(Op::Subscribe { .. }));
                if self.wanted
                    && (self.subscribed || heading_subscribe)
                    && let Ok(m) = serde_json::from_value::<Message>(f.clone())
                {
                    self.take(link, m);
                }
            }
            Some("history") => {
                let messages: Vec<Message> =
                    serde_json::from_value(f["messages"].clone()).unwrap_or_default();
                self.history_page(link, messages, f["more"] == true);
            }
            Some("subscribed") => self.subscribed_frame(
                link,
                f["serial"].as_u64().unwrap_or_default(),
                f["more"] == true,
            ),
            Some("unsubscribed") => {
                if matches!(self.head(), Some(Op::Unsubscribe)) {
                    self.done(link);
                }
            }
            Some("presence" | "members") => self.presence.frame(link, f),
            _ => {}
        }
    }

    /// An `error` frame naming this channel.
    pub fn error(&mut self, link: &mut dyn Link, f: &Value) {
        if f["action"] == "presence" {
            return self.presence.error(link, f);
        }
        let Some(head) = self.head() else {
            return link.emit(Event::Error(Error::server(f)));
        };
        if f["action"] != head.action() {
            return link.emit(Event::Error(Error::server(f)));
        }
        if ends_connection(f) {
            // Not acted on, and the connection is closing: asked again on the next one.
            return;
        }
        if retryable(f) {
            let number = self
                .in_flight
                .as_ref()
                .map(|i| i.number)
                .unwrap_or_default();
            link.later(
                retry_delay(f),
                Timer::ResendHead {
                    channel: self.name.clone(),
                    op: number,
                },
            );
            return;
        }
        let err = Error::server(f);
        match &mut self.in_flight.as_mut().expect("a head").op {
            Op::Subscribe { .. } => {
                // Refused (a narrower grant, a full channel): every subscription of it ends.
                self.wanted = false;
                self.listeners.clear();
                self.settle(Err(err.clone()));
            }
            Op::History { reply, .. } => {
                if let Some(reply) = reply.take() {
                    let _ = reply.send(Err(err.clone()));
                }
            }
            _ => {}
        }
        link.emit(Event::Error(err));
        self.done(link);
    }

    /// The resend timer of request `number`: sent again if it is still the one in flight.
    pub fn resend_head(&mut self, link: &mut dyn Link, number: u64) {
        if self.in_flight.as_ref().is_some_and(|f| f.number == number) {
            self.send_head(link);
        }
    }

    /// The server dropped this channel when a renewed token no longer allowed it.
    pub fn dropped(&mut self, link: &mut dyn Link) {
        self.wanted = false;
        self.subscribed = false;
        self.listeners.clear();
        link.emit(Event::Error(Error::Server {
            code: "forbidden".into(),
            message: format!(
                "the renewed token does not allow {}: it was left",
                self.name
            ),
        }));
    }

    /// Ends every wait on this channel.
    pub fn fail(&mut self, err: Error) {
        self.settle(Err(err.clone()));
        let ops = self
            .in_flight
            .take()
            .map(|f| f.op)
            .into_iter()
            .chain(self.ops.drain(..));
        for op in ops {
            if let Op::History {
                reply: Some(reply), ..
            } = op
            {
                let _ = reply.send(Err(err.clone()));
            }
        }
        self.listeners.clear();
        self.presence.fail(err);
    }

    // ---- ordering ----

    fn take(&mut self, link: &mut dyn Link, m: Message) {
        if self.last.is_some_and(|last| m.serial <= last) {
            return; // already delivered
        }
        let Some(last) = self.last else {
            // A fresh subscription starts at the serial `subscribed` names: hold until then.
            return self.hold(m);
        };
        if m.serial == last + 1 {
            self.deliver(m);
            self.drain();
            return;
        }
        self.hold(m);
        self.ask_for_gap(link);
    }

    fn hold(&mut self, m: Message) {
        self.arrivals += 1;
        self.held.insert(m.serial, (m, self.arrivals));
    }

    fn deliver(&mut self, mut m: Message) {
        self.last = Some(m.serial);
        m.channel.clone_from(&self.name);
        self.listeners.retain(|l| l.send(m.clone()).is_ok());
    }

    fn drain(&mut self) {
        while let Some(last) = self.last
            && let Some((next, _)) = self.held.remove(&(last + 1))
        {
            self.deliver(next);
        }
        if let Some(last) = self.last {
            self.held = self.held.split_off(&(last + 1));
        }
    }

    /// Held messages still wait for a missing serial: fetch it, unless a fetch is coming.
    fn ask_for_gap(&mut self, link: &mut dyn Link) {
        let Some(since) = self.last else { return };
        if self.held.is_empty() {
            return;
        }
        let coming = self.ops.iter().any(Op::fetches)
            || self.in_flight.as_ref().is_some_and(|f| f.op.fetches());
        if !coming {
            self.enqueue(link, Op::Gap { since, mark: 0 });
        }
    }

    /// After a fetch answered everything it could: what is still missing is gone (protocol.md).
    fn skip_gone(&mut self) {
        while let (Some(last), Some(&first)) = (self.last, self.held.keys().next()) {
            if first > last + 1 {
                self.last = Some(first - 1);
            }
            self.drain();
        }
    }

    /// Messages a fetch (`since` the serial it asked from) answered with.
    fn replay(&mut self, link: &mut dyn Link, since: Option<u64>, messages: Vec<Message>) {
        if let (Some(since), Some(last), Some(first)) = (since, self.last, messages.first())
            && since <= last
            && first.serial > since + 1
        {
            // The fetch covered everything after `last`: what it skipped below its first
            // message was never stored, or expired.
            self.skip_below(first.serial);
        }
        for m in messages {
            self.take(link, m);
        }
    }

    /// Every serial below `bound` that is not held is gone: deliver what is held up to it.
    fn skip_below(&mut self, bound: u64) {
        while let Some(last) = self.last
            && last + 1 < bound
        {
            match self.held.keys().next() {
                Some(&held) if held < bound => self.last = Some(last.max(held - 1)),
                _ => self.last = Some(bound - 1),
            }
            self.drain();
        }
    }

    fn history_page(&mut self, link: &mut dyn Link, messages: Vec<Message>, more: bool) {
        let last_in_frame = messages.last().map(|m| m.serial);
        let Some(head) = self.in_flight.as_mut() else {
            return;
        };
        match &mut head.op {
            Op::Subscribe {
                since,
                replay_last,
                more: m,
            } => {
                *replay_last = last_in_frame;
                *m = more;
                let since = *since;
                self.replay(link, since, messages);
            }
            Op::Gap { since, .. } => {
                let since = Some(*since);
                self.replay(link, since, messages);
                let Some(Op::Gap { since, mark }) = self.in_flight.as_mut().map(|f| &mut f.op)
                else {
                    return;
                };
                if more && let Some(l) = last_in_frame {
                    *since = l;
                    self.send_head(link);
                    return;
                }
                let mark = *mark;
                self.done(link);
                // A message held after this fetch went out may wait for a serial stored after
                // it was read: fetch again for those; what this fetch could have seen is gone.
                if self.held.values().any(|(_, n)| *n > mark) {
                    self.ask_for_gap(link);
                } else {
                    self.skip_gone();
                }
            }
            Op::History {
                since,
                limit,
                got,
                reply,
            } => {
                got.extend(messages);
                let room = limit.map_or(usize::MAX, |l| (l as usize).saturating_sub(got.len()));
                if since.is_some()
                    && more
                    && let Some(l) = last_in_frame
                    && room > 0
                {
                    *since = Some(l);
                    self.send_head(link);
                    return;
                }
                let mut all = std::mem::take(got);
                if let Some(l) = limit {
                    all.truncate(*l as usize);
                }
                for m in &mut all {
                    m.channel.clone_from(&self.name);
                }
                if let Some(reply) = reply.take() {
                    let _ = reply.send(Ok(all));
                }
                self.done(link);
            }
            Op::Unsubscribe => {}
        }
    }

    fn subscribed_frame(&mut self, link: &mut dyn Link, serial: u64, more: bool) {
        let Some(Op::Subscribe { replay_last, .. }) = self.head() else {
            return;
        };
        let replay_last = *replay_last;
        if !self.wanted {
            return self.done(link);
        }
        self.subscribed = true;
        if self.last.is_none() {
            self.last = Some(serial);
        }
        self.settle(Ok(()));
        self.done_quietly();
        if more && let Some(since) = replay_last {
            // The replay stopped short: page the rest before anything else.
            self.ops.push_front(Op::Gap { since, mark: 0 });
            self.pump(link);
        } else {
            self.drain();
            self.pump(link);
            self.ask_for_gap(link);
        }
    }

    // ---- requests ----

    fn head(&self) -> Option<&Op> {
        self.in_flight.as_ref().map(|f| &f.op)
    }

    fn enqueue(&mut self, link: &mut dyn Link, op: Op) {
        self.ops.push_back(op);
        self.pump(link);
    }

    fn pump(&mut self, link: &mut dyn Link) {
        if self.in_flight.is_some() {
            return;
        }
        let Some(op) = self.ops.pop_front() else {
            return;
        };
        self.numbers += 1;
        self.in_flight = Some(InFlight {
            op,
            number: self.numbers,
            at: None,
        });
        if !self.send_head(link) {
            // Not connected: it goes out on the next connection.
            let f = self.in_flight.take().expect("just set");
            self.ops.push_front(f.op);
        }
    }

    fn send_head(&mut self, link: &mut dyn Link) -> bool {
        let last = self.last;
        let arrivals = self.arrivals;
        let Some(f) = self.in_flight.as_mut() else {
            return false;
        };
        let mut frame = json!({"action": f.op.action(), "channel": self.name});
        match &mut f.op {
            Op::Subscribe { since, .. } => {
                if let Some(last) = last {
                    frame["since"] = json!(last);
                }
                *since = last;
            }
            Op::Gap { since, mark } => {
                frame["since"] = json!(since);
                *mark = arrivals;
            }
            Op::History { since, limit, .. } => {
                if let Some(since) = since {
                    frame["since"] = json!(since);
                } else if let Some(limit) = limit {
                    frame["limit"] = json!(limit);
                }
            }
            Op::Unsubscribe => {}
        }
        if !link.send(frame) {
            return false;
        }
        f.at = Some(link.now());
        true
    }

    fn done(&mut self, link: &mut dyn Link) {
        self.in_flight = None;
        self.pump(link);
    }

    fn done_quietly(&mut self) {
        self.in_flight = None;
    }

    fn settle(&mut self, result: Result<(), Error>) {
        for w in self.waiters.drain(..) {
            let _ = w.send(result.clone());
        }
    }
}
