//! `wsctl metrics`: the functions' own metrics (handshakes, connects, frames by action,
//! refusals by code, publishes, deliveries, gone and failed posts, throttled posts, hand-offs,
//! fan-out duration) over `--since`, in `--period` steps. They are read from the embedded
//! metric format documents the functions write into their logs (`wsctl_functions::metrics`),
//! summed exactly as CloudWatch sums them, so the same call serves AWS and `wsctl dev`.
//!
//! Beside them, the services' own metrics for the stack, read with `GetMetricData`: API
//! Gateway's for the stage (`ConnectCount`, `MessageCount`, `IntegrationError`,
//! `ExecutionError`, `ClientError`), Lambda's for each function (`Invocations`, `Errors`,
//! `Throttles`, the longest `Duration`, the peak `ConcurrentExecutions`) and DynamoDB's throttles
//! for each table. `wsctl dev` writes the same metrics of its gateway and runtime into the
//! emulator's CloudWatch, so this too is one code path.

use std::collections::BTreeMap;
use std::fmt::Display;

use aws_sdk_cloudwatch::types::{Dimension, Metric as CwMetric, MetricDataQuery, MetricStat};
use aws_smithy_types::DateTime;
use serde::Serialize;
use serde_json::Value;

use crate::args::MetricsArgs;
use crate::aws::{AwsArgs, CallContext};
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
    let api = crate::aws::apigw::find_api(&stack.clients, &stack.names).await?;
    let queries = service_metrics(config, api.as_deref());
    read_service_metrics(&stack, &queries, &mut sums, start, period, now).await?;
    Ok(sums.into_metrics(start, period, now))
}

/// One of a service's own metrics for the stack.
pub struct ServiceMetric {
    /// `api`, or the function's or table's key in wsctl.yaml.
    pub source: String,
    pub namespace: &'static str,
    pub name: &'static str,
    pub dimensions: Vec<(&'static str, String)>,
    /// `Sum`, or `Maximum` for what is read as its peak.
    pub stat: &'static str,
    pub unit: &'static str,
}

/// The services' own metrics of the stack: the stage's (once its API exists), each
/// function's and each table's.
pub fn service_metrics(config: &Config, api: Option<&str>) -> Vec<ServiceMetric> {
    let names = config.names();
    let mut out = Vec::new();
    if let Some(api) = api {
        for name in [
            "ConnectCount",
            "MessageCount",
            "IntegrationError",
            "ExecutionError",
            "ClientError",
        ] {
            out.push(ServiceMetric {
                source: "api".into(),
                namespace: "AWS/ApiGateway",
                name,
                dimensions: vec![("ApiId", api.to_string()), ("Stage", config.stage.clone())],
                stat: "Sum",
                unit: "Count",
            });
        }
    }
    for key in config.functions.keys() {
        for (name, stat, unit) in [
            ("Invocations", "Sum", "Count"),
            ("Errors", "Sum", "Count"),
            ("Throttles", "Sum", "Count"),
            ("Duration", "Maximum", "Milliseconds"),
            ("ConcurrentExecutions", "Maximum", "Count"),
        ] {
            out.push(ServiceMetric {
                source: key.clone(),
                namespace: "AWS/Lambda",
                name,
                dimensions: vec![("FunctionName", names.function(key))],
                stat,
                unit,
            });
        }
    }
    for key in config.tables.keys() {
        for name in ["ReadThrottleEvents", "WriteThrottleEvents"] {
            out.push(ServiceMetric {
                source: key.clone(),
                namespace: "AWS/DynamoDB",
                name,
                dimensions: vec![("TableName", names.table(key))],
                stat: "Sum",
                unit: "Count",
            });
        }
    }
    out
}

/// GetMetricData takes 500 queries a call ("GetMetricData", CloudWatch API Reference).
const QUERIES_PER_CALL: usize = 500;

async fn read_service_metrics(
    stack: &Stack<'_>,
    metrics: &[ServiceMetric],
    sums: &mut Sums,
    start: i64,
    period: i64,
    now: i64,
) -> Result<(), Error> {
    // A standard-resolution metric's period is a multiple of 60 seconds.
    let seconds = ((period / 1000).max(60) + 59) / 60 * 60;
    for chunk in metrics.chunks(QUERIES_PER_CALL) {
        let queries: Vec<MetricDataQuery> = chunk
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let dimensions = m
                    .dimensions
                    .iter()
                    .map(|(k, v)| Dimension::builder().name(*k).value(v).build())
                    .collect();
                MetricDataQuery::builder()
                    .id(format!("q{i}"))
                    .metric_stat(
                        MetricStat::builder()
                            .metric(
                                CwMetric::builder()
                                    .namespace(m.namespace)
                                    .metric_name(m.name)
                                    .set_dimensions(Some(dimensions))
                                    .build(),
                            )
                            .period(seconds as i32)
                            .stat(m.stat)
                            .build(),
                    )
                    .build()
            })
            .collect();
        let mut token = None;
        loop {
            let page = stack
                .clients
                .cloudwatch
                .get_metric_data()
                .set_metric_data_queries(Some(queries.clone()))
                .start_time(DateTime::from_millis(start))
                .end_time(DateTime::from_millis(now))
                .set_next_token(token.take())
                .send()
                .await
                .ctx(
                    "GetMetricData",
                    format!("{} metrics of the stack", chunk.len()),
                )?;
            for result in page.metric_data_results.unwrap_or_default() {
                let Some(i) = result
                    .id
                    .as_deref()
                    .and_then(|id| id.strip_prefix('q'))
                    .and_then(|i| i.parse::<usize>().ok())
                else {
                    continue;
                };
                let Some(m) = chunk.get(i) else { continue };
                let times = result.timestamps.unwrap_or_default();
                let values = result.values.unwrap_or_default();
                for (at, value) in times.iter().zip(values) {
                    let at = at.to_millis().unwrap_or(start);
                    sums.add_point(
                        Key {
                            name: format!("{}:{}", short(m.namespace), m.name),
                            function: m.source.clone(),
                            dimensions: BTreeMap::new(),
                        },
                        m.unit,
                        m.stat == "Maximum",
                        (at - start).max(0) / period,
                        value,
                    );
                }
            }
            token = page.next_token;
            if token.is_none() {
                break;
            }
        }
    }
    Ok(())
}

/// `AWS/Lambda` → `Lambda`.
fn short(namespace: &str) -> &str {
    namespace.strip_prefix("AWS/").unwrap_or(namespace)
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
    /// Read as its peak: no total over the range means anything.
    peak: bool,
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
                let unit = metric["Unit"].as_str().unwrap_or("None");
                for v in values {
                    let key = Key {
                        name: name.to_string(),
                        function: function.to_string(),
                        dimensions: dimensions.clone(),
                    };
                    self.add_point(key, unit, unit == "Milliseconds", index, v);
                }
            }
        }
    }

    /// Adds one value a metric had in period `index`; a series read as its `peak` has no total.
    fn add_point(&mut self, key: Key, unit: &str, peak: bool, index: i64, value: f64) {
        let series = self.series.entry(key).or_insert_with(|| Series {
            unit: unit.to_string(),
            peak,
            points: BTreeMap::new(),
        });
        let point = series.points.entry(index).or_insert((0.0, f64::MIN, 0));
        point.0 += value;
        point.1 = point.1.max(value);
        point.2 += 1;
    }

    fn into_metrics(self, start: i64, period: i64, end: i64) -> Metrics {
        let metrics = self
            .series
            .into_iter()
            .map(|(key, series)| {
                let durations = series.peak;
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
    fn the_services_metrics_name_the_stage_each_function_and_each_table() {
        let config = Config::parse(
            std::path::Path::new("wsctl.yaml"),
            include_str!("../../../templates/wsctl.yaml"),
        )
        .unwrap();
        let none = service_metrics(&config, None);
        assert!(none.iter().all(|m| m.namespace != "AWS/ApiGateway"));
        let all = service_metrics(&config, Some("a1b2c3d4e5"));
        assert_eq!(
            all.len(),
            5 + 5 * config.functions.len() + 2 * config.tables.len()
        );
        let connects = &all[0];
        assert_eq!(
            (connects.name, connects.dimensions.clone()),
            (
                "ConnectCount",
                vec![
                    ("ApiId", "a1b2c3d4e5".to_string()),
                    ("Stage", config.stage.clone())
                ]
            )
        );
        assert!(
            all.iter()
                .filter(|m| m.namespace == "AWS/Lambda")
                .all(|m| m.dimensions[0].1.starts_with(&config.names().prefix()))
        );
    }

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
