//! `wsctl tail`: a live stream of what happens on the stack until Ctrl-C: connects and
//! disconnects, subscribes and unsubscribes (read from the stack's tables every `--interval`),
//! and with `--messages` the messages of the chosen channels (a WebSocket client subscribed to
//! them). The same on AWS and on `wsctl dev`: it only uses the tables and the WebSocket API.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use serde_json::{Value, json};
use wsctl_functions::layout::SUBSCRIPTIONS;

use crate::args::TailArgs;
use crate::aws::{AwsArgs, CallContext};
use crate::config::Config;
use crate::error::Error;
use crate::interrupt::CtrlC;
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
    let out = *printer;
    let emit = move |event: Event| out.line(&event);
    // Subscribed before the baseline is read: tail's own subscriptions are not events. Its
    // client resumes each channel after a drop, so no message is missed or repeated; it lives
    // as long as this function.
    let client = match args.messages {
        true => Some(stack.client("wsctl-tail", None, None).await?),
        false => None,
    };
    if let Some(client) = &client {
        for channel in &args.channel {
            let subscribed = tokio::time::timeout(
                std::time::Duration::from_secs(30),
                client.channel(channel).subscribe(),
            )
            .await
            .map_err(|_| {
                Error::Io("the stage did not confirm tail's subscriptions within 30 s".into())
            })?;
            let mut messages =
                subscribed.map_err(|e| Error::Io(format!("subscribing to {channel}: {e}")))?;
            tokio::spawn(async move {
                while let Some(m) = messages.recv().await {
                    emit(Event::Message {
                        channel: json!(m.channel),
                        serial: json!(m.serial),
                        from: json!(m.from),
                        data: m.data,
                        ts: json!(m.ts),
                    });
                }
            });
        }
        let mut events = client.events();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if let wsctl_client::Event::State(s) = event
                    && s.state == wsctl_client::State::Disconnected
                {
                    out.note(format!(
                        "tail's connection dropped ({}): resuming",
                        s.reason.unwrap_or_default()
                    ));
                }
            }
        });
    }
    let mut stop = CtrlC::listen();
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
            _ = stop.pressed() => return Ok(()),
        }
        let (conns, subs) = tokio::select! {
            read = snapshot(&store, &channels) => read?,
            _ = stop.pressed() => return Ok(()),
        };
        for (id, user) in conns.iter().filter(|(id, _)| !old_conns.contains_key(*id)) {
            emit(Event::Connect {
                connection: id.clone(),
                user: user.clone(),
            });
        }
        for (id, user) in old_conns.iter().filter(|(id, _)| !conns.contains_key(*id)) {
            emit(Event::Disconnect {
                connection: id.clone(),
                user: user.clone(),
            });
        }
        for (channel, id) in subs.difference(&old_subs) {
            emit(Event::Subscribe {
                connection: id.clone(),
                channel: channel.clone(),
            });
        }
        for (channel, id) in old_subs.difference(&subs) {
            emit(Event::Unsubscribe {
                connection: id.clone(),
                channel: channel.clone(),
            });
        }
        (old_conns, old_subs) = (conns, subs);
    }
}

/// One line of `wsctl tail`.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Event {
    Connect {
        connection: String,
        user: String,
    },
    Disconnect {
        connection: String,
        user: String,
    },
    Subscribe {
        connection: String,
        channel: String,
    },
    Unsubscribe {
        connection: String,
        channel: String,
    },
    /// A message frame as the stage sent it to tail's own subscription.
    Message {
        channel: Value,
        serial: Value,
        from: Value,
        data: Value,
        ts: Value,
    },
}

impl Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = |v: &Value| {
            v.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string())
        };
        match self {
            Event::Message {
                channel,
                serial,
                from,
                data,
                ..
            } => write!(
                f,
                "message     {} #{} from {}: {data}",
                text(channel),
                text(serial),
                text(from)
            ),
            Event::Subscribe {
                connection,
                channel,
            } => write!(f, "subscribe   {connection} {channel}"),
            Event::Unsubscribe {
                connection,
                channel,
            } => write!(f, "unsubscribe {connection} {channel}"),
            Event::Connect { connection, user } => write!(f, "connect     {connection} {user}"),
            Event::Disconnect { connection, user } => {
                write!(f, "disconnect  {connection} {user}")
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_are_pinned() {
        let connect = Event::Connect {
            connection: "abc=".into(),
            user: "alice".into(),
        };
        assert_eq!(
            crate::output::line_forms(&connect),
            (
                r#"{"connection":"abc=","event":"connect","user":"alice"}"#.into(),
                "connect     abc= alice".into()
            )
        );
        let message = Event::Message {
            channel: json!("room-1"),
            serial: json!(7),
            from: json!("alice"),
            data: json!({"text": "hi"}),
            ts: json!(1_700_000_000_000u64),
        };
        assert_eq!(
            crate::output::line_forms(&message),
            (
                r#"{"channel":"room-1","data":{"text":"hi"},"event":"message","from":"alice","serial":7,"ts":1700000000000}"#.into(),
                r#"message     room-1 #7 from alice: {"text":"hi"}"#.into()
            )
        );
    }
}
