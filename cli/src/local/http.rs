//! HTTP plumbing every local server shares: building responses, reading bodies, decoding paths
//! and query strings. Nothing here knows what API Gateway or Lambda mean.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

pub type Body = Full<Bytes>;

pub fn respond(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

pub fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut r = respond(status, body.to_string());
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

/// API Gateway's error shape: `{"message": "..."}`.
pub fn message(status: StatusCode, text: &str) -> Response<Body> {
    json_response(status, &json!({ "message": text }))
}

/// The whole body. A body cut off half-way reads as empty: every caller treats a missing body
/// and an unreadable one alike.
pub async fn collect(body: Incoming) -> Bytes {
    body.collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default()
}

pub fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match bytes[i] {
            b'%' if i + 2 < bytes.len() => hex(bytes[i + 1])
                .zip(hex(bytes[i + 2]))
                .map(|(h, l)| h * 16 + l),
            _ => None,
        };
        match (decoded, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a=1&b=x%20y` as decoded pairs, in order and with repeats, as events carry them.
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// The first non-empty value of `name` in `query`, decoded.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query_pairs(query)
        .into_iter()
        .find(|(k, v)| k == name && !v.is_empty())
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("L0SM9cOFvHcCIhw%3D"), "L0SM9cOFvHcCIhw=");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(
            query_pairs(Some("token=a%20b&x")),
            vec![("token".into(), "a b".into()), ("x".into(), String::new())]
        );
    }
}
