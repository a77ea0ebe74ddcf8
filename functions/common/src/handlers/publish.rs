//! Server-side fan-out. Invoked by the message function (a frame to deliver) and by
//! `wsctl publish` (data to store under the next serial, then deliver). A channel larger than
//! one invocation's budget is split: the rest is handed to an asynchronous invocation of this
//! function before this one starts posting.
//!
//! Lambda retries a failed asynchronous invocation (twice, by default), and a retry would hand
//! the rest on again: over k hops that is up to 3^k invocations. So every hop is a job with
//! an id, claimed by the first invocation that runs it; a second invocation of the same job
//! (a duplicate hand-off) does nothing, while Lambda's own retry of it (same request id) runs.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::fanout::{self, Report};
use crate::protocol::{self, ServerFrame};
use crate::store::Key;
use crate::{Invoker, Services};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FanoutJob {
    pub channel: String,
    /// The frame, already serialized, exactly as every subscriber receives it.
    pub frame: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<HashMap<String, String>>,
    /// The fan-out this hop belongs to, and the hop's number within it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    #[serde(default)]
    pub hop: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PublishEvent {
    Fanout {
        fanout: FanoutJob,
    },
    Publish {
        channel: String,
        data: Value,
        #[serde(default)]
        id: Option<String>,
        #[serde(default)]
        from: Option<String>,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PublishResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<u64>,
    #[serde(default)]
    pub duplicate: bool,
    #[serde(flatten)]
    pub report: Report,
    /// True when part of the channel was handed to another invocation.
    #[serde(default)]
    pub continued: bool,
}

/// `request` is the invocation's request id, which Lambda keeps across its retries.
pub async fn handle(ctx: &Services, event: Value, request: &str) -> Result<PublishResult, String> {
    let event: PublishEvent =
        serde_json::from_value(event).map_err(|e| format!("bad publish event: {e}"))?;
    match event {
        PublishEvent::Fanout { fanout } => {
            if let Some(job) = &fanout.job
                && !ctx
                    .store
                    .claim_job(&format!("{job}/{}", fanout.hop), request)
                    .await
                    .map_err(|e| e.to_string())?
            {
                tracing::info!(job, hop = fanout.hop, "duplicate hand-off ignored");
                return Ok(PublishResult::default());
            }
            let start = fanout.start.as_ref().map(fanout::key_from_json);
            let hop = Hop {
                job: fanout.job.clone().unwrap_or_else(new_job_id),
                number: fanout.hop,
            };
            let (report, continued) =
                deliver(ctx, &fanout.channel, &fanout.frame, start, hop).await?;
            Ok(PublishResult {
                serial: None,
                duplicate: false,
                report,
                continued,
            })
        }
        PublishEvent::Publish {
            channel,
            data,
            id,
            from,
        } => {
            protocol::check_channel(&channel)
                .and_then(|()| protocol::check_data(&data))
                .and_then(|()| id.as_deref().map_or(Ok(()), protocol::check_id))
                .map_err(|(_, message)| message)?;
            let from = from.unwrap_or_else(|| protocol::SERVER_USER.into());
            let (message, duplicate) = ctx
                .store
                .append(&channel, id.as_deref(), &from, &data)
                .await
                .map_err(|e| e.to_string())?;
            let serial = Some(message.serial);
            if duplicate {
                return Ok(PublishResult {
                    serial,
                    duplicate,
                    ..Default::default()
                });
            }
            let hop = Hop {
                job: new_job_id(),
                number: 0,
            };
            let (report, continued) = deliver(
                ctx,
                &channel,
                &ServerFrame::Message(message).to_json(),
                None,
                hop,
            )
            .await?;
            Ok(PublishResult {
                serial,
                duplicate,
                report,
                continued,
            })
        }
    }
}

struct Hop {
    job: String,
    number: u32,
}

async fn deliver(
    ctx: &Services,
    channel: &str,
    frame: &str,
    start: Option<Key>,
    hop: Hop,
) -> Result<(Report, bool), String> {
    // Timed, so the log says where a slow fan-out spent its time: reading and posting
    // overlap, and both are measured from the start.
    let started = std::time::Instant::now();
    let (targets, found) = futures::channel::mpsc::unbounded();
    let reading = async {
        let next = fanout::read(
            &ctx.store,
            channel,
            start,
            ctx.fanout_per_invocation,
            targets,
        )
        .await
        .map_err(|e| e.to_string())?;
        let collect_ms = started.elapsed().as_millis() as u64;
        let continued = next.is_some();
        if let Some(next) = next {
            let job = FanoutJob {
                channel: channel.into(),
                frame: frame.into(),
                start: Some(fanout::key_to_json(&next)),
                job: Some(hop.job.clone()),
                hop: hop.number + 1,
            };
            // Failing here fails the invocation, so Lambda retries it: the subscribers of this
            // page may get the frame twice (clients drop serials they have), none lose it.
            invoke_with_retry(&ctx.publish, &job).await?;
        }
        Ok::<_, String>((continued, collect_ms))
    };
    let posting = fanout::post_all(
        &ctx.store,
        &ctx.connections,
        found,
        frame,
        ctx.fanout_concurrency,
    );
    let (read, (report, removed)) = tokio::join!(reading, posting);
    let done_ms = started.elapsed().as_millis() as u64;
    // A subscriber found gone never ran `$disconnect`: announce its leave as that would have.
    for (connection, present) in removed {
        for (channel, leave) in crate::fanout::leave_frames(&connection, present) {
            if let Err(e) = hand_off(ctx, &channel, &leave, None).await {
                tracing::error!(channel, error = %e, "presence leave hand-off failed");
            }
        }
    }
    let (continued, collect_ms) = read?;
    tracing::info!(
        channel,
        delivered = report.delivered,
        gone = report.gone,
        failed = report.failed,
        continued,
        collect_ms,
        done_ms,
        "fan-out"
    );
    Ok((report, continued))
}

/// Asks the publish function to deliver `frame` to `channel`'s subscribers from `start`,
/// retrying a failed invocation request; the error says why it could not.
pub async fn hand_off(
    ctx: &Services,
    channel: &str,
    frame: &str,
    start: Option<&Key>,
) -> Result<(), String> {
    fan_out_later(&ctx.publish, channel, frame, start).await
}

/// One asynchronous invocation of the publish function that delivers `frame` to `channel`'s
/// subscribers from `start`, as a new fan-out job.
pub async fn fan_out_later(
    publish: &Invoker,
    channel: &str,
    frame: &str,
    start: Option<&Key>,
) -> Result<(), String> {
    let job = FanoutJob {
        channel: channel.into(),
        frame: frame.into(),
        start: start.map(fanout::key_to_json),
        job: Some(new_job_id()),
        hop: 0,
    };
    invoke_with_retry(publish, &job).await
}

/// The SDK already retries throttling and 5xx answers; this covers what is left (a
/// connection reset, a function being updated), three attempts in about a second.
async fn invoke_with_retry(publish: &Invoker, job: &FanoutJob) -> Result<(), String> {
    let payload = json!({ "fanout": job });
    let mut attempt = 0;
    loop {
        match publish.invoke_async(&payload).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt >= 2 => return Err(e),
            Err(e) => tracing::warn!(error = %e, attempt, "fan-out hand-off failed; retrying"),
        }
        attempt += 1;
        tokio::time::sleep(std::time::Duration::from_millis(50 << (2 * attempt))).await;
    }
}

/// A fresh fan-out id: 128 random bits from the standard library's per-process random keys.
fn new_job_id() -> String {
    use std::hash::{BuildHasher, RandomState};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let state = RandomState::new();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{:016x}{:016x}",
        state.hash_one((n, t)),
        state.hash_one((t, n, 1u8))
    )
}
