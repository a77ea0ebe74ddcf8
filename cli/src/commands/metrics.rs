//! `wsctl metrics`: the functions' own metrics (handshakes, connects, frames by action,
//! refusals by code, publishes, deliveries, gone and failed posts, throttled posts, hand-offs,
//! fan-out duration) over `--since`, in `--period` steps. They are read from the embedded
//! metric format documents the functions write into their logs (`wsctl_functions::metrics`),
//! summed exactly as CloudWatch sums them, so the same call serves AWS and `wsctl dev`.

use std::collections::BTreeMap;
use std::fmt::Display;

use serde::Serialize;
use serde_json::Value;

use crate::args::MetricsArgs;
use crate::aws::AwsArgs;
use crate::config::Config;
use crate::error::Error;
use crate::local::events::epoch_ms;
use crate::stack::Stack;
use crate::stack::logs::{Cursor, text};

/// The term every embedded metric document carries, for `FilterLogEvents` to select them.
const PATTERN: &str = "\"CloudWatchMetrics\"";

pub async fn run(config: &Config, aws: &AwsArgs, args: &MetricsArgs) -> Result<Metrics, Error> {
    let stack = Stack::open(config, aws).await?;
    let now = epoch_ms() as i64;
    let period = args.period.as_millis().max(1) as i64;
    // Periods start on multiples of the period, as CloudWatch's do.
    let start = (now - args.since.as_millis() as i64) / period * period;
    let mut sums = Sums::default();
    for key in config.functions.keys() {
        let group = stack.names.log_group(key);
        let mut cursor = Cursor::new(&group, key, Some(PATTERN), start, Some(now));
        while let Some(event) = cursor.next(&stack.clients.logs).await? {
            sums.add_document(key, text(&event), start, period);
        }
    }
    Ok(sums.into_metrics(start, period, now))
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    name: String,
    function: String,
    dimensions: BTreeMap<String, String>,
}

#[derive(Default)]
struct Sums {
    series: BTreeMap<Key, Series>,
}

struct Series {
    unit: String,
    /// Period index → (sum, largest, samples).
    points: BTreeMap<i64, (f64, f64, u64)>,
}

impl Sums {
    /// Adds one log line's metrics, if it is an embedded metric document.
    fn add_document(&mut self, function: &str, line: &str, start: i64, period: i64) {
        let Ok(Value::Object(doc)) = serde_json::from_str::<Value>(line) else {
            return;
        };
        let Some(aws) = doc.get("_aws") else {
            return;
        };
        let at = aws["Timestamp"].as_i64().unwrap_or(start);
        let index = (at - start).max(0) / period;
        let directives = aws["CloudWatchMetrics"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for directive in directives {
            let names: Vec<&str> = directive["Dimensions"][0]
                .as_array()
                .map(|d| d.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let dimensions: BTreeMap<String, String> = names
                .iter()
                .filter(|n| **n != "Function")
                .filter_map(|n| Some((n.to_string(), doc.get(*n)?.as_str()?.to_string())))
                .collect();
            for metric in directive["Metrics"].as_array().into_iter().flatten() {
                let Some(name) = metric["Name"].as_str() else {
                    continue;
                };
                // A value is a number or, in EMF, a list of them.
                let values: Vec<f64> = match doc.get(name) {
                    Some(Value::Array(a)) => a.iter().filter_map(Value::as_f64).collect(),
                    Some(v) => v.as_f64().into_iter().collect(),
                    None => continue,
                };
                let key = Key {
                    name: name.to_string(),
                    function: function.to_string(),
                    dimensions: dimensions.clone(),
                };
                let series = self.series.entry(key).or_insert_with(|| Series {
                    unit: metric["Unit"].as_str().unwrap_or("None").to_string(),
                    points: BTreeMap::new(),
                });
                let point = series.points.entry(index).or_insert((0.0, f64::MIN, 0));
                for v in values {
                    point.0 += v;
                    point.1 = point.1.max(v);
                    point.2 += 1;
                }
            }
        }
    }

    fn into_metrics(self, start: i64, period: i64, end: i64) -> Metrics {
        let metrics = self
            .series
            .into_iter()
            .map(|(key, series)| {
                let durations = series.unit == "Milliseconds";
                let points: Vec<Point> = series
                    .points
                    .iter()
                    .map(|(i, (sum, max, samples))| Point {
                        start: crate::local::events::iso8601((start + i * period) as u64),
                        sum: *sum,
                        max: *max,
                        samples: *samples,
                    })
                    .collect();
                Metric {
                    name: key.name,
                    function: key.function,
                    dimensions: key.dimensions,
                    total: match durations {
                        true => None,
                        false => Some(points.iter().map(|p| p.sum).sum()),
                    },
                    max: points
                        .iter()
                        .map(|p| p.max)
                        .fold(None, |m, v| Some(m.map_or(v, |m: f64| m.max(v)))),
                    unit: series.unit,
                    points,
                }
            })
            .collect();
        Metrics {
            from: crate::local::events::iso8601(start as u64),
            to: crate::local::events::iso8601(end as u64),
            period_seconds: (period / 1000) as u64,
            metrics,
        }
    }
}

/// `wsctl metrics`' answer.
#[derive(Debug, Serialize)]
pub struct Metrics {
    from: String,
    to: String,
    period_seconds: u64,
    metrics: Vec<Metric>,
}

#[derive(Debug, Serialize)]
pub struct Metric {
    name: String,
    /// The function's key in wsctl.yaml.
    function: String,
    /// The metric's other dimensions (`Action`, `Code`, `Reason`).
    dimensions: BTreeMap<String, String>,
    unit: String,
    /// The sum over the whole range; `null` for durations, where only `max` means something.
    total: Option<f64>,
    max: Option<f64>,
    /// The periods with data points, oldest first.
    points: Vec<Point>,
}

#[derive(Debug, Serialize)]
pub struct Point {
    start: String,
    sum: f64,
    max: f64,
    samples: u64,
}

impl Display for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "from {} to {}, {} s periods",
            self.from, self.to, self.period_seconds
        )?;
        if self.metrics.is_empty() {
            return write!(f, "no metrics in this range");
        }
        let rows: Vec<(String, String, String)> = self
            .metrics
            .iter()
            .map(|m| {
                let dims: Vec<String> = m
                    .dimensions
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                let name = match dims.is_empty() {
                    true => m.name.clone(),
                    false => format!("{} {}", m.name, dims.join(" ")),
                };
                let busiest = m.points.iter().map(|p| p.sum).fold(0.0, f64::max);
                let value = match (m.total, m.max) {
                    (Some(total), _) => format!("{total:>10}  (busiest period {busiest})"),
                    (None, Some(max)) => format!("{:>10}  (longest)", format!("{max:.0} ms")),
                    _ => String::new(),
                };
                (m.function.clone(), name, value)
            })
            .collect();
        let width = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
        let lines: Vec<String> = rows
            .iter()
            .map(|(function, name, value)| format!("{function:>10}  {name:<width$}  {value}"))
            .collect();
        write!(f, "{}", lines.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_sum_by_metric_function_dimension_and_period() {
        let mut sums = Sums::default();
        let doc = |at: i64, action: &str, frames: f64| {
            format!(
                r#"{{"Action":"{action}","Frames":{frames},"Function":"chat-dev-message","_aws":{{"CloudWatchMetrics":[{{"Dimensions":[["Function","Action"]],"Metrics":[{{"Name":"Frames","Unit":"Count"}}],"Namespace":"wsctl"}}],"Timestamp":{at}}}}}"#
            )
        };
        sums.add_document("message", &doc(60_500, "publish", 1.0), 60_000, 60_000);
        sums.add_document("message", &doc(61_000, "publish", 2.0), 60_000, 60_000);
        sums.add_document("message", &doc(125_000, "publish", 1.0), 60_000, 60_000);
        sums.add_document("message", &doc(61_000, "ping", 1.0), 60_000, 60_000);
        sums.add_document("message", "START RequestId: x", 60_000, 60_000);
        sums.add_document(
            "publish",
            r#"{"Function":"f","FanoutDuration":[40,12],"_aws":{"CloudWatchMetrics":[{"Dimensions":[["Function"]],"Metrics":[{"Name":"FanoutDuration","Unit":"Milliseconds"}],"Namespace":"wsctl"}],"Timestamp":61000}}"#,
            60_000,
            60_000,
        );
        let m = sums.into_metrics(60_000, 60_000, 180_000);
        assert_eq!(m.period_seconds, 60);
        assert_eq!(m.metrics.len(), 3);
        let publish = m
            .metrics
            .iter()
            .find(|x| x.dimensions.get("Action").map(String::as_str) == Some("publish"))
            .unwrap();
        assert_eq!(publish.total, Some(4.0));
        assert_eq!(publish.points.len(), 2);
        assert_eq!(publish.points[0].sum, 3.0);
        assert_eq!(publish.points[1].start, "1970-01-01T00:02:00.000Z");
        let fanout = m
            .metrics
            .iter()
            .find(|x| x.name == "FanoutDuration")
            .unwrap();
        assert_eq!(fanout.total, None, "durations are not summed");
        assert_eq!(fanout.max, Some(40.0));
        let text = m.to_string();
        assert!(
            text.contains("Frames Action=publish           4  (busiest period 3)"),
            "{text}"
        );
        assert!(text.contains("FanoutDuration  "), "{text}");
        assert!(text.contains("40 ms  (longest)"), "{text}");
    }
}
