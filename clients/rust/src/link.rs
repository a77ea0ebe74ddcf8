use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::types::Event;

/// What channels, presence sets and publishes need from the client: the current connection,
/// the clock, timers and the client's listeners.
pub(crate) trait Link {
    /// Sends a frame on the open connection; false when there is none (it is sent again on the
    /// next).
    fn send(&mut self, frame: Value) -> bool;
    fn now(&self) -> Instant;
    /// Comes back as the client's `timer(timer)` after `after`.
    fn later(&mut self, after: Duration, timer: Timer);
    fn emit(&mut self, event: Event);
}

/// Something to do later; each carries what it needs to tell whether it still applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Timer {
    Connect {
        attempt: u64,
    },
    PlannedReconnect {
        generation: u64,
    },
    Watch,
    Renew {
        round: u64,
    },
    ResendPublish {
        id: String,
        seq: u64,
        connection: u64,
    },
    ResendHead {
        channel: String,
        op: u64,
    },
    ResendPresence {
        channel: String,
    },
    AnnounceLeave {
        channel: String,
        user: String,
        round: u64,
    },
}

/// A delay the server asked for with `rate_limited`, or a short one for `internal`.
pub(crate) fn retry_delay(frame: &Value) -> Duration {
    match frame["retry_after_ms"].as_u64() {
        Some(ms) if ms > 0 => Duration::from_millis(ms.min(60_000)),
        _ => Duration::from_secs(1),
    }
}

/// Codes after which the same frame is worth sending again.
pub(crate) fn retryable(frame: &Value) -> bool {
    matches!(frame["code"].as_str(), Some("rate_limited" | "internal"))
}

/// `token_expired` and `token_revoked`: the frame was not acted on and the server closes the
/// connection; the request belongs on the next one, with a fresh token.
pub(crate) fn ends_connection(frame: &Value) -> bool {
    matches!(
        frame["code"].as_str(),
        Some("token_expired" | "token_revoked")
    )
}
