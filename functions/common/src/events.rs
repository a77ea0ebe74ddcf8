//! Events out: what `events:` in wsctl.yaml asks the functions to tell an EventBridge bus
//! (connects and disconnects, presence changes, the messages of chosen channels), so that
//! applications react with EventBridge rules.
//!
//! Best-effort by design: the events of one invocation go out together at its end, in as few
//! `PutEvents` calls as EventBridge allows (10 entries and 256 KB a call, "PutEvents",
//! EventBridge API Reference), each call given [`SEND_TIMEOUT`]. A call that fails, an entry
//! EventBridge refuses, or a call that times out is counted (`EventsFailed`) and logged, never
//! retried and never an error: a client's frame is answered before its events are sent, and
//! nothing a client asked for waits on EventBridge for longer than that timeout.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::glob_match;
use crate::protocol::{Member, Message, PresenceEvent};

/// The variable wsctl sets, as JSON, on the functions that send events.
pub const EVENTS_ENV: &str = "WSCTL_EVENTS";
/// Longest one `PutEvents` call may take before it is given up.
pub const SEND_TIMEOUT: Duration = Duration::from_millis(1500);
/// "The maximum number of entries is 10" per `PutEvents`.
const MAX_ENTRIES: usize = 10;
/// "The total entry size must be less than 256KB" per `PutEvents`.
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// What to send, and where (`WSCTL_EVENTS`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsSettings {
    /// The bus's name or ARN.
    pub bus: String,
    /// Every event's `source`: `wsctl.STACK.STAGE`.
    pub source: String,
    #[serde(default)]
    pub connections: bool,
    #[serde(default)]
    pub presence: bool,
    /// Globs of the channels whose messages are sent.
    #[serde(default)]
    pub messages: Vec<String>,
}

/// One event: its `detail-type` and `detail`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub detail_type: &'static str,
    pub detail: Value,
    /// Which setting lets it out.
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Connection,
    Presence,
    Message(String),
}

impl Event {
    pub fn connected(connection: &str, user: &str) -> Event {
        Event {
            detail_type: "connected",
            detail: json!({"connection": connection, "user": user}),
            kind: Kind::Connection,
        }
    }

    pub fn disconnected(connection: &str, user: &str) -> Event {
        Event {
            detail_type: "disconnected",
            detail: json!({"connection": connection, "user": user}),
            kind: Kind::Connection,
        }
    }

    pub fn presence(channel: &str, event: PresenceEvent, member: &Member) -> Event {
        let action = match event {
            PresenceEvent::Enter => "enter",
            PresenceEvent::Leave => "leave",
        };
        let mut detail = json!({
            "channel": channel,
            "action": action,
            "user": member.user,
            "connection": member.connection,
        });
        if !member.data.is_null() {
            detail["data"] = member.data.clone();
        }
        Event {
            detail_type: "presence",
            detail,
            kind: Kind::Presence,
        }
    }

    /// A stored message, as subscribers get it: channel, serial, id, sender, data, time.
    pub fn message(message: &Message) -> Event {
        Event {
            detail_type: "message",
            detail: serde_json::to_value(message).unwrap_or_default(),
            kind: Kind::Message(message.channel.clone()),
        }
    }
}

/// The bus client, with what the stage sends and what this invocation has to send.
#[derive(Clone)]
pub struct Events {
    settings: Arc<EventsSettings>,
    client: aws_sdk_eventbridge::Client,
    /// Lambda runs one event at a time per execution environment, so the events queued
    /// between two flushes are one invocation's.
    pending: Arc<Mutex<Vec<Event>>>,
}

impl Events {
    pub fn new(settings: EventsSettings, sdk: &aws_config::SdkConfig) -> Events {
        Events {
            settings: Arc::new(settings),
            client: aws_sdk_eventbridge::Client::new(sdk),
            pending: Default::default(),
        }
    }

    /// Keeps `event` for [`Events::flush`] when the settings send it.
    pub fn queue(&self, event: Event) {
        if wanted(&self.settings, &event) {
            self.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(event);
        }
    }

    /// Sends what was queued; counts what was sent and what failed.
    pub async fn flush(&self) {
        let events = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if events.is_empty() {
            return;
        }
        let entries: Vec<PutEventsRequestEntry> = events
            .into_iter()
            .map(|e| {
                PutEventsRequestEntry::builder()
                    .source(&self.settings.source)
                    .detail_type(e.detail_type)
                    .detail(e.detail.to_string())
                    .event_bus_name(&self.settings.bus)
                    .build()
            })
            .collect();
        for batch in batches(entries) {
            let n = batch.len() as f64;
            let call = self.client.put_events().set_entries(Some(batch)).send();
            match tokio::time::timeout(SEND_TIMEOUT, call).await {
                Ok(Ok(out)) => {
                    let failed = out.failed_entry_count.max(0) as f64;
                    if failed > 0.0 {
                        let why = out
                            .entries
                            .unwrap_or_default()
                            .into_iter()
                            .find_map(|e| e.error_message)
                            .unwrap_or_default();
                        tracing::warn!(failed, error = why, "EventBridge refused events");
                    }
                    crate::metrics::add("EventsSent", n - failed);
                    crate::metrics::add("EventsFailed", failed);
                }
                Ok(Err(e)) => {
                    let error = aws_sdk_eventbridge::error::DisplayErrorContext(&e).to_string();
                    tracing::warn!(error, "sending events failed");
                    crate::metrics::add("EventsFailed", n);
                }
                Err(_) => {
                    tracing::warn!(
                        timeout_ms = SEND_TIMEOUT.as_millis() as u64,
                        "sending events timed out"
                    );
                    crate::metrics::add("EventsFailed", n);
                }
            }
        }
    }
}

fn wanted(settings: &EventsSettings, event: &Event) -> bool {
    match &event.kind {
        Kind::Connection => settings.connections,
        Kind::Presence => settings.presence,
        Kind::Message(channel) => settings.messages.iter().any(|g| glob_match(g, channel)),
    }
}

/// An entry's size as EventBridge counts it ("Calculating PutEvents event entry size"): 14
/// bytes for the time, and the UTF-8 bytes of source, detail type, detail and bus name.
fn entry_size(e: &PutEventsRequestEntry) -> usize {
    14 + [e.source(), e.detail_type(), e.detail(), e.event_bus_name()]
        .iter()
        .map(|s| s.map_or(0, str::len))
        .sum::<usize>()
}

/// Entries cut into calls of at most [`MAX_ENTRIES`] and [`MAX_BATCH_BYTES`], in order.
fn batches(entries: Vec<PutEventsRequestEntry>) -> Vec<Vec<PutEventsRequestEntry>> {
    let mut out: Vec<Vec<PutEventsRequestEntry>> = Vec::new();
    let mut bytes = 0;
    for e in entries {
        let size = entry_size(&e);
        match out.last_mut() {
            Some(last) if last.len() < MAX_ENTRIES && bytes + size <= MAX_BATCH_BYTES => {
                bytes += size;
                last.push(e);
            }
            _ => {
                bytes = size;
                out.push(vec![e]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> EventsSettings {
        EventsSettings {
            bus: "chat-dev".into(),
            source: "wsctl.chat.dev".into(),
            connections: true,
            presence: false,
            messages: vec!["orders-*".into()],
        }
    }

    fn message(channel: &str) -> Message {
        Message {
            channel: channel.into(),
            serial: 7,
            id: "m-1".into(),
            from: "ana".into(),
            data: json!({"n": 1}),
            ts: 1,
        }
    }

    #[test]
    fn the_settings_choose_what_goes_out() {
        let s = settings();
        assert!(wanted(&s, &Event::connected("c1", "ana")));
        assert!(wanted(&s, &Event::disconnected("c1", "ana")));
        let member = Member {
            user: "ana".into(),
            connection: "c1".into(),
            data: Value::Null,
        };
        assert!(!wanted(
            &s,
            &Event::presence("orders-1", PresenceEvent::Enter, &member)
        ));
        assert!(wanted(&s, &Event::message(&message("orders-1"))));
        assert!(!wanted(&s, &Event::message(&message("chat-1"))));
        let detail = Event::message(&message("orders-1")).detail;
        assert_eq!(detail["serial"], 7);
        assert_eq!(detail["data"], json!({"n": 1}));
        assert_eq!(detail["from"], "ana");
    }

    #[test]
    fn batches_keep_eventbridges_limits_and_the_order() {
        let entry = |n: usize, size: usize| {
            PutEventsRequestEntry::builder()
                .source("s")
                .detail_type(n.to_string())
                .detail("x".repeat(size))
                .build()
        };
        let small: Vec<_> = (0..23).map(|n| entry(n, 10)).collect();
        let sizes: Vec<usize> = batches(small).iter().map(Vec::len).collect();
        assert_eq!(sizes, [10, 10, 3]);
        // Three of 100 KB: two fit one call, the third does not.
        let large: Vec<_> = (0..3).map(|n| entry(n, 100 * 1024)).collect();
        let cut = batches(large);
        assert_eq!(cut.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1]);
        assert_eq!(cut[1][0].detail_type(), Some("2"));
        assert!(batches(Vec::new()).is_empty());
    }
}
