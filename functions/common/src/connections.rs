//! The stage's `@connections` API: `PostToConnection`, signed with SigV4 (the AWS SDK's own
//! signer) and sent over the SDK's own HTTPS connector, without the generated client around
//! them. A fan-out makes one such call per subscriber; profiled against `wsctl dev`, the
//! generated client's per-call machinery (its configuration layers, interceptors and
//! orchestrator) cost more CPU than the request and its signature together, and a function
//! pays for its CPU. The frame's SHA-256, which the signature covers, is computed once per
//! fan-out instead of once per subscriber.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::http::{HttpConnector, SharedHttpConnector};
use aws_smithy_runtime_api::client::identity::Identity;
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};

#[derive(Debug, PartialEq)]
pub enum PostError {
    /// The connection is closed or unknown.
    Gone,
    Other(String),
}

/// A frame to post, with the hash its signatures cover: computed once, however many
/// connections it goes to.
#[derive(Clone)]
pub struct Frame {
    data: Bytes,
    sha256: Arc<str>,
}

impl Frame {
    pub fn new(data: impl Into<Bytes>) -> Frame {
        let data = data.into();
        let digest = Sha256::digest(&data);
        let sha256: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        Frame {
            data,
            sha256: sha256.into(),
        }
    }
}

/// Attempts per post, as the SDK's standard retry mode makes.
pub const ATTEMPTS: u32 = 3;
/// How long a reply (or a close) refused by the account's throttle is tried again, as it goes
/// through once the account's traffic eases (a large fan-out elsewhere holds the throttle's
/// bucket near empty, and a reply given up on is an ack its client never gets): well inside a
/// function's default timeout of 10 s, which it shares with the rest of its work.
pub const THROTTLED_PATIENCE: Duration = Duration::from_secs(6);
/// One attempt's limit: API Gateway answers a post in milliseconds, and a fan-out must not
/// wait out the function's timeout on one stuck connection.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// The most of an error answer's body that is read.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Credentials closer than this to their expiry are fetched again.
const REFRESH_BEFORE: Duration = Duration::from_secs(300);

/// A client of one stage's `@connections` API.
#[derive(Clone)]
pub struct Connections {
    inner: Arc<Inner>,
}

struct Inner {
    /// `https://{api}.execute-api.{region}.amazonaws.com/{stage}`, no trailing slash.
    base: String,
    region: String,
    credentials: Option<SharedCredentialsProvider>,
    cached: RwLock<Option<Credentials>>,
    http: SharedHttpConnector,
    clock: fn() -> SystemTime,
}

/// Why one attempt failed.
#[derive(Debug, PartialEq)]
pub enum Failure {
    /// 429 `LimitExceededException`: the account's API Gateway throttle (or the client's
    /// buffer) refused it; the same post goes through once the caller slows down.
    Throttled(String),
    /// Worth another attempt: a 5xx, no answer.
    Transient(String),
    Final(PostError),
}

impl Connections {
    /// The stage at `url` (its `@connections` base, as `WSCTL_CONNECTIONS_URL` gives it), with
    /// the SDK configuration's region and credentials.
    pub fn new(sdk: &aws_config::SdkConfig, url: &str) -> Connections {
        Connections::with_connector(
            url,
            sdk.region().map(|r| r.to_string()).unwrap_or_default(),
            sdk.credentials_provider(),
            crate::http::aws_connector(url),
            SystemTime::now,
        )
    }

    pub fn with_connector(
        url: &str,
        region: String,
        credentials: Option<SharedCredentialsProvider>,
        http: SharedHttpConnector,
        clock: fn() -> SystemTime,
    ) -> Connections {
        Connections {
            inner: Arc::new(Inner {
                base: url.trim_end_matches('/').to_string(),
                region,
                credentials,
                cached: RwLock::new(None),
                http,
                clock,
            }),
        }
    }

    /// Posts `frame` to `connection`; 5xx answers and lost requests are retried with the SDK's
    /// standard backoff (full jitter, 1 s doubling), [`ATTEMPTS`] attempts in all, a 429 the
    /// same way for up to [`THROTTLED_PATIENCE`]; a 410 is [`PostError::Gone`].
    pub async fn post(&self, connection: &str, frame: &Frame) -> Result<(), PostError> {
        self.call("POST", connection, frame).await
    }

    /// One attempt at posting `frame` to `connection`, for a caller that paces and retries
    /// itself (the fan-out).
    pub async fn post_once(&self, connection: &str, frame: &Frame) -> Result<(), Failure> {
        self.attempt_in_time("POST", connection, frame).await
    }

    async fn attempt_in_time(
        &self,
        method: &'static str,
        connection: &str,
        frame: &Frame,
    ) -> Result<(), Failure> {
        tokio::time::timeout(ATTEMPT_TIMEOUT, self.attempt(method, connection, frame))
            .await
            .unwrap_or_else(|_| {
                Err(Failure::Transient(format!(
                    "no answer within {} s",
                    ATTEMPT_TIMEOUT.as_secs()
                )))
            })
    }

    /// Closes `connection` as API Gateway's `DeleteConnection` does (its `$disconnect` runs),
    /// retried like a post; a connection already gone is [`PostError::Gone`].
    pub async fn delete(&self, connection: &str) -> Result<(), PostError> {
        self.call("DELETE", connection, &Frame::new(Bytes::new()))
            .await
    }

    async fn call(
        &self,
        method: &'static str,
        connection: &str,
        frame: &Frame,
    ) -> Result<(), PostError> {
        let started = tokio::time::Instant::now();
        let mut attempt = 1;
        loop {
            let wait = match self.attempt_in_time(method, connection, frame).await {
                Ok(()) => return Ok(()),
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Transient(e)) if attempt >= ATTEMPTS => {
                    return Err(PostError::Other(format!("{e} (after {attempt} attempts)")));
                }
                Err(Failure::Transient(_)) => retry_delay(attempt - 1),
                // The first backoff step each time, not a doubling one: the throttle refills
                // every second, and the patience is short.
                Err(Failure::Throttled(e)) => {
                    match THROTTLED_PATIENCE.checked_sub(started.elapsed()) {
                        Some(left) if !left.is_zero() => retry_delay(0).min(left),
                        _ => {
                            return Err(PostError::Other(format!(
                                "{e} (after {attempt} attempts in {:.1} s)",
                                started.elapsed().as_secs_f64()
                            )));
                        }
                    }
                }
            };
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn attempt(
        &self,
        method: &'static str,
        connection: &str,
        frame: &Frame,
    ) -> Result<(), Failure> {
        let request = self
            .signed(method, connection, frame)
            .await
            .map_err(Failure::Final)?;
        let response = self.inner.http.call(request).await.map_err(|e| {
            let text = format!("{} {e}", operation(method));
            // A request the connector cannot send (a bad URL, say) fails the same way again.
            if e.is_user() {
                Failure::Final(PostError::Other(text))
            } else {
                Failure::Transient(text)
            }
        })?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            // Read to the end, so the connection goes back to the pool.
            let _ = response.into_body().collect().await;
            return Ok(());
        }
        // `x-amzn-ErrorType` may carry a `:namespace` suffix.
        let kind = response
            .headers()
            .get("x-amzn-errortype")
            .map(|v| v.split(':').next().unwrap_or_default().to_string())
            .unwrap_or_default();
        // An error's body is a short JSON document; read no more than that needs.
        let body = http_body_util::Limited::new(response.into_body(), MAX_ERROR_BODY)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let message: String = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v.get("message")
                    .or_else(|| v.get("Message"))
                    .and_then(|m| m.as_str().map(str::to_string))
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned())
            .chars()
            .take(200)
            .collect();
        let text = format!("{} HTTP {status} {kind}: {message}", operation(method));
        Err(match status {
            410 => Failure::Final(PostError::Gone),
            429 => Failure::Throttled(text),
            500 | 502 | 503 | 504 => Failure::Transient(text),
            _ => Failure::Final(PostError::Other(text)),
        })
    }

    /// `{method} {base}/@connections/{id}`, as the SDK builds and signs it.
    async fn signed(
        &self,
        method: &'static str,
        connection: &str,
        frame: &Frame,
    ) -> Result<HttpRequest, PostError> {
        if self.inner.base.is_empty() {
            return Err(PostError::Other(format!(
                "no @connections URL is configured: set {}",
                crate::layout::CONNECTIONS_URL_ENV
            )));
        }
        let uri = format!(
            "{}/@connections/{}",
            self.inner.base,
            percent_encoding::utf8_percent_encode(connection, LABEL)
        );
        let mut request = hyper::Request::builder().method(method).uri(&uri);
        if method == "POST" {
            request = request.header("content-type", "application/octet-stream");
        }
        let mut request = request
            .header("content-length", frame.data.len())
            .body(SdkBody::from(frame.data.clone()))
            .map_err(|e| PostError::Other(format!("connection id {connection:?}: {e}")))?;
        let identity: Identity = self.credentials().await?.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.inner.region)
            .name("execute-api")
            .time((self.inner.clock)())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| PostError::Other(format!("signing: {e}")))?
            .into();
        let headers = request
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)));
        let signable = SignableRequest::new(
            method,
            &uri,
            headers,
            SignableBody::Precomputed(frame.sha256.to_string()),
        )
        .map_err(|e| PostError::Other(format!("signing: {e}")))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| PostError::Other(format!("signing: {e}")))?
            .into_parts();
        instructions.apply_to_request_http1x(&mut request);
        HttpRequest::try_from(request).map_err(|e| PostError::Other(format!("request: {e}")))
    }

    /// The provider's credentials, kept until close to their expiry: Lambda's never change
    /// within one execution environment.
    async fn credentials(&self) -> Result<Credentials, PostError> {
        let fresh = |c: &Credentials| {
            c.expiry()
                .is_none_or(|at| at > (self.inner.clock)() + REFRESH_BEFORE)
        };
        if let Some(c) = self
            .inner
            .cached
            .read()
            .unwrap()
            .as_ref()
            .filter(|c| fresh(c))
        {
            return Ok(c.clone());
        }
        let provider = self.inner.credentials.as_ref().ok_or_else(|| {
            PostError::Other("no AWS credentials to sign @connections calls with".into())
        })?;
        let c = provider
            .provide_credentials()
            .await
            .map_err(|e| PostError::Other(format!("AWS credentials: {e}")))?;
        *self.inner.cached.write().unwrap() = Some(c.clone());
        Ok(c)
    }
}

/// The wait before another attempt after `failed` attempts: the SDK's standard backoff, full
/// jitter under 1 s doubling.
pub fn retry_delay(failed: u32) -> Duration {
    Duration::from_secs(1)
        .saturating_mul(1 << failed.min(10))
        .mul_f64(fastrand::f64())
}

/// The API operation a method is, for messages.
fn operation(method: &str) -> &'static str {
    match method {
        "DELETE" => "DeleteConnection:",
        _ => "PostToConnection:",
    }
}

/// What a path label keeps unencoded: RFC 3986's unreserved characters, as the SDK's
/// label encoding does.
const LABEL: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use aws_smithy_runtime_api::client::http::{
        HttpClient, HttpConnectorFuture, HttpConnectorSettings,
    };
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

    use super::*;

    const URL: &str = "https://abc123.execute-api.eu-west-1.amazonaws.com/dev";

    /// Status, `x-amzn-ErrorType` and body of one answer.
    type Answer = (u16, &'static str, &'static str);
    /// URI, headers and body of one request.
    type Seen = (String, Vec<(String, String)>, Vec<u8>);

    /// Answers each request with the next scripted status and records what it was sent.
    #[derive(Clone, Debug, Default)]
    struct Script {
        answers: Arc<Mutex<VecDeque<Answer>>>,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl Script {
        fn answering(answers: &[Answer]) -> Script {
            let s = Script::default();
            s.answers.lock().unwrap().extend(answers.iter().copied());
            s
        }

        fn calls(&self) -> usize {
            self.seen.lock().unwrap().len()
        }
    }

    impl HttpConnector for Script {
        fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
            let headers = request
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let body = request.body().bytes().unwrap_or_default().to_vec();
            self.seen
                .lock()
                .unwrap()
                .push((request.uri().to_string(), headers, body));
            let (status, kind, body) = self
                .answers
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or((200, "", ""));
            let mut response = HttpResponse::new(status.try_into().unwrap(), SdkBody::from(body));
            if !kind.is_empty() {
                response.headers_mut().insert("x-amzn-errortype", kind);
            }
            HttpConnectorFuture::ready(Ok(response))
        }
    }

    impl HttpClient for Script {
        fn http_connector(
            &self,
            _: &HttpConnectorSettings,
            _: &RuntimeComponents,
        ) -> SharedHttpConnector {
            SharedHttpConnector::new(self.clone())
        }
    }

    /// Fails every request with a connector error of one kind.
    #[derive(Debug, Clone)]
    struct Failing {
        error: fn() -> ConnectorError,
        calls: Arc<Mutex<u32>>,
    }

    impl HttpConnector for Failing {
        fn call(&self, _: HttpRequest) -> HttpConnectorFuture {
            *self.calls.lock().unwrap() += 1;
            HttpConnectorFuture::ready(Err((self.error)()))
        }
    }

    fn credentials() -> Credentials {
        Credentials::new("ASIAEXAMPLE", "secret", Some("token".into()), None, "test")
    }

    /// The tests' clock: 2026-11-18 11:06:40 UTC.
    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000)
    }

    fn client(http: &(impl HttpConnector + Clone + 'static)) -> Connections {
        client_with(http, credentials())
    }

    fn client_with(
        http: &(impl HttpConnector + Clone + 'static),
        credentials: impl ProvideCredentials + 'static,
    ) -> Connections {
        Connections::with_connector(
            URL,
            "eu-west-1".into(),
            Some(SharedCredentialsProvider::new(credentials)),
            SharedHttpConnector::new(http.clone()),
            now,
        )
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
    }

    #[tokio::test]
    async fn a_post_goes_where_the_sdk_sends_it_signed_for_execute_api() {
        let sdk_side = Script::default();
        let conf = aws_sdk_apigatewaymanagement::Config::builder()
            .behavior_version(aws_sdk_apigatewaymanagement::config::BehaviorVersion::latest())
            .region(aws_sdk_apigatewaymanagement::config::Region::new(
                "eu-west-1",
            ))
            .credentials_provider(credentials())
            .endpoint_url(URL)
            .http_client(sdk_side.clone())
            .build();
        let sdk = aws_sdk_apigatewaymanagement::Client::from_conf(conf);
        let ours = Script::default();
        let frame = Frame::new(r#"{"type":"message","data":"é"}"#);
        // API Gateway's ids are base64 (`=` padding); the others are what a forged id may hold.
        for id in ["L0SM9cOFvHcCIhw=", "a+b/c d", "x?y#z", "ü-._~"] {
            sdk.post_to_connection()
                .connection_id(id)
                .data(aws_sdk_apigatewaymanagement::primitives::Blob::new(
                    frame.data.to_vec(),
                ))
                .send()
                .await
                .unwrap();
            client(&ours).post(id, &frame).await.unwrap();
        }
        let theirs = sdk_side.seen.lock().unwrap().clone();
        let mine = ours.seen.lock().unwrap().clone();
        assert_eq!(mine.len(), 4);
        for ((uri, headers, body), (sdk_uri, sdk_headers, sdk_body)) in mine.iter().zip(&theirs) {
            assert_eq!(uri, sdk_uri);
            assert_eq!(body, sdk_body);
            assert_eq!(
                header(headers, "content-type"),
                header(sdk_headers, "content-type")
            );
            assert_eq!(header(headers, "x-amz-security-token"), "token");
            assert_eq!(header(headers, "x-amz-date"), "20261118T110640Z");
            let auth = header(headers, "authorization");
            assert!(
                auth.starts_with(
                    "AWS4-HMAC-SHA256 Credential=ASIAEXAMPLE/20261118/eu-west-1/execute-api/aws4_request, SignedHeaders=content-length;content-type;host;x-amz-date;x-amz-security-token, Signature="
                ),
                "{auth}"
            );
            // The SDK signs the same headers, and its own.
            let sdk_auth = header(sdk_headers, "authorization");
            assert!(
                sdk_auth.contains("content-length;content-type;host;x-amz-date"),
                "{sdk_auth}"
            );
        }
        assert_eq!(mine[0].0, format!("{URL}/@connections/L0SM9cOFvHcCIhw%3D"));
    }

    #[tokio::test]
    async fn throttling_and_5xx_are_retried_a_gone_or_refused_post_is_not() {
        let frame = Frame::new("hi");
        let script = Script::answering(&[
            (429, "LimitExceededException", r#"{"message":"slow down"}"#),
            (503, "", ""),
            (200, "", ""),
        ]);
        assert_eq!(client(&script).post("a", &frame).await, Ok(()));
        assert_eq!(script.calls(), 3);

        let script = Script::answering(&[(410, "GoneException", r#"{"message":"Gone"}"#)]);
        assert_eq!(
            client(&script).post("a", &frame).await,
            Err(PostError::Gone)
        );
        assert_eq!(script.calls(), 1);

        let script = Script::answering(&[(
            403,
            "AccessDeniedException",
            r#"{"Message":"User: arn:aws:sts::1:assumed-role/r/f is not authorized"}"#,
        )]);
        let Err(PostError::Other(e)) = client(&script).post("a", &frame).await else {
            panic!("a refusal is an error");
        };
        assert_eq!(script.calls(), 1);
        assert!(
            e.contains("HTTP 403 AccessDeniedException: User: arn:aws:sts"),
            "{e}"
        );

        // A connection that fails is tried again; a request that cannot be sent is not.
        let reset: fn() -> ConnectorError = || ConnectorError::io("connection reset".into());
        let unsendable: fn() -> ConnectorError = || ConnectorError::user("bad request".into());
        for (error, calls) in [(reset, 3), (unsendable, 1)] {
            let failing = Failing {
                error,
                calls: Arc::default(),
            };
            let Err(PostError::Other(e)) = client(&failing).post("a", &frame).await else {
                panic!("a failed send is an error");
            };
            assert_eq!(*failing.calls.lock().unwrap(), calls, "{e}");
        }

        let script = Script::answering(&[(500, "", "a"), (502, "", "b"), (504, "", "c")]);
        let Err(PostError::Other(e)) = client(&script).post("a", &frame).await else {
            panic!("three 5xx are an error");
        };
        assert_eq!(script.calls(), 3);
        assert!(
            e.contains("HTTP 504") && e.contains("after 3 attempts"),
            "{e}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_reply_is_tried_again_until_the_throttle_eases_or_patience_runs_out() {
        let frame = Frame::new("ack");
        // Four 429s in a row (a fan-out elsewhere holding the account's bucket empty): more
        // than a 5xx is allowed, and the reply still goes.
        let throttled = (
            429,
            "LimitExceededException",
            r#"{"message":"Rate exceeded"}"#,
        );
        let mut answers = vec![throttled; 4];
        answers.push((200, "", ""));
        let script = Script::answering(&answers);
        let started = tokio::time::Instant::now();
        assert_eq!(client(&script).post("a", &frame).await, Ok(()));
        assert_eq!(script.calls(), 5);
        assert!(started.elapsed() < THROTTLED_PATIENCE);

        // A throttle that never eases is given up within the patience, saying so.
        let script = Script::answering(&[throttled; 1000]);
        let started = tokio::time::Instant::now();
        let Err(PostError::Other(e)) = client(&script).post("a", &frame).await else {
            panic!("a throttle that never eases is an error");
        };
        assert!(started.elapsed() <= THROTTLED_PATIENCE, "{e}");
        assert!(script.calls() > ATTEMPTS as usize, "{e}");
        assert!(e.contains("HTTP 429 LimitExceededException"), "{e}");
    }

    #[tokio::test]
    async fn credentials_are_fetched_once_and_again_near_their_expiry() {
        #[derive(Debug)]
        struct Counting(Arc<Mutex<u32>>, SystemTime);
        impl ProvideCredentials for Counting {
            fn provide_credentials<'a>(
                &'a self,
            ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
            where
                Self: 'a,
            {
                *self.0.lock().unwrap() += 1;
                aws_credential_types::provider::future::ProvideCredentials::ready(Ok(
                    Credentials::new("ASIA", "s", Some("t".into()), Some(self.1), "test"),
                ))
            }
        }
        /// How often three posts fetch credentials that last `lifetime` from now.
        async fn fetches(lifetime: Duration) -> u32 {
            let fetched = Arc::new(Mutex::new(0));
            let client = client_with(
                &Script::default(),
                Counting(fetched.clone(), now() + lifetime),
            );
            for _ in 0..3 {
                client.post("a", &Frame::new("x")).await.unwrap();
            }
            *fetched.lock().unwrap()
        }
        assert_eq!(fetches(Duration::from_secs(3600)).await, 1);
        assert_eq!(fetches(Duration::from_secs(60)).await, 3);
    }
}
