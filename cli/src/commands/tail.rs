//! `wsctl tail`: a live stream of what happens on the stack until Ctrl-C: connects and
//! disconnects, subscribes and unsubscribes (read from the stack's tables every `--interval`),
//! and with `--messages` the messages of the chosen channels (a WebSocket client subscribed to
//! them). The same on AWS and on `wsctl dev`: it only uses the tables and the WebSocket API.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use aws_sdk_dynamodb::types::AttributeValue;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use wsctl_functions::layout::SUBSCRIPTIONS;

use crate::args::TailArgs;
use crate::aws::{AwsArgs, CallContext};
use crate::config::Config;
use crate::error::Error;
use crate::output::Printer;
use crate::stack::{Stack, scan, subscriber_ids};

pub async fn run(
    config: &Config,
    aws: &AwsArgs,
    args: &TailArgs,
    printer: &Printer,
) -> Result<(), Error> {
    if args.messages && args.channel.is_empty() {
        return Err(Error::Usage { usage: "--messages needs at least one --channel\nhint: e.g. wsctl tail --channel room-1 --messages".into() });
    }
    let stack = Stack::open(config, aws).await?;
    let store = stack.store();
    let json = printer.json();
    let emit = move |event: Value| {
        let mut out = std::io::stdout().lock();
        let _ = if json {
            writeln!(out, "{event}")
        } else {
            let f = |k: &str| {
                event[k]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| event[k].to_string())
            };
            match event["event"].as_str() {
                Some("message") => writeln!(
                    out,
                    "message     {} #{} from {}: {}",
                    f("channel"),
                    f("serial"),
                    f("from"),
                    event["data"]
                ),
                Some(kind @ ("subscribe" | "unsubscribe")) => {
                    writeln!(out, "{kind:<11} {} {}", f("connection"), f("channel"))
                }
                Some(kind) => writeln!(out, "{kind:<11} {} {}", f("connection"), f("user")),
                None => Ok(()),
            }
        };
        let _ = out.flush();
    };
    if args.messages {
        let mut ws = stack.socket("wsctl-tail", None, None).await?;
        for channel in &args.channel {
            let frame = json!({"action": "subscribe", "channel": channel});
            ws.send(Message::text(frame.to_string()))
                .await
                .map_err(|e| Error::Io(format!("subscribing to {channel}: {e}")))?;
        }
        // Subscribed before the baseline is read: tail's own subscriptions are not events.
        let mut waiting: BTreeSet<&String> = args.channel.iter().collect();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        while !waiting.is_empty() {
            let frame = tokio::time::timeout_at(deadline, ws.next())
                .await
                .map_err(|_| {
                    Error::Io("the stage did not confirm tail's subscriptions within 30 s".into())
                })?;
            let Some(Ok(Message::Text(t))) = frame else {
                return Err(Error::Io(
                    "the stage closed tail's connection while it subscribed".into(),
                ));
            };
            let v: Value = serde_json::from_str(t.as_str()).unwrap_or_default();
            match v["type"].as_str() {
                Some("subscribed") => {
                    waiting.retain(|c| v["channel"] != c.as_str());
                }
                Some("error") => {
                    return Err(Error::Io(format!(
                        "subscribing to {}: {}",
                        v["channel"].as_str().unwrap_or_default(),
                        v["message"].as_str().unwrap_or_default()
                    )));
                }
                _ => {}
            }
        }
        tokio::spawn(async move {
            while let Some(Ok(frame)) = ws.next().await {
                if let Message::Text(t) = frame
                    && let Ok(v) = serde_json::from_str::<Value>(t.as_str())
                    && v["type"] == "message"
                {
                    emit(
                        json!({"event": "message", "channel": v["channel"], "serial": v["serial"], "from": v["from"], "data": v["data"], "ts": v["ts"]}),
                    );
                }
            }
        });
    }
    let channels: BTreeSet<String> = args.channel.iter().cloned().collect();
    // The first read is the baseline: only changes after it are printed, so the note that
    // says tail is running comes after it.
    let (mut old_conns, mut old_subs) = snapshot(&store, &channels).await?;
    printer.note(format!(
        "tailing {}/{} (every {} ms); Ctrl-C stops",
        config.stack,
        config.stage,
        args.interval.as_millis()
    ));
    let mut tick = tokio::time::interval(args.interval);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        let (conns, subs) = snapshot(&store, &channels).await?;
        for (id, user) in conns.iter().filter(|(id, _)| !old_conns.contains_key(*id)) {
            emit(json!({"event": "connect", "connection": id, "user": user}));
        }
        for (id, user) in old_conns.iter().filter(|(id, _)| !conns.contains_key(*id)) {
            emit(json!({"event": "disconnect", "connection": id, "user": user}));
        }
        for (channel, id) in subs.difference(&old_subs) {
            emit(json!({"event": "subscribe", "connection": id, "channel": channel}));
        }
        for (channel, id) in old_subs.difference(&subs) {
            emit(json!({"event": "unsubscribe", "connection": id, "channel": channel}));
        }
        (old_conns, old_subs) = (conns, subs);
    }
}

async fn snapshot(
    store: &wsctl_functions::store::Store,
    channels: &BTreeSet<String>,
) -> Result<Snapshot, Error> {
    let conns = scan(store)
        .await?
        .into_iter()
        .map(|r| (r.id, r.user))
        .collect();
    Ok((conns, subscriptions(store, channels).await?))
}

/// Connection id → user, and `(channel, connection)` pairs, as last read.
type Snapshot = (BTreeMap<String, String>, BTreeSet<(String, String)>);

/// `(channel, connection)` pairs: of the chosen channels, or of all of them.
async fn subscriptions(
    store: &wsctl_functions::store::Store,
    channels: &BTreeSet<String>,
) -> Result<BTreeSet<(String, String)>, Error> {
    let mut pairs = BTreeSet::new();
    if !channels.is_empty() {
        for channel in channels {
            let ids = subscriber_ids(store, channel).await?;
            pairs.extend(ids.into_iter().map(|id| (channel.clone(), id)));
        }
        return Ok(pairs);
    }
    let table = &store.tables.subscriptions;
    let mut start = None;
    loop {
        let page = store
            .db
            .scan()
            .table_name(table)
            .projection_expression("#ch, #co")
            .expression_attribute_names("#ch", SUBSCRIPTIONS.partition_key.name)
            .expression_attribute_names("#co", SUBSCRIPTIONS.sort_key_name())
            .set_exclusive_start_key(start)
            .send()
            .await
            .ctx("Scan", table)?;
        for item in page.items.unwrap_or_default() {
            if let (Some(AttributeValue::S(c)), Some(AttributeValue::S(id))) = (
                item.get(SUBSCRIPTIONS.partition_key.name),
                item.get(SUBSCRIPTIONS.sort_key_name()),
            ) {
                pairs.insert((c.clone(), id.clone()));
            }
        }
        start = page.last_evaluated_key;
        if start.is_none() {
            return Ok(pairs);
        }
    }
}
