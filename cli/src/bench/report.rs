//! What a bench found, as JSON (`--output json`), as text, and as a self-contained HTML page
//! (`--report FILE`): a latency histogram and a connections/messages-over-time chart drawn as
//! inline SVG, so it opens anywhere with no network.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use serde::Serialize;

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
}

pub(super) fn build(
    plan: &BenchPlan,
    counts: &Counts,
    seen: Vec<Seen>,
    rounds: Vec<Round>,
    timeline: Vec<Sample>,
    times: Times,
) -> Report {
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
        && counts.posts.as_ref().is_none_or(|p| p.failed == 0);
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
        channels,
        errors: counts.errors.clone(),
        closes: counts.closes.clone(),
        limits,
        timeline,
        seconds: times.total_seconds,
        clean,
    }
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

    /// The HTML page: the summary, the histogram, the timeline and the JSON.
    pub fn html(&self) -> String {
        let json = serde_json::to_string(self)
            .unwrap_or_default()
            .replace("</", "<\\/");
        fill(
            include_str!("../../../templates/bench-report.html"),
            &[
                ("TARGET", escape(&self.target)),
                ("SUMMARY", escape(&self.text())),
                ("HISTOGRAM", histogram_svg(&self.delivery.histogram)),
                ("TIMELINE", timeline_svg(&self.timeline)),
                ("JSON", json),
            ],
        )
    }
}

/// The template with each `{{KEY}}` replaced, in one pass: a value that happens to contain a
/// placeholder's text is not expanded again.
fn fill(template: &str, values: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}").and_then(|end| {
            let key = &after[..end];
            values
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| (v, end))
        }) {
            Some((value, end)) => {
                out.push_str(value);
                rest = &after[end + 2..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const W: f64 = 760.0;
const H: f64 = 260.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 60.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 40.0;

fn ms_label(us: u64) -> String {
    match us {
        0..1_000 => format!("{:.2} ms", us as f64 / 1000.0),
        1_000..10_000 => format!("{:.1} ms", us as f64 / 1000.0),
        _ => format!("{:.0} ms", us as f64 / 1000.0),
    }
}

/// Bars on a log scale of latency: the histogram's buckets merged four to a bar.
fn histogram_svg(buckets: &[Bucket]) -> String {
    let mut svg = format!(
        r#"<svg id="latency-histogram" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="delivery latency histogram">"#
    );
    if buckets.is_empty() {
        svg.push_str(r#"<text x="380" y="130" text-anchor="middle">no deliveries</text></svg>"#);
        return svg;
    }
    let mut bars: Vec<Bucket> = Vec::new();
    for b in buckets {
        match bars.last_mut() {
            Some(last) if b.from_us < last.from_us.max(1) * 5 / 4 + 1 => {
                last.to_us = b.to_us;
                last.count += b.count;
            }
            _ => bars.push(b.clone()),
        }
    }
    let lo = (bars[0].from_us.max(1) as f64).ln();
    let hi = (bars[bars.len() - 1].to_us.max(2) as f64)
        .ln()
        .max(lo + 0.1);
    let x = |us: u64| LEFT + (((us.max(1) as f64).ln() - lo) / (hi - lo)) * (W - LEFT - RIGHT);
    let top = bars.iter().map(|b| b.count).max().unwrap_or(1) as f64;
    let y = |n: f64| TOP + (1.0 - n / top) * (H - TOP - BOTTOM);
    let base = H - BOTTOM;
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{base}" x2="{}" y2="{base}" stroke="#444"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{base}" stroke="#444"/>"##,
        W - RIGHT
    );
    for b in &bars {
        let (x0, x1) = (x(b.from_us), x(b.to_us));
        let top_y = y(b.count as f64);
        let _ = write!(
            svg,
            r##"<rect class="bar" data-count="{}" x="{x0:.1}" y="{top_y:.1}" width="{:.1}" height="{:.1}" fill="#3b6fb6"><title>{} – {}: {}</title></rect>"##,
            b.count,
            (x1 - x0 - 1.0).max(1.0),
            (base - top_y).max(0.5),
            ms_label(b.from_us),
            ms_label(b.to_us),
            b.count
        );
    }
    // Ticks at 1-2-5 steps that fall inside.
    let mut tick = 1u64;
    while tick <= bars[bars.len() - 1].to_us {
        for m in [1, 2, 5] {
            let us = tick * m;
            if us >= bars[0].from_us.max(1) && us <= bars[bars.len() - 1].to_us {
                let tx = x(us);
                let _ = write!(
                    svg,
                    r##"<line x1="{tx:.1}" y1="{base}" x2="{tx:.1}" y2="{}" stroke="#444"/><text x="{tx:.1}" y="{}" font-size="11" text-anchor="middle">{}</text>"##,
                    base + 4.0,
                    base + 16.0,
                    ms_label(us)
                );
            }
        }
        tick *= 10;
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" font-size="12" text-anchor="middle">publish sent → received (log scale)</text><text x="{}" y="{}" font-size="11" text-anchor="end">{}</text><text x="{}" y="{}" font-size="11" text-anchor="end">0</text></svg>"#,
        (LEFT + W - RIGHT) / 2.0,
        H - 6.0,
        LEFT - 6.0,
        TOP + 10.0,
        top as u64,
        LEFT - 6.0,
        base
    );
    svg
}

/// Connections open (left axis) and deliveries a second (right axis) over the run.
fn timeline_svg(samples: &[Sample]) -> String {
    let mut svg = format!(
        r#"<svg id="timeline" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="connections and deliveries over time">"#
    );
    if samples.len() < 2 {
        svg.push_str(
            r#"<text x="380" y="130" text-anchor="middle">too short to chart</text></svg>"#,
        );
        return svg;
    }
    let end = samples[samples.len() - 1].t.max(0.001);
    let rates: Vec<f64> = samples
        .windows(2)
        .map(|w| (w[1].delivered - w[0].delivered) as f64 / (w[1].t - w[0].t).max(0.001))
        .collect();
    let open_top = samples.iter().map(|s| s.open).max().unwrap_or(1).max(1) as f64;
    let rate_top = rates.iter().copied().fold(1.0, f64::max);
    let x = |t: f64| LEFT + t / end * (W - LEFT - RIGHT);
    let y = |v: f64, top: f64| TOP + (1.0 - v / top) * (H - TOP - BOTTOM);
    let base = H - BOTTOM;
    let open: Vec<String> = samples
        .iter()
        .map(|s| format!("{:.1},{:.1}", x(s.t), y(s.open as f64, open_top)))
        .collect();
    let delivered: Vec<String> = samples
        .windows(2)
        .zip(&rates)
        .map(|(w, r)| format!("{:.1},{:.1}", x(w[1].t), y(*r, rate_top)))
        .collect();
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{base}" x2="{r}" y2="{base}" stroke="#444"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{base}" stroke="#2a7a3a"/><line x1="{r}" y1="{TOP}" x2="{r}" y2="{base}" stroke="#b6553b"/>"##,
        r = W - RIGHT
    );
    let _ = write!(
        svg,
        r##"<polyline class="open-line" fill="none" stroke="#2a7a3a" stroke-width="2" points="{}"/><polyline class="delivered-line" fill="none" stroke="#b6553b" stroke-width="1.5" points="{}"/>"##,
        open.join(" "),
        delivered.join(" ")
    );
    let _ = write!(
        svg,
        r##"<text x="{}" y="{}" font-size="11" text-anchor="end" fill="#2a7a3a">{}</text><text x="{}" y="{}" font-size="11" fill="#b6553b">{:.0}/s</text><text x="{LEFT}" y="{}" font-size="11" text-anchor="middle">0 s</text><text x="{}" y="{}" font-size="11" text-anchor="middle">{end:.1} s</text><text x="{}" y="{}" font-size="12" text-anchor="middle"><tspan fill="#2a7a3a">connections open</tspan> · <tspan fill="#b6553b">messages delivered a second</tspan></text></svg>"##,
        LEFT - 6.0,
        TOP + 10.0,
        open_top as u64,
        W - RIGHT + 6.0,
        TOP + 10.0,
        rate_top,
        base + 16.0,
        W - RIGHT,
        base + 16.0,
        (LEFT + W - RIGHT) / 2.0,
        H - 6.0
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_draws_one_bar_per_group_and_keeps_every_count() {
        let h = Histogram::default();
        for us in [500, 900, 1_000, 1_100, 5_000, 5_100, 80_000] {
            h.record_us(us);
        }
        let svg = histogram_svg(&h.buckets());
        let counts: u64 = svg
            .split("data-count=\"")
            .skip(1)
            .map(|s| s.split('"').next().unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(counts, 7);
        assert!(svg.contains("<title>"), "{svg}");
        assert!(svg.contains(">1.0 ms<") || svg.contains(">1 ms<"), "{svg}");
    }

    #[test]
    fn placeholders_are_filled_once() {
        let page = fill(
            "<h1>{{A}}</h1>{{B}}{{C}}",
            &[("A", "{{B}}".into()), ("B", "b".into())],
        );
        assert_eq!(page, "<h1>{{B}}</h1>b{{C}}");
    }

    #[test]
    fn the_page_escapes_what_it_quotes() {
        assert_eq!(
            escape(r#"<script>"a"&"#),
            "&lt;script&gt;&quot;a&quot;&amp;"
        );
    }
}
