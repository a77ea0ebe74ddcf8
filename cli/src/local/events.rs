//! The events API Gateway sends to a WebSocket API's integrations, shaped field for field like
//! the service's (the `aws_lambda_events` types deserialize them unchanged; a test checks it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde_json::{Map, Value, json};

pub fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A request id in Lambda's UUID shape, unique within this run.
pub fn request_id() -> String {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    let r: u64 = rand::rng().random();
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        (r >> 32) as u32,
        (r >> 16) as u16,
        (n >> 48) & 0xfff,
        (n >> 36) & 0xfff,
        n & 0xffff_ffff_ffff
    )
}

/// Which request an event is and when it was made. Made once per event: the same id is the
/// event's `requestContext.requestId`, the Lambda request id its function sees, and the
/// `requestId` of any error frame the client gets, so one id follows the event everywhere.
#[derive(Debug, Clone)]
pub struct Stamp {
    pub request_id: String,
    pub epoch_ms: u64,
}

impl Stamp {
    pub fn now() -> Stamp {
        Stamp {
            request_id: request_id(),
            epoch_ms: epoch_ms(),
        }
    }
}

/// A connection id in API Gateway's shape: 15 characters and a `=`, as in `L0SM9cOFvHcCIhw=`.
pub fn connection_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let mut id: String = (0..15)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    id.push('=');
    id
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn split(ms: u64) -> ((i64, u32, u32), u64, u64, u64, u64) {
    let secs = ms / 1000;
    let day = secs / 86_400;
    let rem = secs % 86_400;
    (
        civil(day as i64),
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000,
    )
}

/// `requestTime`: `25/Nov/2026:22:30:23 +0000`.
pub fn request_time(ms: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let ((y, m, d), h, min, s, _) = split(ms);
    format!(
        "{d:02}/{}/{y}:{h:02}:{min:02}:{s:02} +0000",
        MONTHS[m as usize - 1]
    )
}

/// ISO 8601 with milliseconds, as the `@connections` API returns times.
pub fn iso8601(ms: u64) -> String {
    let ((y, m, d), h, min, s, milli) = split(ms);
    format!("{y}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{milli:03}Z")
}

/// What the gateway knows of a connection that events carry.
#[derive(Debug, Clone)]
pub struct Origin {
    pub api_id: String,
    pub stage: String,
    pub domain: String,
    pub connection_id: String,
    pub connected_at: u64,
    pub source_ip: String,
    pub user_agent: Option<String>,
}

impl Origin {
    fn context(&self, route_key: &str, event_type: &str, stamp: &Stamp) -> Map<String, Value> {
        let mut identity = json!({"sourceIp": self.source_ip});
        if let Some(ua) = &self.user_agent {
            identity["userAgent"] = json!(ua);
        }
        let (request_id, now) = (&stamp.request_id, stamp.epoch_ms);
        let mut rc = Map::new();
        rc.insert("routeKey".into(), json!(route_key));
        rc.insert("eventType".into(), json!(event_type));
        rc.insert("extendedRequestId".into(), json!(request_id));
        rc.insert("requestTime".into(), json!(request_time(now)));
        rc.insert("messageDirection".into(), json!("IN"));
        rc.insert("stage".into(), json!(self.stage));
        rc.insert("connectedAt".into(), json!(self.connected_at));
        rc.insert("requestTimeEpoch".into(), json!(now));
        rc.insert("identity".into(), identity);
        rc.insert("requestId".into(), json!(request_id));
        rc.insert("domainName".into(), json!(self.domain));
        rc.insert("connectionId".into(), json!(self.connection_id));
        rc.insert("apiId".into(), json!(self.api_id));
        rc
    }

    /// `methodArn` of this API's `$connect`, as the authorizer receives it.
    pub fn method_arn(&self, region: &str, account: &str) -> String {
        let resource = format!("{}/{}/$connect", self.api_id, self.stage);
        wsctl_functions::partition::Partition::of(region).arn(
            "execute-api",
            region,
            account,
            &resource,
        )
    }
}

/// The handshake's headers and query string, in both the single- and multi-value forms.
#[derive(Debug, Clone, Default)]
pub struct Handshake {
    pub headers: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
}

fn single_and_multi(pairs: &[(String, String)]) -> (Value, Value) {
    let mut single = Map::new();
    let mut multi: Map<String, Value> = Map::new();
    for (k, v) in pairs {
        // API Gateway keeps the last value in the single-value map.
        single.insert(k.clone(), json!(v));
        match multi.get_mut(k) {
            Some(Value::Array(a)) => a.push(json!(v)),
            _ => {
                multi.insert(k.clone(), json!([v]));
            }
        }
    }
    (Value::Object(single), Value::Object(multi))
}

impl Handshake {
    fn add_to(&self, event: &mut Map<String, Value>) {
        let (headers, multi_headers) = single_and_multi(&self.headers);
        event.insert("headers".into(), headers);
        event.insert("multiValueHeaders".into(), multi_headers);
        // API Gateway leaves both query maps out when there is no query string.
        if !self.query.is_empty() {
            let (query, multi_query) = single_and_multi(&self.query);
            event.insert("queryStringParameters".into(), query);
            event.insert("multiValueQueryStringParameters".into(), multi_query);
        }
    }
}

/// The REQUEST authorizer's event (`ApiGatewayCustomAuthorizerRequestTypeRequest`).
pub fn authorizer(
    origin: &Origin,
    handshake: &Handshake,
    method_arn: &str,
    stamp: &Stamp,
) -> Value {
    let mut event = Map::new();
    event.insert("type".into(), json!("REQUEST"));
    event.insert("methodArn".into(), json!(method_arn));
    handshake.add_to(&mut event);
    if !event.contains_key("queryStringParameters") {
        event.insert("queryStringParameters".into(), json!({}));
        event.insert("multiValueQueryStringParameters".into(), json!({}));
    }
    event.insert("stageVariables".into(), json!({}));
    event.insert(
        "requestContext".into(),
        Value::Object(origin.context("$connect", "CONNECT", stamp)),
    );
    Value::Object(event)
}

/// `$connect`'s event, with the authorizer's output when there is one.
pub fn connect(
    origin: &Origin,
    handshake: &Handshake,
    authorizer: Option<&Value>,
    stamp: &Stamp,
) -> Value {
    let mut event = Map::new();
    handshake.add_to(&mut event);
    let mut rc = origin.context("$connect", "CONNECT", stamp);
    if let Some(a) = authorizer {
        rc.insert("authorizer".into(), a.clone());
    }
    event.insert("requestContext".into(), Value::Object(rc));
    event.insert("isBase64Encoded".into(), json!(false));
    Value::Object(event)
}

/// A frame from the client, routed to `route_key`.
pub fn message(
    origin: &Origin,
    route_key: &str,
    body: &str,
    base64: bool,
    authorizer: Option<&Value>,
    stamp: &Stamp,
) -> Value {
    let mut rc = origin.context(route_key, "MESSAGE", stamp);
    rc.insert(
        "messageId".into(),
        json!(format!(
            "{:x}",
            stamp.epoch_ms ^ rand::rng().random::<u64>()
        )),
    );
    if let Some(a) = authorizer {
        rc.insert("authorizer".into(), a.clone());
    }
    json!({"requestContext": rc, "body": body, "isBase64Encoded": base64})
}

/// `$disconnect`'s event: the close code and reason are the service's.
pub fn disconnect(
    origin: &Origin,
    code: u16,
    reason: &str,
    authorizer: Option<&Value>,
    stamp: &Stamp,
) -> Value {
    let mut rc = origin.context("$disconnect", "DISCONNECT", stamp);
    rc.insert("disconnectStatusCode".into(), json!(code));
    rc.insert("disconnectReason".into(), json!(reason));
    if let Some(a) = authorizer {
        rc.insert("authorizer".into(), a.clone());
    }
    let host = vec![
        ("Host".to_string(), origin.domain.clone()),
        ("x-api-key".into(), String::new()),
        ("X-Forwarded-For".into(), String::new()),
        ("x-restapi".into(), String::new()),
    ];
    let mut event = Map::new();
    Handshake {
        headers: host,
        query: vec![],
    }
    .add_to(&mut event);
    event.insert("requestContext".into(), Value::Object(rc));
    event.insert("isBase64Encoded".into(), json!(false));
    Value::Object(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::apigw::{
        ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayWebsocketProxyRequest,
    };

    fn origin() -> Origin {
        Origin {
            api_id: "abc123".into(),
            stage: "dev".into(),
            domain: "127.0.0.1:8080".into(),
            connection_id: connection_id(),
            connected_at: 1_795_636_800_123,
            source_ip: "127.0.0.1".into(),
            user_agent: Some("test".into()),
        }
    }

    #[test]
    fn times_are_formatted_like_the_service() {
        // 2026-11-25T22:30:23.456Z
        let ms = 1_795_645_823_456;
        assert_eq!(request_time(ms), "25/Nov/2026:22:30:23 +0000");
        assert_eq!(iso8601(ms), "2026-11-25T22:30:23.456Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn connection_ids_look_like_api_gateways() {
        let id = connection_id();
        assert_eq!(id.len(), 16);
        assert!(id.ends_with('='));
        assert_ne!(id, connection_id());
    }

    #[test]
    fn an_event_carries_its_stamp() {
        let (o, hs) = (origin(), Handshake::default());
        let stamp = Stamp::now();
        let arn = o.method_arn("us-east-1", "123456789012");
        for event in [
            authorizer(&o, &hs, &arn, &stamp),
            connect(&o, &hs, None, &stamp),
            message(&o, "$default", "{}", false, None, &stamp),
            disconnect(&o, 1000, "bye", None, &stamp),
        ] {
            let rc = &event["requestContext"];
            assert_eq!(rc["requestId"], json!(stamp.request_id), "{event}");
            assert_eq!(rc["requestTimeEpoch"], json!(stamp.epoch_ms), "{event}");
        }
        assert_ne!(Stamp::now().request_id, stamp.request_id);
    }

    #[test]
    fn events_deserialize_into_the_lambda_event_types() {
        let o = origin();
        let hs = Handshake {
            headers: vec![
                ("Host".into(), o.domain.clone()),
                ("Sec-WebSocket-Version".into(), "13".into()),
            ],
            query: vec![("token".into(), "t1".into()), ("token".into(), "t2".into())],
        };
        let auth =
            json!({"principalId": "ana", "user": "ana", "cap": "{}", "integrationLatency": 3});

        let e: ApiGatewayWebsocketProxyRequest =
            serde_json::from_value(connect(&o, &hs, Some(&auth), &Stamp::now())).unwrap();
        assert_eq!(e.request_context.route_key.as_deref(), Some("$connect"));
        assert_eq!(e.request_context.event_type.as_deref(), Some("CONNECT"));
        assert_eq!(
            e.request_context.connection_id.as_deref(),
            Some(o.connection_id.as_str())
        );
        assert_eq!(e.request_context.connected_at, o.connected_at as i64);
        assert_eq!(e.query_string_parameters.first("token"), Some("t2"));
        assert_eq!(
            e.multi_value_query_string_parameters.all("token").unwrap(),
            vec!["t1", "t2"]
        );
        let a = &e.request_context.authorizer;
        let field = |k: &str| a.fields.get(k).or_else(|| a.other.get(k)).cloned();
        assert_eq!(field("principalId"), Some(json!("ana")));
        assert_eq!(field("user"), Some(json!("ana")));

        let e: ApiGatewayWebsocketProxyRequest = serde_json::from_value(message(
            &o,
            "$default",
            "{\"a\":1}",
            false,
            Some(&auth),
            &Stamp::now(),
        ))
        .unwrap();
        assert_eq!(e.body.as_deref(), Some("{\"a\":1}"));
        assert_eq!(e.request_context.event_type.as_deref(), Some("MESSAGE"));
        assert!(e.request_context.message_id.is_some());

        let e: ApiGatewayWebsocketProxyRequest = serde_json::from_value(disconnect(
            &o,
            1006,
            "Connection closed abnormally",
            Some(&auth),
            &Stamp::now(),
        ))
        .unwrap();
        assert_eq!(e.request_context.route_key.as_deref(), Some("$disconnect"));
        assert_eq!(e.request_context.disconnect_status_code, Some(1006));

        let arn = o.method_arn("us-east-1", "123456789012");
        let e: ApiGatewayCustomAuthorizerRequestTypeRequest =
            serde_json::from_value(authorizer(&o, &hs, &arn, &Stamp::now())).unwrap();
        assert_eq!(e.method_arn.as_deref(), Some(arn.as_str()));
        assert_eq!(e.query_string_parameters.first("token"), Some("t2"));
        assert_eq!(
            e.request_context
                .other
                .get("connectionId")
                .and_then(Value::as_str),
            Some(o.connection_id.as_str())
        );
    }
}
