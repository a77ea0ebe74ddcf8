//! How the gateway calls a function, the one way for every event (the authorizer, `$connect`,
//! `$disconnect`, messages): the event gets its request id here, is queued at once, and is
//! waited for no longer than the integration's timeout.

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use super::events::Stamp;
use super::runtime::{Answer, Failure, Pool};

/// The longest API Gateway waits for an integration.
pub const INTEGRATION_TIMEOUT: Duration = Duration::from_secs(29);

/// A function behind the gateway and how long the gateway waits for it.
#[derive(Clone)]
pub struct Integration {
    pub pool: Pool,
    pub timeout: Duration,
}

/// Why an integration gave no answer.
#[derive(Debug)]
pub enum Failed {
    /// The function failed (an error it returned, a crash, its own timeout).
    Function(Failure),
    /// The gateway stopped waiting first.
    TimedOut,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failed::Function(failure) => failure.fmt(f),
            Failed::TimedOut => f.write_str("the integration timed out"),
        }
    }
}

/// An event on its way to its function.
pub struct Call {
    /// The event's one request id, for error frames and log lines.
    pub request_id: String,
    answer: Answer,
    timeout: Duration,
}

impl Integration {
    /// Builds the event under a new [`Stamp`] and queues it now, so events called one after
    /// another start in that order; only the wait for the answer is left to the caller.
    pub fn call(&self, event: impl FnOnce(&Stamp) -> Value) -> Call {
        let stamp = Stamp::now();
        let payload = Bytes::from(event(&stamp).to_string());
        Call {
            answer: self.pool.submit(stamp.request_id.clone(), payload),
            request_id: stamp.request_id,
            timeout: self.timeout,
        }
    }
}

impl Call {
    /// The function's answer as JSON (`null` when it is not JSON, which no caller tells apart
    /// from an answer without the fields it reads).
    pub async fn answer(&mut self) -> Result<Value, Failed> {
        match tokio::time::timeout(self.timeout, &mut self.answer).await {
            Ok(Ok(body)) => Ok(serde_json::from_slice(&body).unwrap_or_default()),
            Ok(Err(failure)) => Err(Failed::Function(failure)),
            Err(_) => Err(Failed::TimedOut),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::local::events::{self, Origin};
    use crate::local::runtime::tests::rig;

    fn origin() -> Origin {
        Origin {
            api_id: "abc123".into(),
            stage: "dev".into(),
            domain: "127.0.0.1:8080".into(),
            connection_id: events::connection_id(),
            connected_at: events::epoch_ms(),
            source_ip: "127.0.0.1".into(),
            user_agent: None,
        }
    }

    #[tokio::test]
    async fn an_event_carries_one_request_id_into_its_function() {
        let rig = rig("ok", Duration::from_secs(5), 1);
        let integration = Integration {
            pool: rig.pool.clone(),
            timeout: Duration::from_secs(20),
        };
        let origin = origin();
        let mut call = integration
            .call(|stamp| events::message(&origin, "$default", "{}", false, None, stamp));
        let answer = call.answer().await.expect("an answer");
        assert_eq!(
            answer["id"],
            json!(call.request_id),
            "the Lambda request id"
        );
        assert_eq!(
            answer["event"]["requestContext"]["requestId"],
            json!(call.request_id),
            "the event's request id"
        );
    }

    #[tokio::test]
    async fn the_gateway_stops_waiting_at_the_integration_timeout() {
        let rig = rig("ok", Duration::from_secs(5), 1);
        let integration = Integration {
            pool: rig.pool.clone(),
            timeout: Duration::from_millis(300),
        };
        let mut call = integration.call(|_| json!({"do": "hang"}));
        assert!(matches!(call.answer().await, Err(Failed::TimedOut)));
    }
}
