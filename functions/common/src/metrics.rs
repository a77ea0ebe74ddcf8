//! The functions' metrics in CloudWatch's embedded metric format: what an invocation counted is
//! written at its end as JSON log lines, which CloudWatch Logs turns into metrics of the
//! [`NAMESPACE`] namespace, so the hot path makes no `PutMetricData` call ("Specification:
//! Embedded metric format", CloudWatch User Guide). `wsctl metrics` reads them back.
//!
//! Every metric has the function's name as its `Function` dimension; a few also one more
//! dimension of few values (a frame's `Action`, a refusal's `Code` or `Reason`), each value a
//! metric CloudWatch bills as a custom metric.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;

use serde_json::{Map, Value, json};

pub const NAMESPACE: &str = "wsctl";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// A metric's second dimension: `(name, value)`. Values are the functions' own constants, never
/// a client's string: each value is a custom metric.
type Dimension = Option<(&'static str, &'static str)>;

#[derive(Default)]
struct Counts {
    values: BTreeMap<(Dimension, &'static str), (Unit, f64)>,
}

tokio::task_local! {
    static COUNTS: RefCell<Counts>;
}

/// Runs one invocation's handler, counting what it adds, and writes the counts to stdout as
/// EMF lines once it is done, as `function` (Lambda's function name).
pub async fn measured<F: Future>(function: &str, handler: F) -> F::Output {
    // Boxed: nested in the runtime's own futures, the handler's type would pass rustc's
    // query depth limit in a release build.
    let handler = Box::pin(handler);
    let (out, counts) = COUNTS
        .scope(RefCell::new(Counts::default()), async {
            let out = handler.await;
            let counts = COUNTS.with(|c| std::mem::take(&mut *c.borrow_mut()));
            (out, counts)
        })
        .await;
    for line in lines(function, &counts, now_ms()) {
        println!("{line}");
    }
    out
}

/// Adds `value` to metric `name` of this invocation; outside [`measured`] (a test, the CLI
/// calling a handler) it is not counted.
pub fn add(name: &'static str, value: f64) {
    put(None, name, Unit::Count, value);
}

/// As [`add`], under one more dimension.
pub fn add_by(name: &'static str, dimension: &'static str, of: &'static str, value: f64) {
    put(Some((dimension, of)), name, Unit::Count, value);
}

/// A duration, kept as the largest of the invocation's.
pub fn time(name: &'static str, ms: f64) {
    let _ = COUNTS.try_with(|c| {
        let mut c = c.borrow_mut();
        let v = c
            .values
            .entry((None, name))
            .or_insert((Unit::Milliseconds, 0.0));
        v.1 = v.1.max(ms);
    });
}

fn put(dimension: Dimension, name: &'static str, unit: Unit, value: f64) {
    let _ = COUNTS.try_with(|c| {
        c.borrow_mut()
            .values
            .entry((dimension, name))
            .or_insert((unit, 0.0))
            .1 += value;
    });
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// One EMF document per set of dimensions: a document gives each dimension one value.
fn lines(function: &str, counts: &Counts, at: u64) -> Vec<String> {
    let mut by: BTreeMap<&Dimension, Vec<(&str, Unit, f64)>> = BTreeMap::new();
    for ((dimension, name), (unit, value)) in &counts.values {
        by.entry(dimension).or_default().push((name, *unit, *value));
    }
    by.into_iter()
        .map(|(dimension, metrics)| {
            let mut doc = Map::new();
            let mut dimensions = vec!["Function"];
            doc.insert("Function".into(), json!(function));
            if let Some((name, value)) = dimension {
                dimensions.push(name);
                doc.insert((*name).into(), json!(value));
            }
            let defs: Vec<Value> = metrics
                .iter()
                .map(|(name, unit, _)| json!({"Name": name, "Unit": unit.name()}))
                .collect();
            for (name, _, value) in &metrics {
                doc.insert((*name).into(), json!(value));
            }
            doc.insert(
                "_aws".into(),
                json!({
                    "Timestamp": at,
                    "CloudWatchMetrics": [{
                        "Namespace": NAMESPACE,
                        "Dimensions": [dimensions],
                        "Metrics": defs,
                    }],
                }),
            );
            Value::Object(doc).to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_invocation_writes_one_document_per_dimension_in_cloudwatchs_format() {
        let counts = COUNTS
            .scope(RefCell::new(Counts::default()), async {
                add("Delivered", 3.0);
                add("Delivered", 2.0);
                add_by("Frames", "Action", "publish", 1.0);
                time("FanoutDuration", 40.0);
                time("FanoutDuration", 12.0);
                COUNTS.with(|c| std::mem::take(&mut *c.borrow_mut()))
            })
            .await;
        let docs: Vec<Value> = lines("chat-dev-message", &counts, 1_765_000_000_000)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(docs.len(), 2);
        let plain = &docs[0];
        assert_eq!(plain["Function"], "chat-dev-message");
        assert_eq!(plain["Delivered"], 5.0);
        assert_eq!(plain["FanoutDuration"], 40.0, "the longest");
        let directive = &plain["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(plain["_aws"]["Timestamp"], 1_765_000_000_000u64);
        assert_eq!(directive["Namespace"], "wsctl");
        assert_eq!(directive["Dimensions"], json!([["Function"]]));
        assert_eq!(
            directive["Metrics"],
            json!([{"Name": "Delivered", "Unit": "Count"}, {"Name": "FanoutDuration", "Unit": "Milliseconds"}])
        );
        let by_action = &docs[1];
        assert_eq!(by_action["Action"], "publish");
        assert_eq!(by_action["Frames"], 1.0);
        assert_eq!(
            by_action["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Function", "Action"]])
        );
    }

    #[test]
    fn outside_an_invocation_nothing_is_counted_and_nothing_fails() {
        add("Delivered", 1.0);
        add_by("Frames", "Action", "ping", 1.0);
        time("FanoutDuration", 1.0);
    }
}
