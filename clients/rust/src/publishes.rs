use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::link::{Link, Timer, ends_connection, retry_delay, retryable};
use crate::types::{Error, PublishResult};

struct Pending {
    channel: String,
    data: Value,
    id: String,
    /// This connection's `seq` for it, once sent.
    seq: Option<u64>,
    at: Instant,
    reply: oneshot::Sender<Result<PublishResult, Error>>,
}

/// Publishes in the order they were made: numbered per connection (`seq`) so the server stores
/// them in that order, a few in flight at a time, and every unacknowledged one sent again with
/// the same id on the next connection (the server answers a repeat with the first serial).
pub(crate) struct Publishes {
    window: usize,
    queue: Vec<Pending>,
    seq: u64,
    open: bool,
    /// Counts connections, so a resend timer set on one does nothing on the next.
    connection: u64,
}

impl Publishes {
    pub fn new(window: usize) -> Publishes {
        Publishes {
            window: window.clamp(1, 8),
            queue: Vec::new(),
            seq: 0,
            open: false,
            connection: 0,
        }
    }

    pub fn add(
        &mut self,
        link: &mut dyn Link,
        channel: String,
        data: Value,
        id: String,
        reply: oneshot::Sender<Result<PublishResult, Error>>,
    ) {
        // Refused here, not by a server that would close the connection over it (a frame over
        // API Gateway's limits) and see it again on every reconnect.
        if let Err(e) = check(&data, &id) {
            let _ = reply.send(Err(e));
            return;
        }
        let at = link.now();
        self.queue.push(Pending {
            channel,
            data,
            id,
            seq: None,
            at,
            reply,
        });
        self.pump(link);
    }

    pub fn connected(&mut self, link: &mut dyn Link) {
        self.open = true;
        self.seq = 0;
        self.connection += 1;
        for p in &mut self.queue {
            p.seq = None;
        }
        self.pump(link);
    }

    pub fn disconnected(&mut self) {
        self.open = false;
    }

    pub fn waiting_since(&self) -> Option<Instant> {
        self.queue
            .iter()
            .filter(|p| p.seq.is_some())
            .map(|p| p.at)
            .min()
    }

    pub fn ack(&mut self, link: &mut dyn Link, f: &Value) {
        let Some(i) = self.queue.iter().position(|p| {
            p.seq.is_some() && f["id"] == p.id.as_str() && f["channel"] == p.channel.as_str()
        }) else {
            return;
        };
        let p = self.queue.remove(i);
        let _ = p.reply.send(Ok(PublishResult {
            serial: f["serial"].as_u64().unwrap_or_default(),
            duplicate: f["duplicate"] == true,
        }));
        self.pump(link);
    }

    pub fn error(&mut self, link: &mut dyn Link, f: &Value) {
        let Some(i) = self
            .queue
            .iter()
            .position(|p| p.seq.is_some() && f["id"] == p.id.as_str())
        else {
            return; // e.g. `internal` after an ack: the message is stored
        };
        if ends_connection(f) {
            return; // sent again on the next connection
        }
        if retryable(f) {
            // Same id and seq: the frame had no effect.
            let p = &self.queue[i];
            let timer = Timer::ResendPublish {
                id: p.id.clone(),
                seq: p.seq.unwrap_or_default(),
                connection: self.connection,
            };
            link.later(retry_delay(f), timer);
            return;
        }
        let p = self.queue.remove(i);
        let _ = p.reply.send(Err(Error::server(f)));
        self.pump(link);
    }

    /// A `rate_limited` or `internal` publish, due again: sent if still unanswered on the same
    /// connection.
    pub fn resend(&mut self, link: &mut dyn Link, id: &str, seq: u64, connection: u64) {
        if !self.open || connection != self.connection {
            return;
        }
        if let Some(p) = self
            .queue
            .iter_mut()
            .find(|p| p.id == id && p.seq == Some(seq))
        {
            send(link, p);
        }
    }

    /// Rejects everything still waiting.
    pub fn fail(&mut self, err: Error) {
        for p in self.queue.drain(..) {
            let _ = p.reply.send(Err(err.clone()));
        }
    }

    fn pump(&mut self, link: &mut dyn Link) {
        if !self.open {
            return;
        }
        let mut in_flight = self.queue.iter().filter(|p| p.seq.is_some()).count();
        for p in &mut self.queue {
            if in_flight >= self.window {
                break;
            }
            if p.seq.is_some() {
                continue;
            }
            self.seq += 1;
            p.seq = Some(self.seq);
            send(link, p);
            in_flight += 1;
        }
    }
}

/// protocol.md's limits of a publish: `data` ≤ 120 KB, `id` 1–128 characters.
pub(crate) const MAX_DATA: usize = 120 * 1024;
pub(crate) const MAX_ID: usize = 128;

fn check(data: &Value, id: &str) -> Result<(), Error> {
    let size = data.to_string().len();
    if size > MAX_DATA {
        return Err(Error::Server {
            code: "too_large".into(),
            message: format!("data is {size} bytes; a message holds at most {MAX_DATA}"),
        });
    }
    let chars = id.chars().count();
    if chars == 0 || chars > MAX_ID {
        return Err(Error::Server {
            code: "bad_request".into(),
            message: format!("id: 1 to {MAX_ID} characters, not {chars}"),
        });
    }
    Ok(())
}

fn send(link: &mut dyn Link, p: &mut Pending) {
    link.send(json!({
        "action": "publish",
        "channel": p.channel,
        "data": p.data,
        "id": p.id,
        "seq": p.seq,
    }));
    p.at = link.now();
}
