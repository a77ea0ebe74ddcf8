//! Load on a stage: connections ramped at a rate, each subscribed to one of the channels, then
//! publishes from publisher connections (one per round, timed until its last subscriber has
//! it, or at a steady rate for a duration). Every delivery is timed from its publish and checked
//! by serial: lost, duplicated, out of order. Publishes go out over publisher connections, or
//! through the stack's publish function, whose answers count the fan-out's own posts (410s
//! included). The same code runs against API Gateway and against `wsctl dev`; nothing here
//! knows which.

mod bill;
mod crowd;
pub mod histogram;
mod page;
mod publisher;
pub mod report;
mod subscriber;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{Semaphore, mpsc, watch};

pub use bill::parse_price;
use histogram::Histogram;
use publisher::{function_publisher, publisher};
pub use report::Report;
use subscriber::{Incoming, Seen, open, subscriber};

use crate::stack::PublishFunction;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// API Gateway integrations time out at 29 s: a handshake or an answer slower than this is lost.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Between rounds, so one round's stragglers do not count against the next.
const ROUND_GAP: Duration = Duration::from_millis(200);
/// How long each connection waits for the server's answer to its close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
pub struct BenchPlan {
    /// `ws://` or `wss://` URL of the stage, without the token.
    pub url: String,
    /// Connection `i` uses token `i` modulo their number (publishers after the subscribers).
    pub tokens: Vec<String>,
    pub connections: usize,
    /// New connections a second.
    pub rate: f64,
    /// Handshakes (and subscribes) in flight at once.
    pub in_flight: usize,
    pub channels: usize,
    /// Channel `i` is `{prefix}-{i}`.
    pub channel_prefix: String,
    pub publishers: usize,
    pub load: Load,
    /// Bytes of padding in each published message's data.
    pub size: usize,
    /// Idle time between the ramp and the first publish.
    pub hold: Duration,
    /// After the last publish (or in a round), the longest wait for deliveries.
    pub drain: Duration,
    pub end: End,
    pub via: Via,
    /// `wsctl dev`'s address (`http://host:port`), when the stage is its.
    pub dev: Option<String>,
    /// Virtual subscribers to add to each channel there.
    pub virtual_per_channel: usize,
    /// Prices that replace the bill's defaults.
    pub prices: Vec<(String, f64)>,
}

/// How publishes reach the stage.
#[derive(Debug, Clone)]
pub enum Via {
    /// `publish` frames from publisher connections, as clients publish. The message function
    /// acknowledges each and hands its fan-out on: the posts' outcomes stay in its logs.
    Socket,
    /// Invocations of the stack's publish function, `--publishers` at a time, as `wsctl
    /// publish --channel` makes them: each answer counts its fan-out's posts, 410s included.
    Function(PublishFunction),
}

impl Via {
    pub fn name(&self) -> &'static str {
        match self {
            Via::Socket => "socket",
            Via::Function(_) => "function",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// One publish at a time, to channel `round % channels`, each timed until every subscriber
    /// of the channel has it.
    Rounds(u64),
    /// Publishes spread over the channels and publishers at this rate, for this long.
    Rate { per_second: f64, duration: Duration },
}

impl Load {
    pub fn publishes(&self) -> u64 {
        match *self {
            Load::Rounds(n) => n,
            Load::Rate {
                per_second,
                duration,
            } => (per_second * duration.as_secs_f64()).round().max(1.0) as u64,
        }
    }
}

/// How the connections end: with a close frame, or dropped as a lost network drops them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum End {
    Close,
    Drop,
}

/// What the bench is doing now, for progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Ramp,
    Hold,
    Publish,
    Drain,
    End,
}

/// Counters progress reads while the bench runs.
pub struct Counters {
    phase: AtomicU8,
    pub opened: AtomicU64,
    pub failed: AtomicU64,
    pub open_now: AtomicI64,
    pub published: AtomicU64,
    pub acked: AtomicU64,
    /// Publishes answered with an error frame.
    pub rejected: AtomicU64,
    /// First receipts of this run's messages.
    pub delivered: AtomicU64,
    pub started: Instant,
}

impl Counters {
    pub fn new() -> Arc<Counters> {
        Arc::new(Counters {
            phase: AtomicU8::new(0),
            opened: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            open_now: AtomicI64::new(0),
            published: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            started: Instant::now(),
        })
    }

    pub fn phase(&self) -> Phase {
        match self.phase.load(Relaxed) {
            0 => Phase::Ramp,
            1 => Phase::Hold,
            2 => Phase::Publish,
            3 => Phase::Drain,
            _ => Phase::End,
        }
    }

    fn set(&self, phase: Phase) {
        self.phase.store(phase as u8, Relaxed);
    }
}

/// Per publish: deliveries so far and the latest one, in µs since the start.
#[derive(Default)]
struct Arrivals {
    count: AtomicU64,
    last_us: AtomicU64,
    sent_us: AtomicU64,
}

/// What every task records into.
struct Shared {
    live: Arc<Counters>,
    run: String,
    channels: Vec<String>,
    subscribers: Vec<AtomicU64>,
    arrivals: Vec<Arrivals>,
    delivery: Histogram,
    handshake: Histogram,
    ack: Histogram,
    /// Serials acknowledged per channel.
    acked: Mutex<Vec<Vec<u64>>>,
    handshake_failures: Mutex<BTreeMap<String, u64>>,
    errors: Mutex<BTreeMap<String, u64>>,
    closes: Mutex<BTreeMap<String, u64>>,
    /// What the publish function's answers counted (with [`Via::Function`]).
    posts: Posts,
    /// Each acknowledged publish's send time (µs since the start) by channel and serial.
    sent_at: Mutex<HashMap<(usize, u64), u64>>,
}

/// The publish function's own counts of its `@connections` posts, summed over its answers.
#[derive(Default)]
struct Posts {
    delivered: AtomicU64,
    gone: AtomicU64,
    failed: AtomicU64,
    /// Answers whose channel was partly handed to further invocations, whose counts are
    /// not in any answer.
    continued: AtomicU64,
}

fn bump(map: &Mutex<BTreeMap<String, u64>>, key: String) {
    *map.lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(key)
        .or_default() += 1;
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.live.started.elapsed().as_micros() as u64
    }

    /// Publish `serial` of channel `c`, sent at `sent_us`, was acknowledged.
    fn acknowledged(&self, c: usize, serial: u64, sent_us: Option<u64>) {
        self.acked.lock().unwrap_or_else(|e| e.into_inner())[c].push(serial);
        if let Some(sent) = sent_us {
            self.sent_at
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert((c, serial), sent);
        }
    }

    /// Publish `n`'s data, stamped with its send time, which is also kept as its start.
    fn stamp(&self, n: u64, pad: &str) -> (u64, serde_json::Value) {
        let sent = self.now_us();
        if let Some(a) = self.arrivals.get(n as usize) {
            a.sent_us.store(sent, Relaxed);
        }
        (
            sent,
            json!({"run": self.run, "n": n, "t": sent, "pad": pad}),
        )
    }

    /// The index of one of this run's channels, `{run}-{i}`.
    fn channel_index(&self, name: &str) -> Option<usize> {
        let i: usize = name
            .strip_prefix(&self.run)?
            .strip_prefix('-')?
            .parse()
            .ok()?;
        (self.channels.get(i)?.as_str() == name).then_some(i)
    }

    /// A frame that is not this run's message or ack: an error frame (ours or API Gateway's).
    fn other_frame(&self, frame: &Incoming) {
        match (frame.kind.as_deref(), &frame.code, &frame.message) {
            (Some("error"), Some(code), _) => bump(&self.errors, format!("error: {code}")),
            // API Gateway's own frames: {"message": "Limit Exceeded" | "Forbidden" |
            // "Internal server error", "connectionId": …, "requestId": …}.
            (None, _, Some(message)) => bump(&self.errors, format!("gateway: {message}")),
            _ => {}
        }
    }

    /// A close frame from the server; one without a status code reads as 1005 (RFC 6455 7.1.5).
    fn closed(&self, code: Option<u16>) {
        let code = code.unwrap_or(1005);
        bump(&self.closes, format!("{code} {}", close_name(code)));
    }
}

fn close_name(code: u16) -> &'static str {
    match code {
        1000 => "normal",
        1001 => "going away (idle timeout or lifetime)",
        1005 => "no status code",
        1006 => "abnormal",
        1008 => "policy violation",
        1009 => "message too big",
        1011 => "server error",
        1012 => "service restart",
        _ => "other",
    }
}

/// Runs the plan; `live` is updated as it goes.
pub async fn run(plan: BenchPlan, live: Arc<Counters>) -> Report {
    let publishes = plan.load.publishes() as usize;
    let channels: Vec<String> = (0..plan.channels)
        .map(|i| format!("{}-{i}", plan.channel_prefix))
        .collect();
    let shared = Arc::new(Shared {
        live: live.clone(),
        run: plan.channel_prefix.clone(),
        subscribers: channels.iter().map(|_| AtomicU64::new(0)).collect(),
        acked: Mutex::new(vec![Vec::new(); channels.len()]),
        channels,
        arrivals: (0..publishes).map(|_| Arrivals::default()).collect(),
        delivery: Histogram::default(),
        handshake: Histogram::default(),
        ack: Histogram::default(),
        handshake_failures: Mutex::default(),
        errors: Mutex::default(),
        closes: Mutex::default(),
        posts: Posts::default(),
        sent_at: Mutex::default(),
    });
    let dev = plan
        .dev
        .as_ref()
        .map(|base| crowd::Crowd::new(base, plan.virtual_per_channel));
    let crowd = dev.as_ref().filter(|d| d.per_channel > 0);
    // The bill counts this run only.
    if let Some(dev) = &dev {
        let _ = dev.stats(true).await;
    }
    let url_of =
        |i: usize| crate::stack::with_token(&plan.url, &plan.tokens[i % plan.tokens.len()]);
    let (stop_tx, stop) = watch::channel(false);
    let timeline = tokio::spawn(sample(shared.clone(), stop.clone()));

    // The ramp: connection i starts at i / rate, with at most `in_flight` handshakes at once.
    live.set(Phase::Ramp);
    let ramp_started = Instant::now();
    let permits = Arc::new(Semaphore::new(plan.in_flight.max(1)));
    let mut subscribers = Vec::with_capacity(plan.connections);
    let interval = Duration::from_secs_f64(1.0 / plan.rate);
    let mut due = ramp_started;
    for i in 0..plan.connections {
        tokio::time::sleep_until(due.into()).await;
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        // Late (all handshakes in flight were slow): go on from now rather than catch up in a
        // burst, so the rate never goes above the one asked for.
        due = (due + interval).max(Instant::now());
        subscribers.push(tokio::spawn(subscriber(
            shared.clone(),
            url_of(i),
            (plan.channels > 0).then(|| i % plan.channels),
            permit,
            stop.clone(),
            plan.end,
        )));
    }
    // The ramp ends when the last handshake and subscribe have answered.
    let _ = permits.acquire_many(plan.in_flight.max(1) as u32).await;
    let ramp_seconds = ramp_started.elapsed().as_secs_f64();
    let crowd_started = Instant::now();
    let mut crowd_error = None;
    if let Some(crowd) = crowd {
        for channel in &shared.channels {
            if let Err(e) = crowd.add(channel).await {
                crowd_error = Some(e);
                break;
            }
        }
    }
    let crowd_seconds = crowd_started.elapsed().as_secs_f64();

    let mut publishers = Vec::new();
    let mut senders = Vec::new();
    let publishing = plan.channels > 0 && publishes > 0;
    for p in 0..if publishing { plan.publishers } else { 0 } {
        let (tx, rx) = mpsc::channel::<(u64, usize)>(1024);
        let task = match &plan.via {
            Via::Socket => match open(&shared, &url_of(plan.connections + p)).await {
                Some(ws) => {
                    tokio::spawn(publisher(shared.clone(), ws, rx, plan.size, stop.clone()))
                }
                None => continue,
            },
            Via::Function(function) => tokio::spawn(function_publisher(
                shared.clone(),
                function.clone(),
                rx,
                plan.size,
                stop.clone(),
            )),
        };
        publishers.push(task);
        senders.push(tx);
    }

    live.set(Phase::Hold);
    tokio::time::sleep(plan.hold).await;

    live.set(Phase::Publish);
    let publish_started = Instant::now();
    let mut rounds = Vec::new();
    let mut handed = 0u64;
    if !senders.is_empty() {
        match plan.load {
            Load::Rounds(n) => {
                for round in 0..n {
                    let crowd = crowd.filter(|_| crowd_error.is_none());
                    rounds.push(fan_out(&shared, &senders, round, plan.drain, crowd).await);
                    handed += 1;
                    tokio::time::sleep(ROUND_GAP).await;
                }
            }
            Load::Rate { per_second, .. } => {
                for n in 0..publishes as u64 {
                    let due = publish_started + Duration::from_secs_f64(n as f64 / per_second);
                    tokio::time::sleep_until(due.into()).await;
                    let to = &senders[n as usize % senders.len()];
                    if to
                        .send((n, n as usize % shared.channels.len()))
                        .await
                        .is_ok()
                    {
                        handed += 1;
                    }
                }
            }
        }
    }
    let publish_seconds = publish_started.elapsed().as_secs_f64();

    // Until every acknowledged publish has reached every subscriber of its channel.
    live.set(Phase::Drain);
    let drain_started = Instant::now();
    while drain_started.elapsed() < plan.drain {
        if acks_settled(&shared, handed) && live.delivered.load(Relaxed) >= expected(&shared) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let virtual_delivery = match crowd {
        Some(crowd) => {
            let serials: Vec<(String, Vec<u64>)> = shared
                .channels
                .iter()
                .cloned()
                .zip(
                    shared
                        .acked
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .iter()
                        .cloned(),
                )
                .collect();
            let arrivals = match crowd_error {
                None => crowd.settle(&serials, plan.drain).await,
                Some(_) => Vec::new(),
            };
            for channel in &shared.channels {
                crowd.remove(channel).await;
            }
            let started_us = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or_default()
                .saturating_sub(shared.now_us());
            let sent_at = shared.sent_at.lock().unwrap_or_else(|e| e.into_inner());
            let mut tally = crowd::tally(
                crowd.per_channel,
                crowd_seconds,
                &arrivals,
                &serials,
                |channel, serial| {
                    let c = shared.channel_index(channel)?;
                    Some(started_us + sent_at.get(&(c, serial))?)
                },
            );
            tally.error = crowd_error;
            Some(tally)
        }
        None => None,
    };
    let usage = match &dev {
        Some(dev) => dev.stats(false).await.ok(),
        None => None,
    };

    live.set(Phase::End);
    let _ = stop_tx.send(true);
    let mut seen = Vec::new();
    for task in subscribers {
        if let Ok(Some(s)) = task.await {
            seen.push(s);
        }
    }
    for task in publishers {
        let _ = task.await;
    }
    let timeline = timeline.await.unwrap_or_default();
    let mut counts = shared_view(&shared, &plan.via);
    counts.virtual_delivery = virtual_delivery;
    counts.usage = usage.map(|stats| (stats, plan.prices.clone()));
    report::build(
        &plan,
        &counts,
        seen,
        rounds,
        timeline,
        report::Times {
            ramp_seconds,
            publish_seconds,
            total_seconds: live.started.elapsed().as_secs_f64(),
        },
    )
}

/// Deliveries owed: each acknowledged serial to each subscriber of its channel.
fn expected(shared: &Shared) -> u64 {
    let acked = shared.acked.lock().unwrap_or_else(|e| e.into_inner());
    acked
        .iter()
        .zip(&shared.subscribers)
        .map(|(serials, subs)| serials.len() as u64 * subs.load(Relaxed))
        .sum()
}

/// Every publish handed to a publisher was sent and has its ack or its error.
fn acks_settled(shared: &Shared, handed: u64) -> bool {
    let live = &shared.live;
    let published = live.published.load(Relaxed);
    published >= handed && live.acked.load(Relaxed) + live.rejected.load(Relaxed) >= published
}

/// One round: publish `round` to its channel, wait until every subscriber has it.
async fn fan_out(
    shared: &Shared,
    senders: &[mpsc::Sender<(u64, usize)>],
    round: u64,
    timeout: Duration,
    crowd: Option<&crowd::Crowd>,
) -> report::Round {
    let channel = round as usize % shared.channels.len();
    let subscribers = shared.subscribers[channel].load(Relaxed);
    let arrivals = &shared.arrivals[round as usize];
    let acked_before = shared.acked.lock().unwrap_or_else(|e| e.into_inner())[channel].len();
    let _ = senders[round as usize % senders.len()]
        .send((round, channel))
        .await;
    let started = Instant::now();
    while arrivals.count.load(Relaxed) < subscribers && started.elapsed() < timeout {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let delivered = arrivals.count.load(Relaxed);
    // The virtual subscribers are waited for too, so one round's fan-out does not overlap
    // the next; their times are reported per publish.
    if let Some(crowd) = crowd {
        while started.elapsed() < timeout {
            let serial = shared.acked.lock().unwrap_or_else(|e| e.into_inner())[channel]
                .get(acked_before)
                .copied();
            let all = match serial {
                Some(serial) => crowd
                    .arrivals(&shared.channels[channel])
                    .await
                    .ok()
                    .and_then(|got| got.get(&serial).map(|l| l.received))
                    .is_some_and(|n| n >= crowd.per_channel as u64),
                None => false,
            };
            if all {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let sent = arrivals.sent_us.load(Relaxed);
    report::Round {
        channel: shared.channels[channel].clone(),
        subscribers,
        delivered,
        all_ms: (delivered >= subscribers && subscribers > 0)
            .then(|| arrivals.last_us.load(Relaxed).saturating_sub(sent) as f64 / 1000.0),
    }
}

/// Every 250 ms: connections open, publishes and deliveries so far.
async fn sample(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) -> Vec<report::Sample> {
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        let live = &shared.live;
        samples.push(report::Sample {
            t: live.started.elapsed().as_secs_f64(),
            open: live.open_now.load(Relaxed).max(0) as u64,
            published: live.published.load(Relaxed),
            delivered: live.delivered.load(Relaxed),
            failed: live.failed.load(Relaxed),
        });
        if *stop.borrow() {
            return samples;
        }
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => {}
        }
    }
}

/// A read-only view of the shared counters, for the report.
fn shared_view<'a>(shared: &'a Shared, via: &Via) -> report::Counts<'a> {
    report::Counts {
        live: &shared.live,
        channels: &shared.channels,
        subscribers: shared.subscribers.iter().map(|s| s.load(Relaxed)).collect(),
        acked: shared
            .acked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        delivery: &shared.delivery,
        handshake: &shared.handshake,
        ack: &shared.ack,
        handshake_failures: shared
            .handshake_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        errors: shared
            .errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        closes: shared
            .closes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        posts: matches!(via, Via::Function(_)).then(|| report::Posts {
            delivered: shared.posts.delivered.load(Relaxed),
            gone: shared.posts.gone.load(Relaxed),
            failed: shared.posts.failed.load(Relaxed),
            continued: shared.posts.continued.load(Relaxed),
        }),
        virtual_delivery: None,
        usage: None,
    }
}

#[cfg(test)]
mod tests {
    use super::publisher::{MAX_FRAME, fragments};
    use super::*;
    use tokio_tungstenite::tungstenite::Message;

    #[test]
    fn a_subscriber_counts_each_serial_once_and_notices_disorder() {
        let mut s = Seen::new(0, 10);
        assert!(!s.record(10), "at or before the subscription: not expected");
        assert!(s.record(11));
        assert!(s.record(13));
        assert!(s.record(12), "late, but a first receipt");
        assert!(!s.record(13), "a duplicate");
        assert!(s.record(200));
        assert_eq!((s.duplicates, s.out_of_order), (1, 1));
        assert!(s.has(11) && s.has(12) && s.has(13) && s.has(200));
        assert!(!s.has(14) && !s.has(10) && !s.has(1000));
    }

    #[test]
    fn a_message_over_32_kb_goes_out_in_frames_of_32_kb() {
        assert_eq!(fragments("small".into()).len(), 1);
        let big = "x".repeat(100 * 1024);
        let parts = fragments(big.clone());
        assert_eq!(parts.len(), 4);
        let mut joined = Vec::new();
        for (i, p) in parts.into_iter().enumerate() {
            let Message::Frame(f) = p else {
                panic!("a raw frame")
            };
            assert!(f.len() <= MAX_FRAME + 14, "frame {i} is {} bytes", f.len());
            assert_eq!(f.header().is_final, i == 3);
            joined.extend_from_slice(&f.into_payload());
        }
        assert_eq!(joined, big.as_bytes());
    }

    #[test]
    fn a_steady_load_publishes_its_rate_times_its_duration() {
        let load = Load::Rate {
            per_second: 20.0,
            duration: Duration::from_secs(3),
        };
        assert_eq!(load.publishes(), 60);
        assert_eq!(Load::Rounds(5).publishes(), 5);
    }
}
