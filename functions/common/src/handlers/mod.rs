//! One handler per function. Each takes the context built at cold start and one event.

pub mod authorizer;
pub mod connect;
pub mod disconnect;
pub mod endpoint;
pub mod message;
pub mod publish;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequestContext};
use serde_json::Value;

use crate::auth::Capabilities;

/// `room` before `deadline`, or half of what is left when that is less: when an invocation
/// that must be done by `deadline` starts nothing new, keeping time to finish what it began.
pub(crate) fn short_of(
    deadline: tokio::time::Instant,
    room: std::time::Duration,
) -> tokio::time::Instant {
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    deadline - room.min(left / 2)
}

pub fn ok() -> ApiGatewayProxyResponse {
    let mut r = ApiGatewayProxyResponse::default();
    r.status_code = 200;
    r
}

/// The user and capabilities the authorizer put in the connection's context. API Gateway
/// passes that context flat in `requestContext.authorizer` of every later event.
pub fn identity(rc: &ApiGatewayWebsocketProxyRequestContext) -> Option<(String, Capabilities)> {
    let a = &rc.authorizer;
    let field = |k: &str| a.other.get(k).or_else(|| a.fields.get(k)).cloned();
    let user = field("user")?.as_str()?.to_string();
    let cap = match field("cap") {
        Some(Value::String(s)) => serde_json::from_str(&s).unwrap_or_default(),
        _ => Capabilities::default(),
    };
    Some((user, cap))
}

/// The handshake token's `exp` and `iat`, as the authorizer put them in the context (API
/// Gateway may hand a number on as a string).
pub fn token_times(rc: &ApiGatewayWebsocketProxyRequestContext) -> (Option<u64>, Option<u64>) {
    let a = &rc.authorizer;
    let field = |k: &str| {
        let v = a.other.get(k).or_else(|| a.fields.get(k))?;
        v.as_u64().or_else(|| v.as_str()?.parse().ok())
    };
    (field("exp"), field("iat"))
}

pub fn connection_id(rc: &ApiGatewayWebsocketProxyRequestContext) -> String {
    rc.connection_id.clone().unwrap_or_default()
}
