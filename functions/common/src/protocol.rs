//! The client protocol: JSON frames routed by `action` (client → server) and tagged by `type`
//! (server → client). Documented with an example session in `functions/PROTOCOL.md`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Largest `data` a publish may carry, leaving room in API Gateway's 128 KB frame for the envelope.
pub const MAX_DATA_BYTES: usize = 120 * 1024;
pub const MAX_CHANNEL_LEN: usize = 128;
pub const MAX_HISTORY_LIMIT: u32 = 1000;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase", deny_unknown_fields)]
pub enum ClientFrame {
    Subscribe {
        channel: String,
        #[serde(default)]
        since: Option<u64>,
        #[serde(default)]
        rewind: Option<u32>,
    },
    Unsubscribe {
        channel: String,
    },
    Publish {
        channel: String,
        data: Value,
        #[serde(default)]
        id: Option<String>,
    },
    History {
        channel: String,
        #[serde(default)]
        since: Option<u64>,
        #[serde(default)]
        limit: Option<u32>,
    },
    Presence {
        channel: String,
        /// `enter: {..member data..}` or `enter: true`.
        #[serde(default)]
        enter: Option<Value>,
        #[serde(default)]
        leave: Option<bool>,
    },
    Ping {
        #[serde(default)]
        id: Option<Value>,
    },
}

impl ClientFrame {
    pub fn action(&self) -> &'static str {
        match self {
            ClientFrame::Subscribe { .. } => "subscribe",
            ClientFrame::Unsubscribe { .. } => "unsubscribe",
            ClientFrame::Publish { .. } => "publish",
            ClientFrame::History { .. } => "history",
            ClientFrame::Presence { .. } => "presence",
            ClientFrame::Ping { .. } => "ping",
        }
    }

    pub fn channel(&self) -> Option<&str> {
        match self {
            ClientFrame::Subscribe { channel, .. }
            | ClientFrame::Unsubscribe { channel }
            | ClientFrame::Publish { channel, .. }
            | ClientFrame::History { channel, .. }
            | ClientFrame::Presence { channel, .. } => Some(channel),
            ClientFrame::Ping { .. } => None,
        }
    }
}

/// One message as stored in history and delivered to subscribers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub channel: String,
    pub serial: u64,
    pub id: String,
    pub from: String,
    pub data: Value,
    /// Milliseconds since the epoch, when the server accepted it.
    pub ts: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerFrame {
    Subscribed {
        channel: String,
        /// The channel's latest serial when the subscription took effect.
        serial: u64,
    },
    Unsubscribed {
        channel: String,
    },
    Message(Message),
    Ack {
        id: String,
        channel: String,
        serial: u64,
        /// True when this id was published before: the first serial is returned, nothing re-sent.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        duplicate: bool,
    },
    History {
        channel: String,
        messages: Vec<Message>,
    },
    Presence {
        channel: String,
        event: PresenceEvent,
        member: Member,
    },
    Members {
        channel: String,
        members: Vec<Member>,
    },
    Pong {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<Value>,
    },
    Error(ErrorFrame),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PresenceEvent {
    Enter,
    Leave,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub user: String,
    pub connection: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub data: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorFrame {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not JSON.
    BadJson,
    /// JSON, but no known `action`.
    UnknownAction,
    /// A known action with missing or wrong fields.
    BadRequest,
    /// `data` over the size limit.
    TooLarge,
    /// The token's capabilities do not allow this action on this channel.
    Forbidden,
    /// The server failed; retrying later may work.
    Internal,
}

impl ServerFrame {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> ServerFrame {
        ServerFrame::Error(ErrorFrame { code, message: message.into(), action: None, channel: None, id: None })
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("frames always serialize")
    }
}

/// A channel name: 1-128 printable characters without `#` (which the store uses in keys).
pub fn check_channel(channel: &str) -> Result<(), (ErrorCode, String)> {
    if channel.is_empty() || channel.len() > MAX_CHANNEL_LEN || channel.contains('#') || channel.chars().any(char::is_control) {
        return Err((ErrorCode::BadRequest, format!("bad channel name: use 1-{MAX_CHANNEL_LEN} printable characters without `#`")));
    }
    Ok(())
}

/// Published data must leave room for the envelope in API Gateway's 128 KB frame.
pub fn check_data(data: &Value) -> Result<(), (ErrorCode, String)> {
    let size = serde_json::to_string(data).map(|s| s.len()).unwrap_or(usize::MAX);
    if size > MAX_DATA_BYTES {
        return Err((ErrorCode::TooLarge, format!("`data` is {size} bytes; the limit is {MAX_DATA_BYTES}")));
    }
    Ok(())
}

/// Parses a frame; every failure becomes the `error` frame to send back.
pub fn parse(body: &str) -> Result<ClientFrame, ErrorFrame> {
    let value: Value = serde_json::from_str(body).map_err(|e| ErrorFrame {
        code: ErrorCode::BadJson,
        message: format!("the frame is not JSON ({e}); send an object such as {{\"action\":\"ping\"}}"),
        action: None,
        channel: None,
        id: None,
    })?;
    let action = value.get("action").and_then(Value::as_str).map(str::to_string);
    const KNOWN: &[&str] = &["subscribe", "unsubscribe", "publish", "history", "presence", "ping"];
    match action.as_deref() {
        Some(a) if KNOWN.contains(&a) => {}
        other => {
            return Err(ErrorFrame {
                code: ErrorCode::UnknownAction,
                message: match other {
                    Some(a) => format!("unknown action `{a}`; known actions: {}", KNOWN.join(", ")),
                    None => format!("the frame has no `action`; known actions: {}", KNOWN.join(", ")),
                },
                action,
                channel: None,
                id: None,
            });
        }
    }
    let channel = value.get("channel").and_then(Value::as_str).map(str::to_string);
    let id = value.get("id").and_then(Value::as_str).map(str::to_string);
    let frame: ClientFrame = serde_json::from_value(value).map_err(|e| ErrorFrame {
        code: ErrorCode::BadRequest,
        message: format!("bad `{}` frame: {e}", action.as_deref().unwrap_or_default()),
        action: action.clone(),
        channel: channel.clone(),
        id: id.clone(),
    })?;
    let refuse = |(code, message): (ErrorCode, String)| ErrorFrame { code, message, action: action.clone(), channel: channel.clone(), id: id.clone() };
    if let Some(name) = frame.channel() {
        check_channel(name).map_err(refuse)?;
    }
    if let ClientFrame::Publish { data, .. } = &frame {
        check_data(data).map_err(refuse)?;
    }
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn frames_parse_by_action() {
        assert_eq!(
            parse(r#"{"action":"subscribe","channel":"room-1","since":41}"#).unwrap(),
            ClientFrame::Subscribe { channel: "room-1".into(), since: Some(41), rewind: None }
        );
        assert_eq!(parse(r#"{"action":"ping"}"#).unwrap(), ClientFrame::Ping { id: None });
        assert!(matches!(parse(r#"{"action":"publish","channel":"c","data":{"x":1},"id":"m1"}"#).unwrap(), ClientFrame::Publish { id: Some(_), .. }));
    }

    #[test]
    fn every_bad_frame_has_its_code() {
        assert_eq!(parse("hello").unwrap_err().code, ErrorCode::BadJson);
        assert_eq!(parse(r#"{"action":"dance"}"#).unwrap_err().code, ErrorCode::UnknownAction);
        assert_eq!(parse(r#"{"channel":"x"}"#).unwrap_err().code, ErrorCode::UnknownAction);
        let missing = parse(r#"{"action":"publish","channel":"c"}"#).unwrap_err();
        assert_eq!((missing.code, missing.channel.as_deref()), (ErrorCode::BadRequest, Some("c")));
        assert_eq!(parse(r#"{"action":"subscribe","channel":""}"#).unwrap_err().code, ErrorCode::BadRequest);
        let big = json!({"action":"publish","channel":"c","data":"x".repeat(MAX_DATA_BYTES + 1)}).to_string();
        assert_eq!(parse(&big).unwrap_err().code, ErrorCode::TooLarge);
    }

    #[test]
    fn server_frames_are_tagged_by_type() {
        let f = ServerFrame::Ack { id: "m1".into(), channel: "c".into(), serial: 7, duplicate: false };
        assert_eq!(serde_json::to_value(&f).unwrap(), json!({"type":"ack","id":"m1","channel":"c","serial":7}));
        let m = ServerFrame::Message(Message { channel: "c".into(), serial: 1, id: "a".into(), from: "u".into(), data: json!(1), ts: 5 });
        assert_eq!(serde_json::to_value(&m).unwrap()["type"], "message");
        let e = ServerFrame::error(ErrorCode::Forbidden, "no");
        assert_eq!(serde_json::to_value(&e).unwrap(), json!({"type":"error","code":"forbidden","message":"no"}));
    }
}
