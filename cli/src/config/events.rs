//! `events:`: what the stage tells an EventBridge bus, for applications to react to with rules.

use super::*;
use wsctl_functions::protocol;

/// Events the bundled functions send to an EventBridge bus, best-effort: a failed send is
/// counted (`EventsFailed`) and logged, and never holds up or fails what a client asked for.
/// Each event's `source` is `wsctl.STACK.STAGE`; its `detail-type` is `connected`,
/// `disconnected`, `presence` or `message`.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// The bus: left out, the stack creates its own, `STACK-STAGE` (tagged, deleted with the
    /// stack); or an existing bus of the stack's region by name (`default` is the account's
    /// own) or ARN, which the stack only sends to.
    #[serde(default)]
    #[schemars(length(min = 1, max = 1600))]
    pub bus: Option<String>,
    /// Every connect and disconnect, with its connection id and user.
    #[serde(default)]
    pub connections: bool,
    /// Every presence `enter` and `leave`, with its channel, user and connection.
    #[serde(default)]
    pub presence: bool,
    /// Channels whose messages are sent, as globs (`orders-*`; `*` for every channel): each
    /// stored message once, with its serial, id, sender and data.
    #[serde(default)]
    pub messages: Vec<String>,
}

/// EventBridge's rule for a bus name ("CreateEventBus", EventBridge API Reference).
fn bus_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
}

impl EventsConfig {
    /// The bus the functions send to: its name, or the ARN the config gives.
    pub fn bus(&self, names: &crate::names::Names) -> String {
        self.bus.clone().unwrap_or_else(|| names.event_bus())
    }

    /// Whether the stack creates and owns the bus.
    pub fn owns_bus(&self) -> bool {
        self.bus.is_none()
    }

    pub(super) fn problems(&self, region: Option<&str>) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut bad = |field: &str, message: String| {
            out.push(Problem {
                field: match field {
                    "" => "events".to_string(),
                    f => format!("events.{f}"),
                },
                message,
            })
        };
        if !self.connections && !self.presence && self.messages.is_empty() {
            bad(
                "",
                "sends nothing: set `connections: true`, `presence: true` or list channels under `messages:` (e.g. [\"orders-*\"])".into(),
            );
        }
        match &self.bus {
            Some(arn) if arn.starts_with("arn:") => {
                let parts: Vec<&str> = arn.splitn(6, ':').collect();
                let ok = parts.len() == 6
                    && parts[2] == "events"
                    && parts[5].strip_prefix("event-bus/").is_some_and(bus_name_ok);
                if !ok {
                    bad(
                        "bus",
                        format!(
                            "{arn:?} is not an event bus ARN: arn:aws:events:REGION:ACCOUNT:event-bus/NAME"
                        ),
                    );
                } else if let Some(region) = region
                    && parts[3] != region
                {
                    bad(
                        "bus",
                        format!(
                            "the bus is in {}, the stack in {region}: EventBridge takes events for a bus from its own region only; name a bus of {region}",
                            parts[3]
                        ),
                    );
                }
            }
            Some(name) if !bus_name_ok(name) => bad(
                "bus",
                format!("{name:?} is not a bus name: at most 256 letters, digits and /._-"),
            ),
            _ => {}
        }
        for (i, glob) in self.messages.iter().enumerate() {
            if glob.is_empty() || glob.len() > protocol::MAX_CHANNEL_CHARS || glob.contains('#') {
                bad(
                    &format!("messages[{i}]"),
                    format!(
                        "{glob:?} is not a channel glob: a channel name, `*` matching any run of characters (e.g. \"orders-*\")"
                    ),
                );
            }
        }
        out
    }
}
