//! `wsctl history --channel C`: what a channel holds, read from the stack's history table as
//! the `history` action reads it (newest first page, or forward from `--since`), without a
//! token: for an operator asking whether a message was stored, and under which serial.

use std::fmt::Display;

use serde::Serialize;
use wsctl_functions::protocol::{Message, check_channel};

use crate::args::HistoryArgs;
use crate::aws::AwsArgs;
use crate::config::Config;
use crate::error::Error;
use crate::stack::Stack;

/// A page is not bound by a frame's size here, only by `--limit`: this much is plenty.
const MAX_BYTES: usize = 64 * 1024 * 1024;

pub async fn run(config: &Config, aws: &AwsArgs, args: &HistoryArgs) -> Result<History, Error> {
    check_channel(&args.channel).map_err(|(_, why)| Error::Usage {
        usage: format!(
            "--channel {:?}: {why}\nhint: the channel's name exactly as clients subscribe to it",
            args.channel
        ),
    })?;
    let stack = Stack::open(config, aws).await?;
    let rewind = args.since.is_none().then_some(args.limit);
    let page = stack
        .store()
        .history(&args.channel, args.since, rewind, args.limit, MAX_BYTES)
        .await
        .map_err(|e| Error::Io(e.to_string()))?;
    Ok(History {
        channel: args.channel.clone(),
        // Only a read forward from `--since` has a continuation.
        more: args.since.is_some() && page.more,
        messages: page.messages,
    })
}

/// `wsctl history`'s answer.
#[derive(Debug, Serialize)]
pub struct History {
    channel: String,
    /// Oldest first.
    messages: Vec<Message>,
    /// More messages follow the last one: run again with `--since` its serial.
    more: bool,
}

impl Display for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Some(last) = self.messages.last() else {
            return write!(f, "{}: no messages", self.channel);
        };
        let lines: Vec<String> = self
            .messages
            .iter()
            .map(|m| {
                let at = crate::local::events::iso8601(m.ts);
                format!("#{:<6} {at} {:<20} {}", m.serial, m.from, m.data)
            })
            .collect();
        f.write_str(&lines.join("\n"))?;
        if self.more {
            write!(
                f,
                "\n(more after #{}: wsctl history --channel {} --since {})",
                last.serial, self.channel, last.serial
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_are_pinned() {
        let history = History {
            channel: "room-1".into(),
            messages: vec![Message {
                channel: "room-1".into(),
                serial: 7,
                id: "m7".into(),
                from: "alice".into(),
                data: serde_json::json!({"text": "hi"}),
                ts: 1_700_000_000_000,
            }],
            more: true,
        };
        let (json, text) = crate::output::forms(&history);
        assert_eq!(
            json,
            r#"{
  "channel": "room-1",
  "messages": [
    {
      "channel": "room-1",
      "data": {
        "text": "hi"
      },
      "from": "alice",
      "id": "m7",
      "serial": 7,
      "ts": 1700000000000
    }
  ],
  "more": true
}"#
        );
        assert_eq!(
            text,
            "#7      2023-11-14T22:13:20.000Z alice                {\"text\":\"hi\"}\n(more after #7: wsctl history --channel room-1 --since 7)"
        );
        let empty = History {
            channel: "room-1".into(),
            messages: vec![],
            more: false,
        };
        assert_eq!(crate::output::forms(&empty).1, "room-1: no messages");
    }
}
