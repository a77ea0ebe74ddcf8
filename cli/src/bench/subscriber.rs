//! The subscribers' side: connections opened through the authorizer, each subscribed to its
//! channel, checking every delivery by serial.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::{self, Message};

use super::*;

/// The fields of a server frame the bench reads.
#[derive(Deserialize)]
pub(super) struct Incoming {
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    pub(super) channel: Option<String>,
    pub(super) serial: Option<u64>,
    pub(super) data: Option<Payload>,
    pub(super) code: Option<String>,
    pub(super) message: Option<String>,
    /// Of an error frame: the action it refuses.
    pub(super) action: Option<String>,
}

/// The data of a bench message: the run, the publish's number and when it was sent.
#[derive(Deserialize)]
pub(super) struct Payload {
    pub(super) run: Option<String>,
    pub(super) n: Option<u64>,
    pub(super) t: Option<u64>,
}

/// One subscriber's view of its channel, kept by its own task.
pub(super) struct Seen {
    pub(super) channel: usize,
    /// The channel's serial when the subscription took effect: later serials are expected.
    pub(super) base: u64,
    pub(super) bits: Vec<u64>,
    pub(super) max: u64,
    pub(super) duplicates: u64,
    pub(super) out_of_order: u64,
}

impl Seen {
    pub(super) fn new(channel: usize, base: u64) -> Seen {
        Seen {
            channel,
            base,
            bits: Vec::new(),
            max: 0,
            duplicates: 0,
            out_of_order: 0,
        }
    }

    /// Records a serial; whether it is the first receipt.
    pub(super) fn record(&mut self, serial: u64) -> bool {
        if serial <= self.base {
            return false;
        }
        let i = (serial - self.base - 1) as usize;
        if i / 64 >= self.bits.len() {
            self.bits.resize(i / 64 + 1, 0);
        }
        let bit = 1u64 << (i % 64);
        if self.bits[i / 64] & bit != 0 {
            self.duplicates += 1;
            return false;
        }
        self.bits[i / 64] |= bit;
        if serial < self.max {
            self.out_of_order += 1;
        }
        self.max = self.max.max(serial);
        true
    }

    pub(super) fn has(&self, serial: u64) -> bool {
        if serial <= self.base {
            return false;
        }
        let i = (serial - self.base - 1) as usize;
        self.bits
            .get(i / 64)
            .is_some_and(|w| w & (1u64 << (i % 64)) != 0)
    }
}

/// A connection through the authorizer; failures are counted by kind.
pub(super) async fn open(shared: &Shared, url: &str) -> Option<Ws> {
    let started = Instant::now();
    let attempt = tokio_tungstenite::connect_async_with_config(url, Some(client_config()), true);
    let failure = match tokio::time::timeout(ANSWER_TIMEOUT, attempt).await {
        Ok(Ok((ws, _))) => {
            shared.handshake.record(started.elapsed());
            shared.live.open_now.fetch_add(1, Relaxed);
            return Some(ws);
        }
        Ok(Err(tungstenite::Error::Http(resp))) => match resp.status().as_u16() {
            429 => "429 too many requests (LimitExceeded)".to_string(),
            401 => "401 unauthorized (no token reached the authorizer)".to_string(),
            403 => "403 forbidden (the token was refused)".to_string(),
            code => format!("{code} {}", resp.status().canonical_reason().unwrap_or("")),
        },
        Ok(Err(tungstenite::Error::Io(e))) => format!("network: {}", e.kind()),
        Ok(Err(e)) => format!("handshake: {e}"),
        Err(_) => format!("no answer in {} s", ANSWER_TIMEOUT.as_secs()),
    };
    shared.live.failed.fetch_add(1, Relaxed);
    bump(&shared.handshake_failures, failure);
    None
}

/// tungstenite allocates each connection's read buffer up front, 128 KB by default: 4 KB keeps
/// 100,000 connections in one process to a few hundred MB.
pub(super) fn client_config() -> tungstenite::protocol::WebSocketConfig {
    let mut c = tungstenite::protocol::WebSocketConfig::default();
    c.read_buffer_size = 4096;
    c.write_buffer_size = 0;
    c
}

/// One connection: connects, subscribes to `channel` (none: stays a bare connection), then
/// reads until told to stop.
pub(super) async fn subscriber(
    shared: Arc<Shared>,
    url: String,
    channel: Option<usize>,
    permit: tokio::sync::OwnedSemaphorePermit,
    mut stop: watch::Receiver<bool>,
    end: End,
) -> Option<Seen> {
    let mut ws = open(&shared, &url).await?;
    let mut seen = match channel {
        Some(channel) => match subscribe(&shared, &mut ws, channel).await {
            Ok(base) => Some(Seen::new(channel, base)),
            Err(why) => {
                bump(&shared.handshake_failures, why);
                shared.live.failed.fetch_add(1, Relaxed);
                shared.live.open_now.fetch_sub(1, Relaxed);
                return None;
            }
        },
        None => None,
    };
    shared.live.opened.fetch_add(1, Relaxed);
    drop(permit);

    let mut ended_by_server = false;
    loop {
        tokio::select! {
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => receive(&shared, seen.as_mut(), text.as_str()),
                Some(Ok(Message::Close(close))) => {
                    shared.closed(close.map(|c| u16::from(c.code)));
                    ended_by_server = true;
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    bump(&shared.closes, format!("lost: {e}"));
                    ended_by_server = true;
                    break;
                }
                None => {
                    bump(&shared.closes, "lost: the connection ended without a close frame".into());
                    ended_by_server = true;
                    break;
                }
            },
            _ = stop.changed() => break,
        }
    }
    shared.live.open_now.fetch_sub(1, Relaxed);
    if !ended_by_server {
        finish(ws, end).await;
    }
    seen
}

/// Subscribes; the channel's serial when the subscription took effect.
pub(super) async fn subscribe(shared: &Shared, ws: &mut Ws, channel: usize) -> Result<u64, String> {
    let name = &shared.channels[channel];
    let subscribe = json!({"action": "subscribe", "channel": name}).to_string();
    ws.send(Message::text(subscribe))
        .await
        .map_err(|e| format!("subscribe not sent: {e}"))?;
    let answer = tokio::time::timeout(ANSWER_TIMEOUT, async {
        while let Some(Ok(frame)) = ws.next().await {
            let Message::Text(text) = frame else { continue };
            let Ok(frame) = serde_json::from_str::<Incoming>(text.as_str()) else {
                continue;
            };
            if frame.kind.as_deref() == Some("subscribed") && frame.channel.as_ref() == Some(name) {
                return Some(frame.serial.unwrap_or(0));
            }
            shared.other_frame(&frame);
        }
        None
    })
    .await;
    let base = answer
        .ok()
        .flatten()
        .ok_or_else(|| "no answer to subscribe".to_string())?;
    shared.subscribers[channel].fetch_add(1, Relaxed);
    Ok(base)
}

pub(super) fn receive(shared: &Shared, seen: Option<&mut Seen>, text: &str) {
    let Ok(frame) = serde_json::from_str::<Incoming>(text) else {
        bump(&shared.errors, "not JSON".into());
        return;
    };
    let mine = frame.kind.as_deref() == Some("message")
        && frame.data.as_ref().and_then(|d| d.run.as_deref()) == Some(shared.run.as_str());
    let Some(seen) = seen.filter(|_| mine) else {
        shared.other_frame(&frame);
        return;
    };
    let now = shared.now_us();
    let (Some(serial), Some(data)) = (frame.serial, frame.data) else {
        return;
    };
    if !seen.record(serial) {
        return;
    }
    shared.live.delivered.fetch_add(1, Relaxed);
    if let Some(t) = data.t {
        shared.delivery.record_us(now.saturating_sub(t));
    }
    if let Some(arrivals) = data.n.and_then(|n| shared.arrivals.get(n as usize)) {
        arrivals.count.fetch_add(1, Relaxed);
        arrivals.last_us.fetch_max(now, Relaxed);
    }
}

pub(super) async fn finish(mut ws: Ws, end: End) {
    match end {
        // The TCP connection closes without a WebSocket close frame: the gateway sees the
        // client vanish, as when a phone loses its network.
        End::Drop => drop(ws),
        End::Close => {
            let _ = ws.close(None).await;
            let _ = tokio::time::timeout(CLOSE_WAIT, async {
                while let Some(Ok(_)) = ws.next().await {}
            })
            .await;
        }
    }
}
