//! Server-side fan-out. Invoked by the message function (a frame to deliver) and by
//! `wsctl publish` (data to store under the next serial, then deliver). A channel larger than
//! one invocation's budget is split: the rest is handed to an asynchronous invocation of this
//! function before this one starts posting.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{Ctx, Invoker};
use crate::fanout::{self, Report};
use crate::protocol::{self, ServerFrame};
use crate::store::Key;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FanoutJob {
    pub channel: String,
    /// The frame, already serialized, exactly as every subscriber receives it.
    pub frame: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<HashMap<String, String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PublishEvent {
    Fanout { fanout: FanoutJob },
    Publish { channel: String, data: Value, #[serde(default)] id: Option<String>, #[serde(default)] from: Option<String> },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PublishResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<u64>,
    #[serde(default)]
    pub duplicate: bool,
    #[serde(flatten)]
    pub report: Report,
    /// True when part of the channel was handed to another invocation.
    #[serde(default)]
    pub continued: bool,
}

pub async fn handle(ctx: &Ctx, event: Value) -> Result<PublishResult, String> {
    let event: PublishEvent = serde_json::from_value(event).map_err(|e| format!("bad publish event: {e}"))?;
    match event {
        PublishEvent::Fanout { fanout } => {
            let start = fanout.start.as_ref().map(fanout::key_from_json);
            let (report, continued) = deliver(ctx, &fanout.channel, &fanout.frame, start).await?;
            Ok(PublishResult { serial: None, duplicate: false, report, continued })
        }
        PublishEvent::Publish { channel, data, id, from } => {
            protocol::check_channel(&channel).and_then(|()| protocol::check_data(&data)).map_err(|(_, message)| message)?;
            let from = from.unwrap_or_else(|| "server".into());
            let (message, duplicate) = ctx.store.append(&channel, id.as_deref(), &from, &data).await.map_err(|e| e.to_string())?;
            let serial = Some(message.serial);
            if duplicate {
                return Ok(PublishResult { serial, duplicate, ..Default::default() });
            }
            let (report, continued) = deliver(ctx, &channel, &ServerFrame::Message(message).to_json(), None).await?;
            Ok(PublishResult { serial, duplicate, report, continued })
        }
    }
}

async fn deliver(ctx: &Ctx, channel: &str, frame: &str, start: Option<Key>) -> Result<(Report, bool), String> {
    let (targets, next) = fanout::collect(&ctx.store, channel, start, ctx.fanout_per_invocation).await.map_err(|e| e.to_string())?;
    let continued = next.is_some();
    if let Some(next) = next {
        hand_off(ctx, channel, frame, Some(&next)).await;
    }
    let (report, removed) = fanout::post_all(&ctx.store, &ctx.connections, targets, frame, ctx.fanout_concurrency).await;
    // A subscriber found gone never ran `$disconnect`: announce its leave as that would have.
    for (connection, present) in removed {
        for (channel, leave) in super::disconnect::leave_frames(&connection, present) {
            hand_off(ctx, &channel, &leave, None).await;
        }
    }
    tracing::info!(channel, delivered = report.delivered, gone = report.gone, failed = report.failed, continued, "fan-out");
    Ok((report, continued))
}

/// Asks the publish function to deliver `frame` to `channel`'s subscribers from `start`.
pub async fn hand_off(ctx: &Ctx, channel: &str, frame: &str, start: Option<&Key>) {
    if let Err(e) = fan_out_later(&ctx.publish, channel, frame, start).await {
        tracing::error!(channel, error = %e, "fan-out hand-off failed");
    }
}

/// One asynchronous invocation of the publish function that delivers `frame` to `channel`'s
/// subscribers from `start`.
pub async fn fan_out_later(publish: &Invoker, channel: &str, frame: &str, start: Option<&Key>) -> Result<(), String> {
    let job = FanoutJob { channel: channel.into(), frame: frame.into(), start: start.map(fanout::key_to_json) };
    publish.invoke_async(&json!({ "fanout": job })).await
}
