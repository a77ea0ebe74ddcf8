//! The functions' logs in CloudWatch Logs, as Lambda sends them: each function's lines, with
//! Lambda's `START`, `END` and `REPORT` lines around each invocation, go to its log group
//! (`/aws/lambda/<function>`) in the emulator, so `wsctl logs` reads `wsctl dev` through the
//! same API as it reads AWS.
//!
//! Lambda writes a stream per execution environment; here each function has one stream per
//! run of `wsctl dev`, started afresh every [`ROTATE`] lines with the oldest beyond [`KEEP`]
//! deleted, so a long session under load does not grow the emulator's memory without end.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use rand::Rng;
use tokio::sync::mpsc;

use crate::local::events::epoch_ms;

/// Lines waiting to be sent; beyond this they are dropped (and said once), never waited for: a
/// function's output is read on, whatever the emulator's pace.
const QUEUE: usize = 100_000;
/// How long lines gather before a batch goes out.
const GATHER: Duration = Duration::from_millis(200);
/// PutLogEvents' limits: 10,000 events and 1,048,576 bytes a call, each event counted as its
/// UTF-8 length plus 26 bytes ("PutLogEvents", CloudWatch Logs API Reference).
const BATCH_EVENTS: usize = 10_000;
const BATCH_BYTES: usize = 1_048_576;
const EVENT_OVERHEAD: usize = 26;
/// Lambda cuts a line at 256 KB; so do we.
const MAX_LINE: usize = 256 * 1024;
/// Lines a stream takes before the next one starts, and how many streams a group keeps.
const ROTATE: u64 = 50_000;
const KEEP: usize = 4;

struct Line {
    group: Arc<str>,
    at: i64,
    text: String,
}

pub struct Shipper {
    queue: mpsc::Sender<Line>,
    /// Function key → its log group; lines of other keys (the gateway's own) stay on the terminal.
    groups: Mutex<HashMap<String, Arc<str>>>,
    said_dropped: AtomicBool,
}

impl Shipper {
    /// Starts sending to `client`'s CloudWatch Logs; stops when the last handle is dropped.
    pub fn start(client: Client) -> Arc<Shipper> {
        let (queue, lines) = mpsc::channel(QUEUE);
        tokio::spawn(send(client, lines));
        Arc::new(Shipper {
            queue,
            groups: Mutex::default(),
            said_dropped: AtomicBool::new(false),
        })
    }

    /// The lines of function `key` go to `group` from now on.
    pub fn register(&self, key: &str, group: &str) {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), Arc::from(group));
    }

    pub fn ship(&self, key: &str, text: &str) {
        let Some(group) = self
            .groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
        else {
            return;
        };
        if text.is_empty() {
            return;
        }
        let line = Line {
            group,
            at: epoch_ms() as i64,
            text: cut(text, MAX_LINE).to_string(),
        };
        if self.queue.try_send(line).is_err() && !self.said_dropped.swap(true, Ordering::Relaxed) {
            eprintln!(
                "{:>12} | the emulator's CloudWatch Logs cannot keep up: lines are dropped from the logs (not from this terminal)",
                "logs"
            );
        }
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// One log group's stream as Lambda names them: `2026/12/07/[$LATEST]` and 32 hex digits.
fn stream_name() -> String {
    let ms = epoch_ms();
    let date = &crate::local::events::iso8601(ms)[..10];
    let id: u128 = rand::rng().random();
    format!("{}/[$LATEST]{id:032x}", date.replace('-', "/"))
}

#[derive(Default)]
struct Group {
    streams: Vec<String>,
    lines: u64,
    /// The newest timestamp sent: PutLogEvents wants each batch in time order.
    last: i64,
}

async fn send(client: Client, mut lines: mpsc::Receiver<Line>) {
    let mut groups: HashMap<Arc<str>, Group> = HashMap::new();
    let mut said = false;
    while let Some(first) = lines.recv().await {
        tokio::time::sleep(GATHER).await;
        let mut batch: HashMap<Arc<str>, Vec<Line>> = HashMap::new();
        batch.entry(first.group.clone()).or_default().push(first);
        while let Ok(line) = lines.try_recv() {
            batch.entry(line.group.clone()).or_default().push(line);
        }
        for (name, batch) in batch {
            let group = groups.entry(name.clone()).or_default();
            if let Err(e) = put(&client, &name, group, batch).await
                && !said
            {
                eprintln!("{:>12} | cannot write {name} to the emulator: {e}", "logs");
                said = true;
            }
        }
    }
}

async fn put(
    client: &Client,
    name: &str,
    group: &mut Group,
    lines: Vec<Line>,
) -> Result<(), String> {
    let mut chunk: Vec<InputLogEvent> = Vec::new();
    let mut bytes = 0;
    for line in lines {
        let size = line.text.len() + EVENT_OVERHEAD;
        if chunk.len() == BATCH_EVENTS || bytes + size > BATCH_BYTES {
            put_chunk(client, name, group, std::mem::take(&mut chunk)).await?;
            bytes = 0;
        }
        // Lines read from several pipes may reach the queue a moment out of order.
        group.last = group.last.max(line.at);
        chunk.push(
            InputLogEvent::builder()
                .timestamp(group.last)
                .message(line.text)
                .build()
                .map_err(|e| e.to_string())?,
        );
        bytes += size;
    }
    put_chunk(client, name, group, chunk).await
}

async fn put_chunk(
    client: &Client,
    name: &str,
    group: &mut Group,
    events: Vec<InputLogEvent>,
) -> Result<(), String> {
    if events.is_empty() {
        return Ok(());
    }
    if group.streams.is_empty() || group.lines >= ROTATE {
        let stream = stream_name();
        client
            .create_log_stream()
            .log_group_name(name)
            .log_stream_name(&stream)
            .send()
            .await
            .map_err(|e| aws_sdk_cloudwatchlogs::error::DisplayErrorContext(e).to_string())?;
        group.streams.push(stream);
        group.lines = 0;
        while group.streams.len() > KEEP {
            let old = group.streams.remove(0);
            // Best effort: a stream left behind costs memory, not correctness.
            let _ = client
                .delete_log_stream()
                .log_group_name(name)
                .log_stream_name(old)
                .send()
                .await;
        }
    }
    let stream = group.streams.last().expect("a stream was just made");
    group.lines += events.len() as u64;
    client
        .put_log_events()
        .log_group_name(name)
        .log_stream_name(stream)
        .set_log_events(Some(events))
        .send()
        .await
        .map_err(|e| aws_sdk_cloudwatchlogs::error::DisplayErrorContext(e).to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_named_as_lambda_names_them() {
        let s = stream_name();
        let (date, id) = s.split_once("/[$LATEST]").unwrap();
        assert_eq!(date.len(), 10, "{s}");
        assert_eq!(date.matches('/').count(), 2, "{s}");
        assert_eq!(id.len(), 32, "{s}");
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{s}");
    }

    #[test]
    fn a_long_line_is_cut_at_a_character_boundary() {
        let line = "é".repeat(MAX_LINE);
        let kept = cut(&line, MAX_LINE);
        assert!(kept.len() <= MAX_LINE);
        assert!(kept.len() > MAX_LINE - 2);
        assert_eq!(cut("short", MAX_LINE), "short");
    }
}
