//! The publish endpoint: the publish function's URL, with `AuthType` `AWS_IAM`, so a backend
//! in any language publishes with one SigV4-signed `POST {channel, data, id?}`. Lambda has
//! checked the signature and the caller's IAM permissions before the event arrives, and hands
//! it over in API Gateway's payload format 2.0 ("Invoking Lambda function URLs", Lambda
//! Developer Guide).
//!
//! The body is read strictly: only `channel`, `data` and `id`. The function's own invocations
//! also take fan-out jobs (a list of connection ids and a frame to post to them) and a `from`
//! user; neither is reachable through the URL, so a backend allowed to publish cannot post
//! arbitrary frames to arbitrary connections, nor publish as one of the users.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::publish::{self, Failure};
use crate::Services;
use crate::protocol::ErrorCode;

/// True for an event Lambda made from a function URL request: no other invocation of the
/// publish function carries `requestContext.http`.
pub fn is_url_request(event: &Value) -> bool {
    event["requestContext"]["http"].is_object()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UrlEvent {
    #[serde(default)]
    raw_path: String,
    request_context: UrlContext,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    is_base64_encoded: bool,
}

#[derive(Debug, Deserialize)]
struct UrlContext {
    http: UrlHttp,
    #[serde(default)]
    authorizer: Value,
}

#[derive(Debug, Deserialize)]
struct UrlHttp {
    method: String,
}

/// What a backend may send.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    pub channel: String,
    pub data: Value,
    #[serde(default)]
    pub id: Option<String>,
}

/// The HTTP response Lambda turns into the URL's answer.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UrlResponse {
    pub status_code: u16,
    pub headers: serde_json::Map<String, Value>,
    pub body: String,
}

impl UrlResponse {
    fn json(status: u16, body: &Value) -> UrlResponse {
        let mut headers = serde_json::Map::new();
        headers.insert("content-type".into(), "application/json".into());
        UrlResponse {
            status_code: status,
            headers,
            body: body.to_string(),
        }
    }

    /// An error a backend can act on: a code to branch on and a sentence naming the fix.
    /// The code is one of this module's (or the protocol's) own, never the request's: it is a
    /// metric dimension.
    fn error(status: u16, code: &'static str, message: &str) -> UrlResponse {
        crate::metrics::add_by("EndpointRefusals", "Code", code, 1.0);
        UrlResponse::json(status, &json!({ "error": code, "message": message }))
    }
}

/// Answers one request to the URL.
pub async fn handle(ctx: &Services, event: Value, deadline: Instant) -> UrlResponse {
    let event: UrlEvent = match serde_json::from_value(event) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "not a function URL event");
            return UrlResponse::error(
                500,
                "internal",
                "the endpoint received an event it cannot read",
            );
        }
    };
    let caller = event.request_context.authorizer["iam"]["userArn"]
        .as_str()
        .unwrap_or("-")
        .to_string();
    if !matches!(event.raw_path.as_str(), "" | "/") {
        return UrlResponse::error(
            404,
            "not_found",
            &format!(
                "nothing is at {:?}: POST to the endpoint's root, /",
                event.raw_path
            ),
        );
    }
    if event.request_context.http.method != "POST" {
        let mut r = UrlResponse::error(
            405,
            "method_not_allowed",
            &format!(
                "{} is not served here: POST a JSON body {{\"channel\", \"data\", \"id\"?}}",
                event.request_context.http.method
            ),
        );
        r.headers.insert("allow".into(), "POST".into());
        return r;
    }
    let body = match (event.body, event.is_base64_encoded) {
        (None, _) => Vec::new(),
        (Some(b), false) => b.into_bytes(),
        (Some(b), true) => match aws_smithy_types::base64::decode(b) {
            Ok(bytes) => bytes,
            Err(_) => {
                return UrlResponse::error(400, "bad_json", "the body is not valid base64");
            }
        },
    };
    let request = match parse(&body) {
        Ok(r) => r,
        Err((code, message)) => return UrlResponse::error(400, code, &message),
    };
    tracing::info!(
        caller,
        channel = request.channel,
        id = request.id,
        "publish over the endpoint"
    );
    match publish::publish(
        ctx,
        &request.channel,
        &request.data,
        request.id.as_deref(),
        None,
        deadline,
    )
    .await
    {
        Ok(result) => {
            crate::metrics::add("EndpointPublishes", 1.0);
            // Part of the channel is delivered by other invocations after this answer.
            let status = if result.continued || result.leaves > 0 {
                202
            } else {
                200
            };
            UrlResponse::json(status, &serde_json::to_value(&result).unwrap_or_default())
        }
        Err(Failure::Refused(code, message)) => {
            let status = if code == ErrorCode::TooLarge {
                413
            } else {
                400
            };
            UrlResponse::error(status, code.name(), &message)
        }
        Err(Failure::Failed(message)) => {
            tracing::error!(error = message, "publish over the endpoint failed");
            UrlResponse::error(
                500,
                "internal",
                "the message could not be stored; send the same request again (with its `id`, it is stored once)",
            )
        }
    }
}

/// The body as a publish request, or the code and sentence of a 400.
fn parse(body: &[u8]) -> Result<PublishRequest, (&'static str, String)> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        (
            "bad_json",
            format!("the body is not JSON ({e}): send {{\"channel\": \"...\", \"data\": ...}}"),
        )
    })?;
    serde_json::from_value(value).map_err(|e| {
        (
            "bad_request",
            format!("{e}: the body takes `channel` (a string), `data` (any JSON) and, to make a retry safe, `id` (a string)"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_url_events_are_url_requests() {
        assert!(is_url_request(
            &json!({"version": "2.0", "requestContext": {"http": {"method": "POST"}}})
        ));
        assert!(!is_url_request(&json!({"channel": "a", "data": 1})));
        assert!(!is_url_request(
            &json!({"fanout": {"channel": "a", "frame": "{}", "targets": ["x"]}})
        ));
        // A WebSocket event has a requestContext, but no `http`.
        assert!(!is_url_request(
            &json!({"requestContext": {"connectionId": "x", "routeKey": "$default"}})
        ));
    }

    #[test]
    fn the_body_takes_channel_data_and_id_only() {
        let ok = parse(br#"{"channel":"room-1","data":{"n":1},"id":"a-1"}"#).unwrap();
        assert_eq!(ok.channel, "room-1");
        assert_eq!(ok.id.as_deref(), Some("a-1"));
        // The internal forms of the function's payload are refused by name.
        let (code, message) = parse(br#"{"channel":"a","data":1,"from":"ana"}"#).unwrap_err();
        assert_eq!(code, "bad_request");
        assert!(message.contains("unknown field `from`"), "{message}");
        let (code, message) =
            parse(br#"{"fanout":{"channel":"a","frame":"{}","targets":["x"]}}"#).unwrap_err();
        assert_eq!(code, "bad_request");
        assert!(message.contains("`fanout`"), "{message}");
        let (code, _) = parse(b"not json").unwrap_err();
        assert_eq!(code, "bad_json");
        let (code, message) = parse(br#"{"data":1}"#).unwrap_err();
        assert_eq!(code, "bad_request");
        assert!(message.contains("missing field `channel`"), "{message}");
    }
}
