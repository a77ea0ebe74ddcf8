//! The publishers' side: publisher connections, or the stack's publish function, matching
//! each publish to its ack.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::{self, Message};

use super::*;

/// One publisher: sends what it is given, matches acks to sends per channel, in order.
pub(super) async fn publisher(
    shared: Arc<Shared>,
    ws: Ws,
    mut jobs: mpsc::Receiver<(u64, usize)>,
    size: usize,
    mut stop: watch::Receiver<bool>,
) {
    let (mut sink, mut stream) = ws.split();
    let pending: Arc<Mutex<Vec<VecDeque<u64>>>> =
        Arc::new(Mutex::new(vec![VecDeque::new(); shared.channels.len()]));
    let reader = {
        let shared = shared.clone();
        let pending = pending.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            while let Some(Ok(frame)) = stream.next().await {
                match frame {
                    Message::Text(text) => {
                        let Ok(frame) = serde_json::from_str::<Incoming>(text.as_str()) else {
                            continue;
                        };
                        let c = frame
                            .channel
                            .as_deref()
                            .and_then(|c| shared.channel_index(c));
                        let refused = frame.kind.as_deref() == Some("error")
                            && frame.action.as_deref() == Some("publish");
                        if frame.kind.as_deref() != Some("ack") {
                            shared.other_frame(&frame);
                            if refused {
                                shared.live.rejected.fetch_add(1, Relaxed);
                                if let Some(c) = c {
                                    pending.lock().unwrap_or_else(|e| e.into_inner())[c]
                                        .pop_front();
                                }
                            }
                            continue;
                        }
                        let Some(c) = c else { continue };
                        let sent = pending.lock().unwrap_or_else(|e| e.into_inner())[c].pop_front();
                        if let Some(sent) = sent {
                            shared.ack.record_us(shared.now_us().saturating_sub(sent));
                        }
                        if let Some(serial) = frame.serial {
                            shared.acknowledged(c, serial, sent);
                        }
                        shared.live.acked.fetch_add(1, Relaxed);
                    }
                    // The answer to the bench's own close is not the server ending it.
                    Message::Close(close) => {
                        if !*stop.borrow() {
                            shared.closed(close.map(|c| u16::from(c.code)));
                        }
                        return;
                    }
                    _ => {}
                }
            }
        })
    };
    let pad = "x".repeat(size);
    while let Some((n, channel)) = next_job(&mut jobs, &mut stop).await {
        let (sent, data) = shared.stamp(n, &pad);
        let frame = json!({"action": "publish", "channel": shared.channels[channel], "data": data});
        pending.lock().unwrap_or_else(|e| e.into_inner())[channel].push_back(sent);
        let mut sent_all = true;
        for part in fragments(frame.to_string()) {
            if sink.feed(part).await.is_err() {
                sent_all = false;
                break;
            }
        }
        if !sent_all || sink.flush().await.is_err() {
            bump(&shared.errors, "publisher connection lost".into());
            break;
        }
        shared.live.published.fetch_add(1, Relaxed);
    }
    // No more jobs: the scheduler's next send fails at once instead of waiting on a publisher
    // whose connection is gone. Acks may still be on their way: the connection stays until the
    // bench ends.
    drop(jobs);
    let _ = stop.wait_for(|stopped| *stopped).await;
    let _ = sink.close().await;
    shared.live.open_now.fetch_sub(1, Relaxed);
    let _ = tokio::time::timeout(CLOSE_WAIT, reader).await;
}

/// A publisher's next job, or `None` once the jobs end or the bench stops.
pub(super) async fn next_job(
    jobs: &mut mpsc::Receiver<(u64, usize)>,
    stop: &mut watch::Receiver<bool>,
) -> Option<(u64, usize)> {
    tokio::select! {
        job = jobs.recv() => job,
        _ = stop.changed() => None,
    }
}

/// One publisher through the publish function: one invocation at a time, each answered with
/// its serial (the ack) and its fan-out's counts.
pub(super) async fn function_publisher(
    shared: Arc<Shared>,
    function: PublishFunction,
    mut jobs: mpsc::Receiver<(u64, usize)>,
    size: usize,
    mut stop: watch::Receiver<bool>,
) {
    let pad = "x".repeat(size);
    while let Some((n, channel)) = next_job(&mut jobs, &mut stop).await {
        let (sent, data) = shared.stamp(n, &pad);
        shared.live.published.fetch_add(1, Relaxed);
        match function
            .publish(&shared.channels[channel], &data, None)
            .await
        {
            Ok(answer) => {
                shared.ack.record_us(shared.now_us().saturating_sub(sent));
                if let Some(serial) = answer.serial {
                    shared.acknowledged(channel, serial, Some(sent));
                }
                shared.live.acked.fetch_add(1, Relaxed);
                let posts = &shared.posts;
                posts.delivered.fetch_add(answer.report.delivered, Relaxed);
                posts.gone.fetch_add(answer.report.gone, Relaxed);
                posts.failed.fetch_add(answer.report.failed, Relaxed);
                posts
                    .continued
                    .fetch_add(u64::from(answer.continued), Relaxed);
            }
            Err(e) => {
                shared.live.rejected.fetch_add(1, Relaxed);
                let first = e.to_string().lines().next().unwrap_or_default().to_string();
                bump(&shared.errors, format!("function: {first}"));
            }
        }
    }
}

/// API Gateway closes a connection that sends a frame over 32 KB (1009), though a message may
/// be 128 KB: a larger message goes out as a text frame and continuation frames.
pub(super) const MAX_FRAME: usize = 32 * 1024;

pub(super) fn fragments(text: String) -> Vec<Message> {
    use tungstenite::protocol::frame::Frame;
    use tungstenite::protocol::frame::coding::{Data, OpCode};
    if text.len() <= MAX_FRAME {
        return vec![Message::text(text)];
    }
    let bytes = bytes::Bytes::from(text);
    let count = bytes.len().div_ceil(MAX_FRAME);
    (0..count)
        .map(|i| {
            let part = bytes.slice(i * MAX_FRAME..((i + 1) * MAX_FRAME).min(bytes.len()));
            let opcode = OpCode::Data(if i == 0 { Data::Text } else { Data::Continue });
            Message::Frame(Frame::message(part, opcode, i + 1 == count))
        })
        .collect()
}
