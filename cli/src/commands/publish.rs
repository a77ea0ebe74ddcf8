//! `wsctl publish`: to a channel through the stack's publish function (stored under the next
//! serial, sent to every subscriber; prints the serial and the delivery counts), or to one
//! connection straight through `@connections`. `--count`/`--rate` make simple load.

use std::fmt::Display;
use std::io::Read;
use std::time::{Duration, Instant};

use aws_sdk_apigatewaymanagement as mgmt;
use serde::{Serialize, Serializer};
use serde_json::{Value, json};
use wsctl_functions::handlers::publish::PublishResult;

use crate::args::PublishArgs;
use crate::aws::AwsArgs;
use crate::config::Config;
use crate::error::Error;
use crate::stack::{PublishFunction, Stack};

pub async fn run(config: &Config, aws: &AwsArgs, args: &PublishArgs) -> Result<Published, Error> {
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
        results.push(result);
    }
    Ok(Published {
        sent: results,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// `wsctl publish`'s answer: what one publish did, or with `--count`, each one's and the
/// time they took.
#[derive(Debug)]
pub struct Published {
    sent: Vec<Sent>,
    seconds: f64,
}

/// One publish: through the channel's publish function, or to one connection.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Sent {
    Channel {
        channel: String,
        #[serde(flatten)]
        answer: PublishResult,
    },
    Connection {
        connection: String,
        delivered: u64,
        /// 1 when `@connections` answered 410: the connection is gone.
        #[serde(skip_serializing_if = "Option::is_none")]
        gone: Option<u64>,
    },
}

impl Serialize for Published {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.sent.as_slice() {
            [one] => one.serialize(serializer),
            many => json!({"published": many, "count": many.len(), "seconds": self.seconds})
                .serialize(serializer),
        }
    }
}

impl Display for Published {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lines: Vec<String> = self.sent.iter().map(Sent::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

impl Display for Sent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sent::Connection {
                connection,
                gone: Some(_),
                ..
            } => write!(f, "connection {connection} is gone (410)"),
            Sent::Connection { connection, .. } => write!(f, "sent to connection {connection}"),
            Sent::Channel { channel, answer } if answer.duplicate => write!(
                f,
                "{channel}: serial {} (duplicate id: already published, not delivered again)",
                answer.serial.unwrap_or_default()
            ),
            Sent::Channel { channel, answer } => write!(
                f,
                "{channel}: serial {}; delivered {}, gone {}, failed {}{}",
                answer.serial.unwrap_or_default(),
                answer.report.delivered,
                answer.report.gone,
                answer.report.failed,
                if answer.continued {
                    " (rest of the channel handed to further invocations)"
                } else {
                    ""
                }
            ),
        }
    }
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
) -> Result<Sent, Error> {
    let answer = function.publish(channel, data, id.as_deref()).await?;
    Ok(Sent::Channel {
        channel: channel.to_string(),
        answer,
    })
}

async fn to_connection(api: &mgmt::Client, id: &str, data: &Value) -> Result<Sent, Error> {
    let bytes = match data {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let sent = |delivered, gone| Sent::Connection {
        connection: id.to_string(),
        delivered,
        gone,
    };
    match api
        .post_to_connection()
        .connection_id(id)
        .data(mgmt::primitives::Blob::new(bytes))
        .send()
        .await
    {
        Ok(_) => Ok(sent(1, None)),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_gone_exception()) => {
            Ok(sent(0, Some(1)))
        }
        Err(e) => Err(Error::Aws(crate::aws::classify(e, "PostToConnection", id))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsctl_functions::fanout::Report;

    #[test]
    fn both_forms_are_pinned() {
        let to_channel = Sent::Channel {
            channel: "room-1".into(),
            answer: PublishResult {
                serial: Some(7),
                duplicate: false,
                report: Report {
                    delivered: 2,
                    gone: 1,
                    failed: 0,
                },
                continued: false,
                ..Default::default()
            },
        };
        let one = Published {
            sent: vec![to_channel],
            seconds: 0.5,
        };
        assert_eq!(
            crate::output::forms(&one),
            (
                "{\n  \"channel\": \"room-1\",\n  \"continued\": false,\n  \"delivered\": 2,\n  \"duplicate\": false,\n  \"failed\": 0,\n  \"gone\": 1,\n  \"serial\": 7\n}".into(),
                "room-1: serial 7; delivered 2, gone 1, failed 0".into()
            )
        );
        let gone = |id: &str| Sent::Connection {
            connection: id.into(),
            delivered: 0,
            gone: Some(1),
        };
        let many = Published {
            sent: vec![gone("a="), gone("b=")],
            seconds: 0.5,
        };
        let (json, text) = crate::output::forms(&many);
        assert_eq!(
            json,
            "{\n  \"count\": 2,\n  \"published\": [\n    {\n      \"connection\": \"a=\",\n      \"delivered\": 0,\n      \"gone\": 1\n    },\n    {\n      \"connection\": \"b=\",\n      \"delivered\": 0,\n      \"gone\": 1\n    }\n  ],\n  \"seconds\": 0.5\n}"
        );
        assert_eq!(
            text,
            "connection a= is gone (410)\nconnection b= is gone (410)"
        );
    }
}
