//! Server-side fan-out. Invoked by the message function (the rest of a channel larger than
//! what it posts itself) and by `wsctl publish` (data to store under the next serial, then
//! deliver).
//!
//! The function that stores a message posts to the channel's first page of subscribers itself,
//! after the publisher's ack ([`deliver_here`]): a small channel costs no hand-off. A larger
//! channel is delivered by a two-level tree. A root reads the channel's subscriptions page by
//! page: the first chunk it posts itself; each further chunk of up to
//! `fanout_per_invocation` connection ids goes, as a list, to an asynchronous invocation of
//! this function (a leaf) that only posts. Leaves start as soon as their chunk is read, not one
//! after another as a chain of invocations would, and the root hands a chunk over only when the
//! fan-out's budget (`FANOUT_RATE` posts a second, `FANOUT_BURST` at once: 9,000 and 4,000 by
//! default, 90 % of the account's API Gateway throttle, leaving room for acknowledgements and
//! small channels) allows its posts, so all leaves together stay within the throttle. A 429
//! that still comes (other APIs and fan-outs share the account) is waited out and retried,
//! never lost; what an invocation cannot post before its deadline is handed to a new leaf. A
//! root that runs short of time hands the rest of the channel to the next root (`hop` + 1) with
//! the key it stopped at.
//!
//! Lambda retries a failed asynchronous invocation (twice, by default), and a retry would hand
//! its chunks on again. So every invocation is a part of a job with an id, claimed by the first
//! invocation that runs it; a second invocation of the same part (a duplicate hand-off) does
//! nothing, while Lambda's own retry of it (same request id) runs. Part names are derived from
//! the position in the channel, so a retried root names its chunks as the first try did.

use std::collections::HashMap;
use std::time::Duration;

use futures::stream;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::fanout::{self, Budget, Pace, Posted, Report};
use crate::protocol::{self, ErrorCode, ServerFrame};
use crate::store::Key;
use crate::{Invoker, Services};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FanoutJob {
    pub channel: String,
    /// The frame, already serialized, exactly as every subscriber receives it.
    pub frame: String,
    /// A root: where in the channel's subscriptions to read on from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<HashMap<String, String>>,
    /// A leaf: the connections to post to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<String>>,
    /// The fan-out this invocation belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// A root's number within the fan-out.
    #[serde(default)]
    pub hop: u32,
    /// A leaf's name within the fan-out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<String>,
    /// The connection whose frame began the fan-out (its publisher, or the connection whose
    /// `leave` it announces): every invocation of the fan-out logs it as its `connection`, so
    /// one connection's logs show where its messages went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
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
    /// Invocations this one handed chunks to.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub leaves: u64,
    /// Posts the account's throttle refused and that were sent again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub throttled: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How long before its deadline an invocation stops posting and hands what is left on: one
/// post's whole timeout and the removal of the gone, with room to spare.
const MARGIN: Duration = Duration::from_secs(7);

/// When an invocation that must be done by `deadline` stops sending.
fn cutoff(deadline: Instant) -> Instant {
    super::short_of(deadline, MARGIN)
}

/// `request` is the invocation's request id, which Lambda keeps across its retries. Without a
/// deadline (a test, a local call), an invocation has Lambda's longest, 15 minutes.
pub async fn handle(ctx: &Services, event: Value, request: &str) -> Result<PublishResult, String> {
    let deadline = Instant::now() + Duration::from_secs(900);
    handle_by(ctx, event, request, deadline).await
}

/// As [`handle`], for an invocation that must be done by `deadline`.
pub async fn handle_by(
    ctx: &Services,
    event: Value,
    request: &str,
    deadline: Instant,
) -> Result<PublishResult, String> {
    let event: PublishEvent =
        serde_json::from_value(event).map_err(|e| format!("bad publish event: {e}"))?;
    match event {
        PublishEvent::Fanout { fanout } => {
            let job = fanout.job.clone().unwrap_or_else(new_job_id);
            let part = fanout
                .part
                .clone()
                .unwrap_or_else(|| fanout.hop.to_string());
            if fanout.job.is_some()
                && !ctx
                    .store
                    .claim_job(&format!("{job}/{part}"), request)
                    .await
                    .map_err(|e| e.to_string())?
            {
                tracing::info!(job, part, "duplicate hand-off ignored");
                crate::metrics::add("DuplicateHandOffs", 1.0);
                return Ok(PublishResult::default());
            }
            if let Some(origin) = &fanout.origin {
                tracing::Span::current().record("connection", origin.as_str());
            }
            let hop = Hop {
                job,
                number: fanout.hop,
                part,
                origin: fanout.origin.clone(),
            };
            match fanout.targets {
                Some(targets) => {
                    leaf(ctx, &fanout.channel, &fanout.frame, targets, hop, deadline).await
                }
                None => {
                    let start = fanout.start.as_ref().map(fanout::key_from_json);
                    deliver(ctx, &fanout.channel, &fanout.frame, start, hop, deadline).await
                }
            }
        }
        PublishEvent::Publish {
            channel,
            data,
            id,
            from,
        } => publish(
            ctx,
            &channel,
            &data,
            id.as_deref(),
            from.as_deref(),
            deadline,
        )
        .await
        .map_err(|f| f.to_string()),
    }
}

/// Why a publish did not happen.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The request is wrong (a bad channel name, data over the size limit): sending it again
    /// does not help.
    Refused(ErrorCode, String),
    /// The store failed; the same request (with its `id`) may be sent again.
    Failed(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Refused(_, message) | Failure::Failed(message) => f.write_str(message),
        }
    }
}

/// Stores `data` under the channel's next serial and delivers it; `from` is the user it is
/// sent as (the server's when none). With `id`, a second publish of the same id is stored once
/// and answered as a duplicate.
pub async fn publish(
    ctx: &Services,
    channel: &str,
    data: &Value,
    id: Option<&str>,
    from: Option<&str>,
    deadline: Instant,
) -> Result<PublishResult, Failure> {
    protocol::check_channel(channel)
        .and_then(|()| protocol::check_data(data))
        .and_then(|()| id.map_or(Ok(()), protocol::check_id))
        .map_err(|(code, message)| Failure::Refused(code, message))?;
    let from = from.unwrap_or(protocol::SERVER_USER);
    let (message, duplicate) = ctx
        .store
        .append(channel, id, from, data, cutoff(deadline))
        .await
        .map_err(|e| Failure::Failed(e.to_string()))?;
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
        part: "0".into(),
        origin: None,
    };
    ctx.event(|| crate::events::Event::message(&message));
    let frame = ServerFrame::Message(message).to_json();
    let result = deliver(ctx, channel, &frame, None, hop, deadline)
        .await
        .map_err(Failure::Failed)?;
    Ok(PublishResult { serial, ..result })
}

struct Hop {
    job: String,
    number: u32,
    part: String,
    origin: Option<String>,
}

impl Hop {
    /// A leaf of this invocation: its chunk `k`, or (`k` = 0) what this one could not post.
    fn leaf(&self, channel: &str, frame: &str, targets: Vec<String>, k: usize) -> FanoutJob {
        FanoutJob {
            channel: channel.into(),
            frame: frame.into(),
            start: None,
            targets: Some(targets),
            job: Some(self.job.clone()),
            hop: self.number,
            part: Some(match k {
                0 => format!("{}+", self.part),
                k => format!("{}.{k}", self.part),
            }),
            origin: self.origin.clone(),
        }
    }
}

/// How a fan-out is cut up.
struct Plan {
    /// Posts a second each invocation makes: the budget, or a share of it when one invocation
    /// cannot post that fast.
    rate: f64,
    /// Connections per invocation: a quarter second's worth at `rate`, so the fan-out ends
    /// at most about that long after the budget let its last chunk go; at least 100, so a
    /// low budget does not mean an invocation for every few posts.
    chunk: usize,
}

impl Plan {
    fn of(ctx: &Services) -> Plan {
        let rate = ctx.fanout_invocation_rate.min(ctx.fanout_rate).max(1.0);
        let chunk = ((rate / 4.0) as usize)
            .max(100)
            .min(ctx.fanout_per_invocation.max(1));
        Plan { rate, chunk }
    }
}

/// The chunks a root hands to leaves: each paid for in the fan-out's budget before it goes,
/// a few invocations in flight at once.
struct Chunks<'a> {
    ctx: &'a Services,
    hop: &'a Hop,
    channel: &'a str,
    frame: &'a str,
    size: usize,
    budget: Budget,
    handoffs: JoinSet<Result<(), String>>,
    /// The chunk being filled.
    held: Vec<String>,
    /// Chunks handed on so far.
    leaves: u64,
}

impl Chunks<'_> {
    /// Adds `connection` to the chunk being filled, handing it on once full.
    async fn hold(&mut self, connection: String) -> Result<(), String> {
        self.held.push(connection);
        if self.held.len() >= self.size {
            self.hand().await?;
        }
        Ok(())
    }

    /// Hands the chunk being filled (if any) to a new invocation, once the budget allows.
    async fn hand(&mut self) -> Result<(), String> {
        if self.held.is_empty() {
            return Ok(());
        }
        let ids = std::mem::take(&mut self.held);
        self.budget.take(ids.len()).await;
        while self.handoffs.len() >= HANDOFFS_IN_FLIGHT {
            if let Some(done) = self.handoffs.join_next().await {
                done.map_err(|e| e.to_string())??;
            }
        }
        self.leaves += 1;
        let job = self
            .hop
            .leaf(self.channel, self.frame, ids, self.leaves as usize);
        let publish = self.ctx.publish.clone();
        self.handoffs
            .spawn(async move { invoke_with_retry(&publish, &job).await });
        Ok(())
    }

    /// Waits for the hand-offs in flight, even when reading failed (`outcome`): their chunks
    /// are claimed by name, so a retry of this invocation does not send them twice.
    async fn handed(mut self, outcome: Result<(), String>) -> Result<(), String> {
        while let Some(done) = self.handoffs.join_next().await {
            let done = done.map_err(|e| e.to_string()).and_then(|r| r);
            if outcome.is_ok() {
                done?;
            }
        }
        outcome
    }
}

/// Hand-offs in flight at once: Invoke takes tens of milliseconds, and at a raised throttle a
/// root hands a chunk on every few milliseconds.
const HANDOFFS_IN_FLIGHT: usize = 16;

/// A root: reads `channel` from `start`, posts the first chunk and hands the others to leaves.
async fn deliver(
    ctx: &Services,
    channel: &str,
    frame: &str,
    start: Option<Key>,
    hop: Hop,
    deadline: Instant,
) -> Result<PublishResult, String> {
    // Timed, so the log says where a slow fan-out spent its time: reading and posting
    // overlap, and both are measured from the start.
    let started = Instant::now();
    let cutoff = cutoff(deadline);
    let plan = Plan::of(ctx);
    let chunk = plan.chunk;
    let (own, found) = futures::channel::mpsc::unbounded();
    let reading = async {
        let mut chunks = Chunks {
            ctx,
            hop: &hop,
            channel,
            frame,
            size: chunk,
            budget: Budget::new(ctx.fanout_rate, ctx.fanout_burst),
            handoffs: JoinSet::new(),
            held: Vec::new(),
            leaves: 0,
        };
        let mut mine = 0;
        let mut start = start;
        let mut page = fanout::FIRST_PAGE;
        let mut rest = None;
        let outcome: Result<(), String> = async {
            loop {
                let (subscribers, next) = ctx
                    .store
                    .subscribers(channel, start.take(), page as i32)
                    .await
                    .map_err(|e| e.to_string())?;
                // A member that is present without being subscribed gets none of the
                // channel's traffic.
                for s in subscribers.into_iter().filter(|s| s.listening) {
                    if mine < chunk {
                        mine += 1;
                        chunks.budget.spend(1);
                        // The posting side only stops early at its cutoff, and then takes
                        // what is left from here as leftovers.
                        let _ = own.unbounded_send(s.connection);
                    } else {
                        chunks.hold(s.connection).await?;
                    }
                }
                match next {
                    Some(key) if Instant::now() < cutoff => {
                        start = Some(key);
                        page = fanout::PAGE;
                    }
                    Some(key) => {
                        rest = Some(key);
                        break;
                    }
                    None => break,
                }
            }
            own.close_channel();
            chunks.hand().await?;
            if let Some(rest) = &rest {
                // Out of time with the channel unread: the next root reads on from here.
                let job = FanoutJob {
                    channel: channel.into(),
                    frame: frame.into(),
                    start: Some(fanout::key_to_json(rest)),
                    targets: None,
                    job: Some(hop.job.clone()),
                    hop: hop.number + 1,
                    part: None,
                    origin: hop.origin.clone(),
                };
                invoke_with_retry(&ctx.publish, &job).await?;
            }
            Ok(())
        }
        .await;
        own.close_channel();
        let leaves = chunks.leaves;
        chunks.handed(outcome).await?;
        Ok::<_, String>((leaves, rest.is_some(), started.elapsed().as_millis() as u64))
    };
    // The first chunk may go at once, as far as the budget's burst allows.
    let pace = Pace {
        rate: plan.rate,
        burst: (chunk as f64).min(ctx.fanout_burst),
    };
    let posting = fanout::post_until(
        &ctx.store,
        &ctx.connections,
        found,
        frame,
        ctx.fanout_concurrency,
        pace,
        cutoff,
    );
    let (read, posted) = tokio::join!(reading, posting);
    let (leaves, rest, collect_ms) = read?;
    finish(
        ctx, channel, frame, &hop, posted, leaves, rest, started, collect_ms,
    )
    .await
}

/// A leaf: posts to `targets`, and hands on what it cannot post before its deadline.
async fn leaf(
    ctx: &Services,
    channel: &str,
    frame: &str,
    targets: Vec<String>,
    hop: Hop,
    deadline: Instant,
) -> Result<PublishResult, String> {
    let started = Instant::now();
    let plan = Plan::of(ctx);
    // A leaf's chunk was paid for in the budget as it was handed over: it goes at the
    // invocation's pace, so leaves handed over together do not post in one burst.
    let pace = Pace {
        rate: plan.rate,
        burst: (plan.rate / 20.0).max(1.0),
    };
    let posted = fanout::post_until(
        &ctx.store,
        &ctx.connections,
        stream::iter(targets),
        frame,
        ctx.fanout_concurrency,
        pace,
        cutoff(deadline),
    )
    .await;
    finish(ctx, channel, frame, &hop, posted, 0, false, started, 0).await
}

/// What every invocation does after posting: hands its leftovers on, announces the leave of
/// the connections found gone, logs the fan-out line and says what it did.
#[allow(clippy::too_many_arguments)]
async fn finish(
    ctx: &Services,
    channel: &str,
    frame: &str,
    hop: &Hop,
    posted: Posted,
    leaves: u64,
    rest: bool,
    started: Instant,
    collect_ms: u64,
) -> Result<PublishResult, String> {
    let Posted {
        report,
        removed,
        left,
        throttled,
        slowest,
    } = posted;
    let handed_on = left.len();
    // Failing here fails the invocation, so Lambda retries it: the subscribers it reached
    // may get the frame twice (clients drop serials they have), none lose it.
    if !left.is_empty() {
        tracing::warn!(
            channel,
            left = handed_on,
            "out of time before every post was made; handing the rest on"
        );
        invoke_with_retry(&ctx.publish, &hop.leaf(channel, frame, left, 0)).await?;
    }
    // A subscriber found gone never ran `$disconnect`: announce its leave as that would have.
    for (connection, present) in removed {
        for (channel, leave) in fanout::leave_frames(&connection, present) {
            if let Err(e) = hand_off(ctx, &channel, &leave, None, Some(&connection)).await {
                tracing::error!(channel, error = %e, "presence leave hand-off failed");
            }
        }
    }
    let continued = leaves > 0 || rest || handed_on > 0;
    tracing::info!(
        channel,
        part = hop.part,
        delivered = report.delivered,
        gone = report.gone,
        failed = report.failed,
        throttled,
        leaves,
        handed_on,
        slowest = slowest.round() as u64,
        collect_ms,
        done_ms = started.elapsed().as_millis() as u64,
        "fan-out"
    );
    crate::metrics::add("Delivered", report.delivered as f64);
    crate::metrics::add("Gone", report.gone as f64);
    crate::metrics::add("FailedPosts", report.failed as f64);
    crate::metrics::add("ThrottledPosts", throttled as f64);
    crate::metrics::add("HandOffs", (leaves + u64::from(handed_on > 0)) as f64);
    crate::metrics::time("FanoutDuration", started.elapsed().as_secs_f64() * 1000.0);
    Ok(PublishResult {
        serial: None,
        duplicate: false,
        report,
        continued,
        leaves,
        throttled,
    })
}

/// Subscribers the function that stored a message posts to itself: the first page of the
/// channel, what a root posts before it hands anything on.
pub const HERE: usize = fanout::FIRST_PAGE;

/// How long the storing function may spend posting before it hands what is left to a leaf: a
/// page takes a few round trips, so this is only reached when posts are being throttled.
const HERE_FOR: Duration = Duration::from_secs(2);

/// Delivers a message from the function that stored it, after its ack went out: the first
/// [`HERE`] subscribers are posted to here, so a small channel costs no hand-off (an
/// asynchronous Invoke, its queue's wait of tens of milliseconds, another Lambda request, and
/// no order between a publisher's consecutive messages); the rest of a larger channel is
/// handed meanwhile to the publish function, as a root reading on from where this page ended.
/// The error says why the rest could not be handed on. `origin` is the publisher's connection.
pub async fn deliver_here(
    ctx: &Services,
    channel: &str,
    frame: &str,
    origin: Option<&str>,
    deadline: Option<Instant>,
) -> Result<PublishResult, String> {
    let started = Instant::now();
    // One more than the page: DynamoDB gives a `LastEvaluatedKey` whenever a read fills its
    // `Limit`, so a channel of exactly one page would otherwise cost a hand-off that finds
    // nothing.
    let (mut subscribers, mut next) = ctx
        .store
        .subscribers(channel, None, HERE as i32 + 1)
        .await
        .map_err(|e| e.to_string())?;
    if subscribers.len() > HERE {
        subscribers.truncate(HERE);
        let last = &subscribers[HERE - 1].connection;
        next = Some(ctx.store.after(channel, last));
    }
    let targets: Vec<String> = subscribers
        .into_iter()
        .filter(|s| s.listening)
        .map(|s| s.connection)
        .collect();
    let collect_ms = started.elapsed().as_millis() as u64;
    let rest = async {
        match &next {
            Some(key) => hand_off(ctx, channel, frame, Some(key), origin).await,
            None => Ok(()),
        }
    };
    let mut until = Instant::now() + HERE_FOR;
    if let Some(deadline) = deadline {
        until = until.min(cutoff(deadline));
    }
    let posting = fanout::post_until(
        &ctx.store,
        &ctx.connections,
        stream::iter(targets),
        frame,
        ctx.fanout_concurrency,
        Pace {
            rate: Plan::of(ctx).rate,
            burst: HERE as f64,
        },
        until,
    );
    let (handed, posted) = tokio::join!(rest, posting);
    let hop = Hop {
        job: new_job_id(),
        number: 0,
        part: "here".into(),
        origin: origin.map(str::to_string),
    };
    let done = finish(
        ctx,
        channel,
        frame,
        &hop,
        posted,
        0,
        next.is_some(),
        started,
        collect_ms,
    )
    .await;
    handed.and(done)
}

/// Asks the publish function to deliver `frame` to `channel`'s subscribers from `start`,
/// retrying a failed invocation request; the error says why it could not. `origin` is the
/// connection the frame is about (see [`FanoutJob::origin`]).
pub async fn hand_off(
    ctx: &Services,
    channel: &str,
    frame: &str,
    start: Option<&Key>,
    origin: Option<&str>,
) -> Result<(), String> {
    fan_out_later(&ctx.publish, channel, frame, start, origin).await
}

/// One asynchronous invocation of the publish function that delivers `frame` to `channel`'s
/// subscribers from `start`, as a new fan-out job.
pub async fn fan_out_later(
    publish: &Invoker,
    channel: &str,
    frame: &str,
    start: Option<&Key>,
    origin: Option<&str>,
) -> Result<(), String> {
    let job = FanoutJob {
        channel: channel.into(),
        frame: frame.into(),
        start: start.map(fanout::key_to_json),
        targets: None,
        job: Some(new_job_id()),
        hop: 0,
        part: None,
        origin: origin.map(str::to_string),
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
        tokio::time::sleep(Duration::from_millis(50 << (2 * attempt))).await;
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
