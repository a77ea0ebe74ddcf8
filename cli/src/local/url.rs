//! Function URLs (`/_lambda-url/{function}/…`): what Lambda does in front of a function whose
//! URL has `AuthType` `AWS_IAM`. The URL must exist (moto holds its configuration, as Lambda
//! does); the request must carry a valid SigV4 signature for service `lambda`, from the key
//! `wsctl dev` prints (`local` / `local`); the body is at most 6 MB. The function gets the
//! request as API Gateway's payload format 2.0, and its answer becomes the HTTP response:
//! `statusCode`, `headers` and `body` when it returns them, else the answer itself as a JSON
//! body ("Invoking Lambda function URLs", Lambda Developer Guide). A failed invocation is a 502.

use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Response, StatusCode};
use serde_json::{Map, Value, json};
use wsctl_functions::partition::Partition;

use super::events::{self, Stamp};
use super::http::{Body, json_response, respond};
use super::invoke;
use super::sigv4::{Refused, Verifier};
use super::state::Gateway;

/// Where `function`'s URL is served on the gateway at `base` (`http://host:port`).
pub fn address(base: &str, function: &str) -> String {
    format!("{}/_lambda-url/{function}/", base.trim_end_matches('/'))
}

/// The key and secret `wsctl dev` tells its users to sign with.
pub const LOCAL_KEY: (&str, &str) = ("local", "local");

fn forbidden(why: &Refused, region: &str) -> Response<Body> {
    let hint = match why {
        Refused::Unsigned | Refused::UnknownKey(_) | Refused::Mismatch => format!(
            " (sign with SigV4 for service `lambda`, e.g. curl --aws-sigv4 aws:amz:{region}:lambda --user {}:{})",
            LOCAL_KEY.0, LOCAL_KEY.1
        ),
        _ => String::new(),
    };
    json_response(
        StatusCode::FORBIDDEN,
        &json!({ "Message": format!("{why}{hint}") }),
    )
}

/// One request to `function`'s URL; `rest` is the path after the function's name.
pub async fn serve(
    gw: &Gateway,
    parts: &Parts,
    body: Bytes,
    function: &str,
    rest: &[&str],
) -> Response<Body> {
    let api = &gw.api;
    let Some(pool) = api.functions.get(function).cloned() else {
        return not_found();
    };
    if !gw.upstream.has_function_url(function, &api.region).await {
        return not_found();
    }
    let secret = |key: &str| (key == LOCAL_KEY.0).then(|| LOCAL_KEY.1.to_string());
    let verifier = Verifier {
        region: &api.region,
        service: "lambda",
        secret: &secret,
    };
    let key = match verifier.verify(
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query(),
        &parts.headers,
        &body,
        std::time::SystemTime::now(),
    ) {
        Ok(key) => key,
        Err(why) => {
            gw.note(&format!(
                "refused {} {}: {why}",
                parts.method,
                parts.uri.path()
            ));
            return forbidden(&why, &api.region);
        }
    };
    if body.len() > invoke::MAX_SYNC {
        return json_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &json!({"Message": format!("Request must be smaller than {} bytes for the InvokeFunction operation", invoke::MAX_SYNC)}),
        );
    }
    let stamp = Stamp::now();
    let caller = Partition::of(&api.region).arn("iam", "", &api.account, "user/local");
    let event = url_event(gw, parts, &body, function, rest, &stamp, &key, &caller);
    let answer = match invoke::synchronous(
        gw,
        &pool,
        stamp.request_id,
        Bytes::from(event.to_string()),
    )
    .await
    {
        Err(refused) => return refused,
        Ok(answer) => answer,
    };
    match answer {
        Ok(result) => http_response(&result),
        Err(_) => json_response(
            StatusCode::BAD_GATEWAY,
            &json!({"Message": "Internal Server Error"}),
        ),
    }
}

fn not_found() -> Response<Body> {
    json_response(StatusCode::NOT_FOUND, &json!({"Message": null}))
}

/// A body Lambda passes as text; any other is base64-encoded.
fn textual(content_type: Option<&str>) -> bool {
    let Some(t) = content_type else {
        return true;
    };
    let t = t.to_ascii_lowercase();
    t.starts_with("text/")
        || ["json", "xml", "javascript", "x-www-form-urlencoded"]
            .iter()
            .any(|k| t.contains(k))
}

/// The request as payload format 2.0, with the caller in `requestContext.authorizer.iam`.
#[allow(clippy::too_many_arguments)]
fn url_event(
    gw: &Gateway,
    parts: &Parts,
    body: &[u8],
    function: &str,
    rest: &[&str],
    stamp: &Stamp,
    key: &str,
    caller: &str,
) -> Value {
    let mut headers = Map::new();
    for name in parts.headers.keys() {
        let values: Vec<&str> = parts
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        headers.insert(name.as_str().to_string(), json!(values.join(",")));
    }
    let header = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok());
    let content_type = header("content-type");
    let text = textual(content_type)
        .then(|| std::str::from_utf8(body).ok())
        .flatten();
    let (body, encoded) = match text {
        Some(t) => (t.to_string(), false),
        None => (aws_smithy_types::base64::encode(body), true),
    };
    let path = format!("/{}", rest.join("/"));
    let query = parts.uri.query().unwrap_or_default();
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": function,
            "authorizer": {"iam": {
                "accessKey": key,
                "accountId": gw.api.account,
                "callerId": key,
                "userArn": caller,
                "userId": key,
            }},
            "domainName": gw.domain,
            "domainPrefix": function,
            "http": {
                "method": parts.method.as_str(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": header("user-agent").unwrap_or_default(),
            },
            "requestId": stamp.request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": events::request_time(stamp.epoch_ms),
            "timeEpoch": stamp.epoch_ms,
        },
        "isBase64Encoded": encoded,
    });
    if !body.is_empty() {
        event["body"] = json!(body);
    }
    if !query.is_empty() {
        let params: Map<String, Value> = super::http::query_pairs(Some(query))
            .into_iter()
            .map(|(k, v)| (k, json!(v)))
            .collect();
        event["queryStringParameters"] = Value::Object(params);
    }
    event
}

/// The function's answer as Lambda turns it into the URL's response.
fn http_response(result: &[u8]) -> Response<Body> {
    let value: Value = serde_json::from_slice(result).unwrap_or(Value::Null);
    let Some(status) = value
        .get("statusCode")
        .and_then(Value::as_u64)
        .and_then(|s| StatusCode::from_u16(s as u16).ok())
    else {
        let mut r = respond(StatusCode::OK, Bytes::copy_from_slice(result));
        r.headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
        return r;
    };
    let text = value["body"].as_str().unwrap_or_default();
    let body = match value["isBase64Encoded"].as_bool() {
        Some(true) => aws_smithy_types::base64::decode(text).unwrap_or_default(),
        _ => text.as_bytes().to_vec(),
    };
    let mut r = respond(status, body);
    if let Some(headers) = value["headers"].as_object() {
        for (name, v) in headers {
            if let (Ok(name), Some(Ok(v))) = (
                HeaderName::from_bytes(name.as_bytes()),
                v.as_str().map(HeaderValue::from_str),
            ) {
                r.headers_mut().insert(name, v);
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_functions_answer_becomes_the_response() {
        let r = http_response(
            br#"{"statusCode":405,"headers":{"allow":"POST","content-type":"application/json"},"body":"{\"error\":\"method_not_allowed\"}"}"#,
        );
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()["allow"], "POST");
        // Anything else is the body of a 200.
        let r = http_response(br#"{"serial":3}"#);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "application/json");
    }

    #[test]
    fn text_bodies_travel_as_text() {
        assert!(textual(None));
        assert!(textual(Some("application/json; charset=utf-8")));
        assert!(textual(Some("text/plain")));
        assert!(!textual(Some("application/octet-stream")));
        assert!(!textual(Some("image/png")));
    }
}
