//! The client protocol: JSON frames routed by `action` (client → server) and tagged by `type`
//! (server → client). Documented with an example session in `docs/src/reference/protocol.md`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Largest `data` a publish may carry, leaving room in API Gateway's 128 KB frame for the envelope.
pub const MAX_DATA_BYTES: usize = 120 * 1024;
/// Channel names are counted in characters (Unicode scalar values), not bytes.
pub const MAX_CHANNEL_CHARS: usize = 128;
/// Client ids of publishes: they become part of a DynamoDB key (2 KB at most) and of every
/// delivered frame.
pub const MAX_ID_CHARS: usize = 128;
/// Presence member data travels in every `presence` and `members` frame of the channel.
pub const MAX_MEMBER_BYTES: usize = 2048;
/// Messages one `history` answer (or one `subscribe` replay) carries at most.
pub const MAX_HISTORY_LIMIT: u32 = 1000;
/// Members one `members` frame carries at most.
pub const MAX_MEMBERS_PER_FRAME: usize = 100;
/// A server frame must fit API Gateway's 128 KB message limit, with room to spare.
pub const MAX_FRAME_BYTES: usize = 127 * 1024;
/// The user id of server-side publishes (`wsctl publish`); no token may claim it.
pub const SERVER_USER: &str = "server";
/// The longest token an `auth` frame may carry (identity providers' JWTs run to a few KB).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

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
        /// The publisher's own running number (1, 2, 3, ... per connection): publishes that
        /// carry it are stored in this order even when they arrive out of order.
        #[serde(default)]
        seq: Option<u64>,
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
        /// Members query: continue after this connection id (the `next` of the last `members`).
        #[serde(default)]
        after: Option<String>,
    },
    Ping {
        #[serde(default)]
        id: Option<Value>,
    },
    /// A fresh token for this connection, sent before the current one expires: its expiry and
    /// capabilities replace the current ones, for the same user.
    Auth {
        token: String,
    },
}

impl ClientFrame {
    /// Every `action` a client may send, as `action()` names them.
    pub const ACTIONS: &[&str] = &[
        "subscribe",
        "unsubscribe",
        "publish",
        "history",
        "presence",
        "ping",
        "auth",
    ];

    pub fn action(&self) -> &'static str {
        match self {
            ClientFrame::Subscribe { .. } => "subscribe",
            ClientFrame::Unsubscribe { .. } => "unsubscribe",
            ClientFrame::Publish { .. } => "publish",
            ClientFrame::History { .. } => "history",
            ClientFrame::Presence { .. } => "presence",
            ClientFrame::Ping { .. } => "ping",
            ClientFrame::Auth { .. } => "auth",
        }
    }

    pub fn channel(&self) -> Option<&str> {
        match self {
            ClientFrame::Subscribe { channel, .. }
            | ClientFrame::Unsubscribe { channel }
            | ClientFrame::Publish { channel, .. }
            | ClientFrame::History { channel, .. }
            | ClientFrame::Presence { channel, .. } => Some(channel),
            ClientFrame::Ping { .. } | ClientFrame::Auth { .. } => None,
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
        /// The replay stopped before `serial`: fetch the rest with `history` `since` the last
        /// replayed serial.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        more: bool,
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
        /// More messages follow the last one here: ask again with `since` its serial.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        more: bool,
    },
    Presence {
        channel: String,
        event: PresenceEvent,
        member: Member,
    },
    Members {
        channel: String,
        members: Vec<Member>,
        /// More members follow: ask again with `after` set to this.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<String>,
    },
    Pong {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<Value>,
    },
    /// An `auth` frame's token was accepted.
    Authenticated {
        user: String,
        /// The new token's expiry (seconds since the epoch): renew before it.
        expires: u64,
        /// Channels the connection left because the new token does not allow them.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        dropped: Vec<String>,
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
    /// With `rate_limited`: how long to wait before sending this frame again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
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
    /// Over one of the stage's rate limits (`retry_after_ms` says when to send it again); the
    /// frame had no effect.
    RateLimited,
    /// Over one of the stage's limits on what a connection holds (its channels): waiting does
    /// not help, releasing something does. The frame had no effect.
    LimitExceeded,
    /// An `auth` frame's token was refused; the connection keeps its current token.
    Unauthorized,
    /// The connection's token has expired: this frame was not acted on and the server closes
    /// the connection. Renew with `auth` before the expiry, or reconnect with a fresh token.
    TokenExpired,
    /// The connection's token was revoked (`wsctl revoke`): the server closes the connection.
    TokenRevoked,
    /// The connection kept sending after `rate_limited` (many refused frames in a few
    /// seconds): the server closes it. Reconnect and wait `retry_after_ms` when told to.
    Flooding,
    /// The server failed; retrying later may work.
    Internal,
}

impl ErrorCode {
    /// The code as it is sent (`rate_limited`), for logs and metric dimensions.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::UnknownAction => "unknown_action",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::TokenRevoked => "token_revoked",
            ErrorCode::Flooding => "flooding",
            ErrorCode::Internal => "internal",
        }
    }
}

/// The action a frame names, if it is one of [`ClientFrame::ACTIONS`]; a client's own string
/// never becomes a metric dimension, as each value would be a custom metric billed monthly.
pub fn known_action(action: &str) -> Option<&'static str> {
    ClientFrame::ACTIONS.iter().find(|a| **a == action).copied()
}

impl ServerFrame {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> ServerFrame {
        ServerFrame::Error(ErrorFrame {
            code,
            message: message.into(),
            action: None,
            channel: None,
            id: None,
            retry_after_ms: None,
        })
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("frames always serialize")
    }
}

/// Characters no name may contain: controls (Cc), line and paragraph separators, and the
/// format characters (Cf: zero-width, bidi overrides, ...) that make two names look alike or
/// reorder what a reader sees.
pub fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(c as u32,
            0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x0890..=0x0891 | 0x08E2 | 0x180E
            | 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF
            | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F)
}

/// A name of 1-`max` characters, none of them invisible (see [`is_invisible`]).
pub fn check_name(what: &str, name: &str, max: usize, extra: &str) -> Result<(), String> {
    let chars = name.chars().count();
    if chars == 0 || chars > max {
        return Err(format!("{what} has {chars} characters; use 1-{max}{extra}"));
    }
    if let Some(c) = name.chars().find(|c| is_invisible(*c)) {
        return Err(format!(
            "{what} contains the invisible character U+{:04X}; use printable characters only{extra}",
            c as u32
        ));
    }
    Ok(())
}

/// A name that identifies (a channel, a user): a [`check_name`] with one spelling only. It is
/// in Unicode normalization form C (so `é` as one code point and as `e` + U+0301 are not two
/// names), neither starts nor ends with a space, and its only space is the ASCII one (a
/// no-break or ideographic space looks like it).
pub fn check_identifier(what: &str, name: &str, max: usize, extra: &str) -> Result<(), String> {
    check_name(what, name, max, extra)?;
    if name.starts_with(char::is_whitespace) || name.ends_with(char::is_whitespace) {
        return Err(format!(
            "{what} starts or ends with a space; remove it{extra}"
        ));
    }
    if let Some(c) = name.chars().find(|c| c.is_whitespace() && *c != ' ') {
        return Err(format!(
            "{what} contains the space U+{:04X}, which looks like another; use the ASCII space{extra}",
            c as u32
        ));
    }
    let nfc = icu_normalizer::ComposingNormalizerBorrowed::new_nfc();
    if !nfc.is_normalized(name) {
        return Err(format!(
            "{what} is not in Unicode normalization form C; send it as {:?} (its NFC form){extra}",
            nfc.normalize(name)
        ));
    }
    Ok(())
}

/// Whether `user` is the server's own name in any case or width (`Server`, `ＳＥＲＶＥＲ`,
/// `ſerver`): compared after NFKC and lower-casing, so no token's user looks like it.
pub fn is_server_lookalike(user: &str) -> bool {
    let folded = icu_normalizer::ComposingNormalizerBorrowed::new_nfkc().normalize(user);
    folded.to_lowercase() == SERVER_USER
}

/// A channel name: 1-128 printable characters without `#` (which the store uses in keys).
pub fn check_channel(channel: &str) -> Result<(), (ErrorCode, String)> {
    let rule = " without `#`";
    check_identifier("the channel name", channel, MAX_CHANNEL_CHARS, rule)
        .map_err(|m| (ErrorCode::BadRequest, m))?;
    if channel.contains('#') {
        return Err((
            ErrorCode::BadRequest,
            format!(
                "the channel name contains `#`; use 1-{MAX_CHANNEL_CHARS} printable characters{rule}"
            ),
        ));
    }
    Ok(())
}

/// A publish's client id: 1-128 printable characters.
pub fn check_id(id: &str) -> Result<(), (ErrorCode, String)> {
    check_name("`id`", id, MAX_ID_CHARS, "").map_err(|m| (ErrorCode::BadRequest, m))
}

/// Published data must leave room for the envelope in API Gateway's 128 KB frame.
pub fn check_data(data: &Value) -> Result<(), (ErrorCode, String)> {
    let size = serde_json::to_string(data)
        .map(|s| s.len())
        .unwrap_or(usize::MAX);
    if size > MAX_DATA_BYTES {
        return Err((
            ErrorCode::TooLarge,
            format!("`data` is {size} bytes; the limit is {MAX_DATA_BYTES}"),
        ));
    }
    Ok(())
}

/// Presence member data: `true` (no data) or a JSON object of at most 2 KB.
pub fn check_member(data: &Value) -> Result<(), (ErrorCode, String)> {
    match data {
        Value::Bool(true) | Value::Object(_) => {}
        _ => {
            return Err((
                ErrorCode::BadRequest,
                "`enter` is `true` or an object of member data".into(),
            ));
        }
    }
    let size = serde_json::to_string(data)
        .map(|s| s.len())
        .unwrap_or(usize::MAX);
    if size > MAX_MEMBER_BYTES {
        return Err((
            ErrorCode::TooLarge,
            format!("member data is {size} bytes; the limit is {MAX_MEMBER_BYTES}"),
        ));
    }
    Ok(())
}

/// Parses a frame; every failure becomes the `error` frame to send back.
pub fn parse(body: &str) -> Result<ClientFrame, ErrorFrame> {
    let value: Value = serde_json::from_str(body).map_err(|e| ErrorFrame {
        code: ErrorCode::BadJson,
        message: format!(
            "the frame is not JSON ({e}); send an object such as {{\"action\":\"ping\"}}"
        ),
        action: None,
        channel: None,
        id: None,
        retry_after_ms: None,
    })?;
    let action = value
        .get("action")
        .and_then(Value::as_str)
        .map(str::to_string);
    const KNOWN: &[&str] = ClientFrame::ACTIONS;
    match action.as_deref() {
        Some(a) if KNOWN.contains(&a) => {}
        other => {
            return Err(ErrorFrame {
                code: ErrorCode::UnknownAction,
                message: match other {
                    Some(a) => format!("unknown action `{a}`; known actions: {}", KNOWN.join(", ")),
                    None => format!(
                        "the frame has no `action`; known actions: {}",
                        KNOWN.join(", ")
                    ),
                },
                action,
                channel: None,
                id: None,
                retry_after_ms: None,
            });
        }
    }
    let channel = value
        .get("channel")
        .and_then(Value::as_str)
        .map(str::to_string);
    let id = value.get("id").and_then(Value::as_str).map(str::to_string);
    let frame: ClientFrame = serde_json::from_value(value).map_err(|e| ErrorFrame {
        code: ErrorCode::BadRequest,
        message: format!("bad `{}` frame: {e}", action.as_deref().unwrap_or_default()),
        action: action.clone(),
        channel: channel.clone(),
        id: id.clone(),
        retry_after_ms: None,
    })?;
    let refuse = |(code, message): (ErrorCode, String)| ErrorFrame {
        code,
        message,
        action: action.clone(),
        channel: channel.clone(),
        id: id.clone(),
        retry_after_ms: None,
    };
    if let Some(name) = frame.channel() {
        check_channel(name).map_err(refuse)?;
    }
    match &frame {
        ClientFrame::Publish { data, id, .. } => {
            if let Some(id) = id {
                check_id(id).map_err(refuse)?;
            }
            check_data(data).map_err(refuse)?;
        }
        ClientFrame::Subscribe {
            rewind: Some(n), ..
        }
        | ClientFrame::History { limit: Some(n), .. }
            if *n > MAX_HISTORY_LIMIT =>
        {
            return Err(refuse((
                ErrorCode::BadRequest,
                format!("at most {MAX_HISTORY_LIMIT} messages at a time; page with `since`"),
            )));
        }
        ClientFrame::Presence {
            enter: Some(data),
            leave,
            ..
        } => {
            if leave.is_some() {
                return Err(refuse((
                    ErrorCode::BadRequest,
                    "send `enter` or `leave`, not both".into(),
                )));
            }
            check_member(data).map_err(refuse)?;
        }
        ClientFrame::Presence {
            after: Some(after), ..
        } => {
            // A connection id from a `members` frame's `next`: short and printable.
            check_name(
                "`after`",
                after,
                MAX_ID_CHARS,
                " (the `next` of the last `members` frame)",
            )
            .map_err(|m| refuse((ErrorCode::BadRequest, m)))?;
        }
        ClientFrame::Auth { token } if token.is_empty() || token.len() > MAX_TOKEN_BYTES => {
            return Err(refuse((
                ErrorCode::BadRequest,
                format!("an `auth` frame carries one token of 1 to {MAX_TOKEN_BYTES} bytes"),
            )));
        }
        ClientFrame::Ping { id: Some(id) }
            if !(id.is_number()
                || id
                    .as_str()
                    .is_some_and(|s| s.chars().count() <= MAX_ID_CHARS)) =>
        {
            return Err(refuse((
                ErrorCode::BadRequest,
                format!("a ping `id` is a number or a string of at most {MAX_ID_CHARS} characters"),
            )));
        }
        _ => {}
    }
    Ok(frame)
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_error_code_is_named_as_it_is_sent() {
        use super::ErrorCode::*;
        for code in [
            BadJson,
            UnknownAction,
            BadRequest,
            TooLarge,
            Forbidden,
            RateLimited,
            LimitExceeded,
            Unauthorized,
            TokenExpired,
            TokenRevoked,
            Flooding,
            Internal,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), code.name());
        }
        assert_eq!(super::known_action("publish"), Some("publish"));
        assert_eq!(super::known_action("publish "), None);
    }
    use super::*;
    use serde_json::json;

    #[test]
    fn every_action_is_known_and_named_as_it_is_sent() {
        // The smallest valid frame of each listed action parses as that action.
        for action in ClientFrame::ACTIONS {
            let frame = json!({"action": action, "channel": "c", "data": 1});
            let frame = match *action {
                "ping" => json!({"action": "ping"}),
                "auth" => json!({"action": "auth", "token": "a.b.c"}),
                "subscribe" | "unsubscribe" | "history" | "presence" => {
                    json!({"action": action, "channel": "c"})
                }
                _ => frame,
            };
            let parsed = parse(&frame.to_string()).expect(action);
            assert_eq!(parsed.action(), *action);
        }
    }

    #[test]
    fn frames_parse_by_action() {
        assert_eq!(
            parse(r#"{"action":"subscribe","channel":"room-1","since":41}"#).unwrap(),
            ClientFrame::Subscribe {
                channel: "room-1".into(),
                since: Some(41),
                rewind: None
            }
        );
        assert_eq!(
            parse(r#"{"action":"ping"}"#).unwrap(),
            ClientFrame::Ping { id: None }
        );
        assert!(matches!(
            parse(r#"{"action":"publish","channel":"c","data":{"x":1},"id":"m1"}"#).unwrap(),
            ClientFrame::Publish { id: Some(_), .. }
        ));
    }

    #[test]
    fn every_bad_frame_has_its_code() {
        assert_eq!(parse("hello").unwrap_err().code, ErrorCode::BadJson);
        assert_eq!(
            parse(r#"{"action":"dance"}"#).unwrap_err().code,
            ErrorCode::UnknownAction
        );
        assert_eq!(
            parse(r#"{"channel":"x"}"#).unwrap_err().code,
            ErrorCode::UnknownAction
        );
        let missing = parse(r#"{"action":"publish","channel":"c"}"#).unwrap_err();
        assert_eq!(
            (missing.code, missing.channel.as_deref()),
            (ErrorCode::BadRequest, Some("c"))
        );
        assert_eq!(
            parse(r#"{"action":"subscribe","channel":""}"#)
                .unwrap_err()
                .code,
            ErrorCode::BadRequest
        );
        let big = json!({"action":"publish","channel":"c","data":"x".repeat(MAX_DATA_BYTES + 1)})
            .to_string();
        assert_eq!(parse(&big).unwrap_err().code, ErrorCode::TooLarge);
    }

    #[test]
    fn a_channel_has_one_spelling() {
        for (name, ok) in [
            ("room-1", true),
            ("room 1", true),
            ("caf\u{E9}", true),
            ("\u{4F1A}\u{8B70}\u{5BA4}", true),
            // `é` as `e` + a combining accent: the same name as above to a reader.
            ("cafe\u{301}", false),
            ("room-1 ", false),
            (" room-1", false),
            ("room\u{00A0}1", false),
            ("room\u{2007}1", false),
            ("room\u{3000}1", false),
        ] {
            let frame = json!({"action": "subscribe", "channel": name}).to_string();
            match parse(&frame) {
                Ok(_) => assert!(ok, "{name:?} accepted"),
                Err(e) => {
                    assert!(!ok, "{name:?} refused: {}", e.message);
                    assert_eq!(e.code, ErrorCode::BadRequest);
                }
            }
        }
        let e = parse(r#"{"action":"subscribe","channel":"cafe\u0301"}"#).unwrap_err();
        assert!(
            e.message.contains("\"caf\u{e9}\""),
            "names the form to send: {}",
            e.message
        );
    }

    #[test]
    fn server_frames_are_tagged_by_type() {
        let f = ServerFrame::Ack {
            id: "m1".into(),
            channel: "c".into(),
            serial: 7,
            duplicate: false,
        };
        assert_eq!(
            serde_json::to_value(&f).unwrap(),
            json!({"type":"ack","id":"m1","channel":"c","serial":7})
        );
        let m = ServerFrame::Message(Message {
            channel: "c".into(),
            serial: 1,
            id: "a".into(),
            from: "u".into(),
            data: json!(1),
            ts: 5,
        });
        assert_eq!(serde_json::to_value(&m).unwrap()["type"], "message");
        let e = ServerFrame::error(ErrorCode::Forbidden, "no");
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"type":"error","code":"forbidden","message":"no"})
        );
    }
}
