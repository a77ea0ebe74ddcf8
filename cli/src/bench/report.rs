//! What a bench found, as JSON (`--output json`), as text, and as a self-contained HTML page
//! (`--report FILE`): a latency histogram and a connections/messages-over-time chart drawn as
//! inline SVG, so it opens anywhere with no network.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use serde::Serialize;

use super::bill::{self, Bill};
use super::crowd::VirtualDelivery;
use super::histogram::{Bucket, Histogram, Percentiles};
use super::{BenchPlan, Counters, End, Load, Seen};

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: String,
    pub plan: PlanSummary,
    pub connections: Connections,
    pub publishes: Publishes,
    pub delivery: Delivery,
    /// The publish function's counts of its `@connections` posts, from its answers (with
    /// `--via function`; a client publishing over its connection never sees them).
    pub posts: Option<Posts>,
    /// Fan-out rounds (with `--rounds`): publish → the last subscriber has it.
    pub rounds: Vec<Round>,
    /// What `wsctl dev`'s virtual subscribers got (with `--virtual`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtual_subscribers: Option<VirtualDelivery>,
    /// What the run would cost on AWS, from what `wsctl dev` metered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bill: Option<Bill>,
    pub channels: Vec<ChannelCounts>,
    /// Error frames by kind: the functions' `error` codes and API Gateway's own messages.
    pub errors: BTreeMap<String, u64>,
    /// Connections the server ended before the bench did, by close code.
    pub closes: BTreeMap<String, u64>,
    /// API Gateway's limits the run ran into.
    pub limits: Limits,
    pub timeline: Vec<Sample>,
    pub seconds: f64,
    /// Every connection opened, every publish acknowledged, every delivery made once and in
    /// order, and no error frame.
    pub clean: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanSummary {
    pub connections: usize,
    pub rate: f64,
    pub in_flight: usize,
    pub channels: usize,
    pub publishers: usize,
    pub rounds: Option<u64>,
    pub publish_rate: Option<f64>,
    pub duration_seconds: Option<f64>,
    pub size: usize,
    pub hold_seconds: f64,
    pub end: End,
    /// `socket` (publisher connections) or `function` (the publish function).
    pub via: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Connections {
    pub requested: usize,
    pub opened: u64,
    pub failed: u64,
    /// Opened connections a second over the ramp.
    pub rate: f64,
    pub ramp_seconds: f64,
    /// WebSocket handshake, through the authorizer and `$connect`.
    pub handshake: Percentiles,
    pub failures: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Publishes {
    pub sent: u64,
    pub acked: u64,
    /// Answered with an error frame instead of an ack (counted in `errors` by code too).
    pub rejected: u64,
    pub rate: f64,
    /// Publish sent → its ack.
    pub ack: Percentiles,
}

#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// Each acknowledged publish times the subscribers of its channel.
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    /// Publish sent → this subscriber received it.
    pub latency: Percentiles,
    pub histogram: Vec<Bucket>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Posts {
    pub delivered: u64,
    /// Answered 410 Gone: the subscriber's connection had ended without its `$disconnect`
    /// (the function removes it).
    pub gone: u64,
    pub failed: u64,
    /// Publishes whose channel was partly handed to further invocations: those parts' posts
    /// are counted in the function's logs, not here.
    pub continued: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Round {
    pub channel: String,
    pub subscribers: u64,
    pub delivered: u64,
    /// Publish sent → every subscriber has it; absent when some never did.
    pub all_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChannelCounts {
    pub channel: String,
    pub subscribers: u64,
    pub published: u64,
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    /// Handshakes refused with 429 (the account's new-connection rate).
    pub throttled_handshakes: u64,
    /// `{"message": "Limit Exceeded"}` frames (the account's request rate).
    pub limit_exceeded_frames: u64,
    /// Connections closed with 1009 (a message over 128 KB or a frame over 32 KB).
    pub message_too_big: u64,
    /// `@connections` posts answered 410 Gone; only publishes through the publish function
    /// see these answers (`--via function`), so `null` otherwise.
    pub gone: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub t: f64,
    pub open: u64,
    pub published: u64,
    pub delivered: u64,
    pub failed: u64,
}

pub(super) struct Times {
    pub ramp_seconds: f64,
    pub publish_seconds: f64,
    pub total_seconds: f64,
}

pub(super) struct Counts<'a> {
    pub live: &'a Counters,
    pub channels: &'a [String],
    pub subscribers: Vec<u64>,
    pub acked: Vec<Vec<u64>>,
    pub delivery: &'a Histogram,
    pub handshake: &'a Histogram,
    pub ack: &'a Histogram,
    pub handshake_failures: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    pub closes: BTreeMap<String, u64>,
    pub posts: Option<Posts>,
    /// What `wsctl dev`'s virtual subscribers got.
    pub virtual_delivery: Option<VirtualDelivery>,
    /// What `wsctl dev` metered, and the prices to bill it at.
    pub usage: Option<(serde_json::Value, Vec<(String, f64)>)>,
}

pub(super) fn build(
    plan: &BenchPlan,
    counts: &Counts,
    seen: Vec<Seen>,
    rounds: Vec<Round>,
    timeline: Vec<Sample>,
    times: Times,
) -> Report {
    let virtual_subscribers = counts.virtual_delivery.clone();
    let mut channels: Vec<ChannelCounts> = counts
        .channels
        .iter()
        .enumerate()
        .map(|(i, name)| ChannelCounts {
            channel: name.clone(),
            subscribers: counts.subscribers[i],
            published: counts.acked[i].len() as u64,
            expected: 0,
            delivered: 0,
            lost: 0,
            duplicated: 0,
            out_of_order: 0,
        })
        .collect();
    for s in &seen {
        let c = &mut channels[s.channel];
        for &serial in &counts.acked[s.channel] {
            c.expected += 1;
            if s.has(serial) {
                c.delivered += 1;
            } else {
                c.lost += 1;
            }
        }
        c.duplicated += s.duplicates;
        c.out_of_order += s.out_of_order;
    }
    let sum = |f: fn(&ChannelCounts) -> u64| channels.iter().map(f).sum::<u64>();
    let delivery = Delivery {
        expected: sum(|c| c.expected),
        delivered: sum(|c| c.delivered),
        lost: sum(|c| c.lost),
        duplicated: sum(|c| c.duplicated),
        out_of_order: sum(|c| c.out_of_order),
        latency: counts.delivery.percentiles(),
        histogram: counts.delivery.buckets(),
    };
    let opened = counts.live.opened.load(Relaxed);
    let failed = counts.live.failed.load(Relaxed);
    let sent = counts.live.published.load(Relaxed);
    let acked = counts.live.acked.load(Relaxed);
    let errors_matching = |map: &BTreeMap<String, u64>, needle: &str| -> u64 {
        map.iter()
            .filter(|(k, _)| k.contains(needle))
            .map(|(_, v)| v)
            .sum()
    };
    let limits = Limits {
        throttled_handshakes: errors_matching(&counts.handshake_failures, "429"),
        limit_exceeded_frames: errors_matching(&counts.errors, "Limit Exceeded"),
        message_too_big: errors_matching(&counts.closes, "1009"),
        gone: counts.posts.as_ref().map(|p| p.gone),
    };
    let clean = failed == 0
        && opened as usize == plan.connections
        && acked == sent
        && sent == plan.load.publishes()
        && delivery.lost == 0
        && delivery.duplicated == 0
        && delivery.out_of_order == 0
        && counts.errors.is_empty()
        && counts.closes.is_empty()
        && counts.posts.as_ref().is_none_or(|p| p.failed == 0)
        && virtual_subscribers
            .as_ref()
            .is_none_or(|v| v.error.is_none() && v.lost == 0 && v.duplicated == 0);
    let deliveries = delivery.delivered + virtual_subscribers.as_ref().map_or(0, |v| v.delivered);
    let bill = counts
        .usage
        .as_ref()
        .map(|(stats, prices)| bill::bill(stats, prices, deliveries));
    let (rounds_n, publish_rate, duration) = match plan.load {
        Load::Rounds(n) => (Some(n), None, None),
        Load::Rate {
            per_second,
            duration,
        } => (None, Some(per_second), Some(duration.as_secs_f64())),
    };
    Report {
        target: plan.url.clone(),
        plan: PlanSummary {
            connections: plan.connections,
            rate: plan.rate,
            in_flight: plan.in_flight,
            channels: plan.channels,
            publishers: plan.publishers,
            rounds: rounds_n,
            publish_rate,
            duration_seconds: duration,
            size: plan.size,
            hold_seconds: plan.hold.as_secs_f64(),
            end: plan.end,
            via: plan.via.name(),
        },
        connections: Connections {
            requested: plan.connections,
            opened,
            failed,
            rate: per_second(opened, times.ramp_seconds),
            ramp_seconds: times.ramp_seconds,
            handshake: counts.handshake.percentiles(),
            failures: counts.handshake_failures.clone(),
        },
        publishes: Publishes {
            sent,
            acked,
            rejected: counts.live.rejected.load(Relaxed),
            rate: per_second(sent, times.publish_seconds),
            ack: counts.ack.percentiles(),
        },
        delivery,
        posts: counts.posts.clone(),
        rounds,
        virtual_subscribers,
        bill,
        channels,
        errors: counts.errors.clone(),
        closes: counts.closes.clone(),
        limits,
        timeline,
        seconds: times.total_seconds,
        clean,
    }
}

/// The virtual subscribers' deliveries, and the slowest publish's spread over them.
fn virtual_line(v: &VirtualDelivery) -> String {
    if let Some(e) = &v.error {
        return format!("virtual       not added: {e}");
    }
    let ms = |x: Option<f64>| x.map_or("-".to_string(), |m| format!("{m:.0} ms"));
    let slowest = v.publishes.iter().max_by(|a, b| {
        a.last_ms
            .unwrap_or(f64::MAX)
            .total_cmp(&b.last_ms.unwrap_or(f64::MAX))
    });
    let spread = slowest.map_or(String::new(), |p| {
        format!(
            "; slowest publish → first {}, median {}, p99 {}, last {}",
            ms(p.first_ms),
            ms(p.p50_ms),
            ms(p.p99_ms),
            ms(p.last_ms)
        )
    });
    format!(
        "virtual       {} a channel (added in {:.1} s): {} of {} delivered, {} lost, {} duplicated{spread}",
        v.per_channel, v.setup_seconds, v.delivered, v.expected, v.lost, v.duplicated
    )
}

/// The bill, one item a line.
fn bill_lines(b: &Bill) -> String {
    let mut out = format!(
        "on AWS       ${:.6} for this run{} (Lambda concurrency at peak {}{}{}{})",
        b.total_usd,
        b.per_million_deliveries_usd
            .map(|usd| format!(", ${usd:.2} per million deliveries"))
            .unwrap_or_default(),
        b.peak_lambda_concurrency,
        match b.lambda_throttled {
            0 => String::new(),
            n => format!(", {n} invocations throttled"),
        },
        match b.dynamodb_throttled {
            0 => String::new(),
            n => format!(", {n} DynamoDB calls throttled"),
        },
        b.not_counted
            .map(|what| format!("; {what} not counted"))
            .unwrap_or_default(),
    );
    for l in &b.lines {
        let _ = write!(
            out,
            "\n              {:<36} {:>14.1} × ${:.10} = ${:.6}",
            l.item, l.quantity, l.unit_usd, l.usd
        );
    }
    out
}

fn per_second(n: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n as f64 / seconds
    } else {
        0.0
    }
}

fn percentiles_line(p: &Percentiles) -> String {
    if p.count == 0 {
        return "none measured".into();
    }
    format!(
        "p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms
    )
}

fn kinds(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(k, v)| format!("{v} × {k}"))
        .collect::<Vec<_>>()
        .join("; ")
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}

impl Report {
    /// The fan-out times of the rounds in which every subscriber got the message.
    pub fn round_times(&self) -> Vec<f64> {
        self.rounds.iter().filter_map(|r| r.all_ms).collect()
    }

    /// The result for a person.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let c = &self.connections;
        let _ = writeln!(out, "target        {}", self.target);
        let _ = writeln!(
            out,
            "connections   {} of {} opened in {:.1} s = {:.0}/s (asked {}/s); handshake {}",
            c.opened,
            c.requested,
            c.ramp_seconds,
            c.rate,
            self.plan.rate,
            percentiles_line(&c.handshake)
        );
        if c.failed > 0 {
            let _ = writeln!(
                out,
                "              {} failed: {}",
                c.failed,
                kinds(&c.failures)
            );
        }
        let p = &self.publishes;
        let _ = writeln!(
            out,
            "publishes     {} sent ({:.1}/s), {} acknowledged, {} refused; ack {}",
            p.sent,
            p.rate,
            p.acked,
            p.rejected,
            percentiles_line(&p.ack)
        );
        let d = &self.delivery;
        let _ = writeln!(
            out,
            "delivery      {} of {} delivered: {} lost, {} duplicated, {} out of order",
            d.delivered, d.expected, d.lost, d.duplicated, d.out_of_order
        );
        let _ = writeln!(
            out,
            "latency       {} (publish sent → received)",
            percentiles_line(&d.latency)
        );
        if !self.rounds.is_empty() {
            let times: Vec<String> = self
                .rounds
                .iter()
                .map(|r| match r.all_ms {
                    Some(ms) => format!("{ms:.0} ms"),
                    None => format!("{} of {} only", r.delivered, r.subscribers),
                })
                .collect();
            let mut done = self.round_times();
            done.sort_by(f64::total_cmp);
            let median = done
                .get(done.len() / 2)
                .map(|m| format!("median {m:.0} ms; "))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "fan-out       publish → all subscribers: {median}{}",
                times.join(", ")
            );
        }
        if let Some(posts) = &self.posts {
            let _ = writeln!(
                out,
                "posts         the publish function's answers: {} delivered, {} gone (410), {} failed{}",
                posts.delivered,
                posts.gone,
                posts.failed,
                match posts.continued {
                    0 => String::new(),
                    n => format!(
                        " (for {n} publishes part of the channel went to further invocations, counted in the function's logs)"
                    ),
                }
            );
        }
        if let Some(v) = &self.virtual_subscribers {
            let _ = writeln!(out, "{}", virtual_line(v));
        }
        if let Some(b) = &self.bill {
            let _ = writeln!(out, "{}", bill_lines(b));
        }
        let _ = writeln!(out, "error frames  {}", kinds(&self.errors));
        let _ = writeln!(out, "closed early  {}", kinds(&self.closes));
        let l = &self.limits;
        let gone = match l.gone {
            Some(n) => format!("{n} posts answered 410 Gone"),
            None => "410s not seen by publisher connections (--via function counts them)".into(),
        };
        let _ = writeln!(
            out,
            "limits        {} handshakes throttled (429), {} Limit Exceeded frames, {} closed for size (1009), {gone}",
            l.throttled_handshakes, l.limit_exceeded_frames, l.message_too_big
        );
        let _ = write!(
            out,
            "result        {} in {:.1} s",
            if self.clean {
                "clean: everything delivered once, in order"
            } else {
                "NOT clean (see above)"
            },
            self.seconds
        );
        out
    }
}
