//! The gateway's and the runtime's own metrics, written into the emulator's CloudWatch as API
//! Gateway and Lambda write theirs (`AWS/ApiGateway` `ConnectCount` and `MessageCount` by
//! `ApiId` and `Stage`; `AWS/Lambda` `Invocations`, `Errors` and the longest `Duration` by
//! `FunctionName`), so `wsctl metrics` reads them with `GetMetricData` as it does on AWS.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use tokio::sync::watch;

use super::meter::{Meter, Report};

/// How often the counts are written: CloudWatch's own metrics arrive each minute; sooner here
/// so a test reads them without waiting.
const EVERY: Duration = Duration::from_secs(5);

/// Writes `meter`'s counts every [`EVERY`] until `stop`, and once more then.
pub fn start(
    client: Client,
    meter: Arc<Meter>,
    api_id: String,
    stage: String,
    mut stop: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let mut said = false;
        loop {
            let stopping = tokio::select! {
                _ = tokio::time::sleep(EVERY) => false,
                _ = stop.changed() => true,
            };
            let report = meter.take_report();
            for (namespace, data) in datums(&report, &api_id, &stage) {
                let sent = client
                    .put_metric_data()
                    .namespace(namespace)
                    .set_metric_data(Some(data))
                    .send()
                    .await;
                if let Err(e) = sent
                    && !std::mem::replace(&mut said, true)
                {
                    eprintln!(
                        "{:>12} | the emulator's CloudWatch refused the gateway's metrics: {}",
                        "metrics",
                        aws_sdk_cloudwatch::error::DisplayErrorContext(&e)
                    );
                }
            }
            if stopping || *stop.borrow() {
                return;
            }
        }
    });
}

/// The report as metric data, by namespace; nothing for what did not happen.
fn datums(report: &Report, api_id: &str, stage: &str) -> Vec<(&'static str, Vec<MetricDatum>)> {
    let datum = |name: &str, dimensions: &[(&str, &str)], value: f64, unit: StandardUnit| {
        MetricDatum::builder()
            .metric_name(name)
            .set_dimensions(Some(
                dimensions
                    .iter()
                    .map(|(k, v)| Dimension::builder().name(*k).value(*v).build())
                    .collect(),
            ))
            .value(value)
            .unit(unit)
            .timestamp(aws_smithy_types::DateTime::from_millis(
                super::events::epoch_ms() as i64,
            ))
            .build()
    };
    let stage_of = [("ApiId", api_id), ("Stage", stage)];
    let mut gateway = Vec::new();
    if report.connects > 0 {
        gateway.push(datum(
            "ConnectCount",
            &stage_of,
            report.connects as f64,
            StandardUnit::Count,
        ));
    }
    if report.messages > 0 {
        gateway.push(datum(
            "MessageCount",
            &stage_of,
            report.messages as f64,
            StandardUnit::Count,
        ));
    }
    let mut lambda = Vec::new();
    for (function, i) in &report.functions {
        let of = [("FunctionName", function.as_str())];
        if i.count > 0 {
            lambda.push(datum(
                "Invocations",
                &of,
                i.count as f64,
                StandardUnit::Count,
            ));
            lambda.push(datum(
                "Duration",
                &of,
                i.longest_ms,
                StandardUnit::Milliseconds,
            ));
        }
        if i.errors > 0 {
            lambda.push(datum("Errors", &of, i.errors as f64, StandardUnit::Count));
        }
    }
    [("AWS/ApiGateway", gateway), ("AWS/Lambda", lambda)]
        .into_iter()
        .filter(|(_, d)| !d.is_empty())
        .collect()
}
