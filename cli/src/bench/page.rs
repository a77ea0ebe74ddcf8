//! `--report FILE`: the report as one self-contained HTML page, its charts drawn as inline SVG.

use std::fmt::Write as _;

use super::histogram::Bucket;
use super::report::{Report, Sample};

impl Report {
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
    use crate::bench::histogram::Histogram;

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
