//! `wsctl publish`: to a channel through the stack's publish function (stored under the next
//! serial, sent to every subscriber; prints the serial and the delivery counts), or to one
//! connection straight through `@connections`. `--count`/`--rate` make simple load.

use std::io::Read;
use std::time::{Duration, Instant};

use aws_sdk_apigatewaymanagement as mgmt;
use serde_json::{Value, json};

use crate::args::PublishArgs;
use crate::aws::AwsArgs;
use crate::config::Config;
use crate::error::Error;
use crate::output::Printer;
use crate::stack::{PublishFunction, Stack};

pub async fn run(
    config: &Config,
    aws: &AwsArgs,
    args: &PublishArgs,
    printer: &Printer,
) -> Result<(), Error> {
    let data = data(args)?;
    let stack = Stack::open(config, aws).await?;
    let started = Instant::now();
    let interval = args
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(1.0 / r));
    let mut results = Vec::new();
    let function = stack.publish_function();
    let connections = match &args.connection {
        Some(_) => Some(stack.connections().await?),
        None => None,
    };
    for n in 0..args.count {
        if let Some(every) = interval {
            tokio::time::sleep_until((started + every * n).into()).await;
        }
        let result = match (&args.channel, &args.connection, &connections) {
            (Some(channel), _, _) => {
                let id = args.id.as_ref().map(|id| {
                    if args.count > 1 {
                        format!("{id}-{}", n + 1)
                    } else {
                        id.clone()
                    }
                });
                to_channel(&function, channel, &data, id).await?
            }
            (None, Some(id), Some(api)) => to_connection(api, id, &data).await?,
            _ => unreachable!("clap requires --channel or --connection"),
        };
        if !printer.json() {
            printer.result(describe(&result));
        }
        results.push(result);
    }
    if printer.json() {
        let seconds = started.elapsed().as_secs_f64();
        match results.as_slice() {
            [one] => printer.result_json(one),
            many => printer
                .result_json(&json!({"published": many, "count": many.len(), "seconds": seconds})),
        }
    }
    Ok(())
}

/// `--data` (JSON, or else text), `--file`, or stdin.
fn data(args: &PublishArgs) -> Result<Value, Error> {
    let raw = match (&args.data, &args.file) {
        (Some(d), _) => d.clone(),
        (None, Some(path)) => std::fs::read_to_string(path).map_err(|e| Error::Usage {
            usage: format!("cannot read --file {}: {e}", path.display()),
        })?,
        (None, None) => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| Error::Usage {
                    usage: format!("cannot read the data from stdin: {e}"),
                })?;
            s
        }
    };
    let raw = raw.trim_end_matches('\n');
    Ok(serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string())))
}

async fn to_channel(
    function: &PublishFunction,
    channel: &str,
    data: &Value,
    id: Option<String>,
) -> Result<Value, Error> {
    let answer = function.publish(channel, data, id.as_deref()).await?;
    let mut result = json!({
        "channel": channel,
        "duplicate": answer.duplicate,
        "delivered": answer.report.delivered,
        "gone": answer.report.gone,
        "failed": answer.report.failed,
        "continued": answer.continued,
    });
    if let Some(serial) = answer.serial {
        result["serial"] = serial.into();
    }
    Ok(result)
}

async fn to_connection(api: &mgmt::Client, id: &str, data: &Value) -> Result<Value, Error> {
    let bytes = match data {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match api
        .post_to_connection()
        .connection_id(id)
        .data(mgmt::primitives::Blob::new(bytes))
        .send()
        .await
    {
        Ok(_) => Ok(json!({"connection": id, "delivered": 1})),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_gone_exception()) => {
            Ok(json!({"connection": id, "delivered": 0, "gone": 1}))
        }
        Err(e) => Err(Error::Aws(crate::aws::classify(e, "PostToConnection", id))),
    }
}

fn describe(r: &Value) -> String {
    let n = |k: &str| r.get(k).and_then(Value::as_u64).unwrap_or(0);
    match r.get("connection").and_then(Value::as_str) {
        Some(id) if n("gone") > 0 => format!("connection {id} is gone (410)"),
        Some(id) => format!("sent to connection {id}"),
        None if r.get("duplicate").and_then(Value::as_bool) == Some(true) => {
            format!(
                "{}: serial {} (duplicate id: already published, not delivered again)",
                r["channel"].as_str().unwrap_or_default(),
                n("serial")
            )
        }
        None => format!(
            "{}: serial {}; delivered {}, gone {}, failed {}{}",
            r["channel"].as_str().unwrap_or_default(),
            n("serial"),
            n("delivered"),
            n("gone"),
            n("failed"),
            if r.get("continued").and_then(Value::as_bool) == Some(true) {
                " (rest of the channel handed to further invocations)"
            } else {
                ""
            }
        ),
    }
}
