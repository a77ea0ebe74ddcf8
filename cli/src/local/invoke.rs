//! Lambda's `Invoke` (`POST /2015-03-31/functions/{name}/invocations`), so functions (the
//! publish fan-out) and `wsctl publish` invoke each other as on AWS: `RequestResponse` returns
//! the result, or the error document with `X-Amz-Function-Error`; `Event` queues and answers 202.

use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::http::request::Parts;
use hyper::{Response, StatusCode};
use serde_json::json;
use wsctl_functions::partition::Partition;

use super::events;
use super::http::{Body, json_response, respond};
use super::likeaws::Call;
use super::runtime::{Failure, Pool};
use super::state::Gateway;

/// Lambda's limits on a request's payload.
pub const MAX_SYNC: usize = 6 * 1024 * 1024;
const MAX_ASYNC: usize = 1024 * 1024;

/// `name`, `name:qualifier`, `123456789012:function:name` or a full ARN → `name:qualifier`.
fn after_function(id: &str) -> &str {
    match id.find("function:") {
        Some(i) => &id[i + "function:".len()..],
        None => id,
    }
}

/// The function's name in any of the forms Invoke takes.
pub fn function_name(id: &str) -> &str {
    let rest = after_function(id);
    rest.split(':').next().unwrap_or(rest)
}

/// The version or alias the id names, if any.
pub fn qualifier(id: &str) -> Option<&str> {
    after_function(id).split_once(':').map(|(_, q)| q)
}

fn error(status: StatusCode, kind: &'static str, text: &str) -> Response<Body> {
    let mut r = json_response(status, &json!({ "Type": "User", "message": text }));
    r.headers_mut()
        .insert("x-amzn-errortype", HeaderValue::from_static(kind));
    r
}

pub async fn handle(gw: &Gateway, req: &Parts, payload: Bytes, id: &str) -> Response<Body> {
    let name = function_name(id);
    let Some(pool) = gw.api.functions.get(name).cloned() else {
        let arn = Partition::of(&gw.api.region).arn(
            "lambda",
            &gw.api.region,
            &gw.api.account,
            &format!("function:{name}"),
        );
        return error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("Function not found: {arn}"),
        );
    };
    let kind = req
        .headers
        .get("x-amz-invocation-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("RequestResponse")
        .to_string();
    let payload = if payload.is_empty() {
        Bytes::from_static(b"{}")
    } else {
        payload
    };
    match kind.as_str() {
        "Event" => {
            if payload.len() > MAX_ASYNC {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "RequestTooLargeException",
                    "an asynchronous invocation's payload is limited to 1 MB",
                );
            }
            let log = gw.log.clone();
            let queued = gw.like_aws.as_ref().map(|l| l.latency(Call::Queue));
            let limit = gw.like_aws.as_ref().map(|l| l.concurrency);
            let meter = gw.conns.meter.clone();
            tokio::spawn(async move {
                if let Some(queued) = queued {
                    tokio::time::sleep(queued.sample()).await;
                }
                // Lambda keeps an asynchronous event queued while the account has no
                // concurrency left ("Asynchronous invocation": throttled events are retried
                // for up to 6 hours).
                let running = match limit {
                    Some(limit) => Some(meter.enter_when_free(limit).await),
                    None => None,
                };
                let id = events::request_id();
                if let Err(f) = pool.submit_holding(id.clone(), payload, running).await {
                    log(
                        &pool.def().key,
                        &format!("asynchronous invocation {id} failed: {f}"),
                        crate::local::runtime::Echo::Terminal,
                    );
                }
            });
            respond(StatusCode::ACCEPTED, Bytes::new())
        }
        "DryRun" => respond(StatusCode::NO_CONTENT, Bytes::new()),
        "RequestResponse" => {
            if payload.len() > MAX_SYNC {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "RequestTooLargeException",
                    "a synchronous invocation's payload is limited to 6 MB",
                );
            }
            let (body, failed) = match synchronous(gw, &pool, events::request_id(), payload).await {
                Err(refused) => return refused,
                Ok(Ok(body)) => (body, false),
                Ok(Err(f)) => (Bytes::from(f.payload().to_string()), true),
            };
            let mut r = respond(StatusCode::OK, body);
            let h = r.headers_mut();
            h.insert(
                "x-amz-executed-version",
                HeaderValue::from_static("$LATEST"),
            );
            h.insert("content-type", HeaderValue::from_static("application/json"));
            if failed {
                h.insert(
                    "x-amz-function-error",
                    HeaderValue::from_static("Unhandled"),
                );
            }
            r
        }
        other => error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            &format!("X-Amz-Invocation-Type {other:?}: use RequestResponse, Event or DryRun"),
        ),
    }
}

/// Runs `payload` on `pool` and waits for its answer or its failure; `Err` is Lambda's 429
/// when the account's concurrency is all taken (`--like-aws`).
pub async fn synchronous(
    gw: &Gateway,
    pool: &Pool,
    request_id: String,
    payload: Bytes,
) -> Result<Result<Bytes, Failure>, Response<Body>> {
    // Taken before it is queued, so no two callers take the last place at once.
    let running = match &gw.like_aws {
        Some(like) => match gw.conns.meter.enter(like.concurrency) {
            Some(r) => Some(r),
            None => {
                gw.conns.meter.refused();
                return Err(too_many_requests());
            }
        },
        None => None,
    };
    Ok(pool.submit_holding(request_id, payload, running).await)
}

/// Lambda's answer to an invocation over the account's concurrency ("Invoke", errors:
/// `TooManyRequestsException`, HTTP 429, with the reason).
fn too_many_requests() -> Response<Body> {
    let mut r = json_response(
        StatusCode::TOO_MANY_REQUESTS,
        &json!({
            "Type": "User",
            "Reason": "ConcurrentInvocationLimitExceeded",
            "message": "Rate Exceeded.",
        }),
    );
    r.headers_mut().insert(
        "x-amzn-errortype",
        HeaderValue::from_static("TooManyRequestsException"),
    );
    r
}

#[cfg(test)]
mod tests {
    #[test]
    fn function_names() {
        use super::function_name;
        assert_eq!(function_name("chat-dev-publish"), "chat-dev-publish");
        assert_eq!(
            function_name("chat-dev-publish:$LATEST"),
            "chat-dev-publish"
        );
        assert_eq!(
            function_name("arn:aws:lambda:us-east-1:123456789012:function:chat-dev-publish"),
            "chat-dev-publish"
        );
        assert_eq!(
            function_name("123456789012:function:chat-dev-publish:1"),
            "chat-dev-publish"
        );
        use super::qualifier;
        assert_eq!(qualifier("chat-dev-publish"), None);
        assert_eq!(qualifier("chat-dev-publish:live"), Some("live"));
        assert_eq!(
            qualifier("arn:aws:lambda:us-east-1:123456789012:function:chat-dev-publish:1"),
            Some("1")
        );
    }
}
