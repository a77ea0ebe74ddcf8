//! Every other AWS call that reaches the gateway goes on to the emulator, so the gateway's URL
//! is a complete local AWS endpoint: `wsctl --endpoint-url http://127.0.0.1:8080 publish …`
//! invokes functions here, reads and writes items in DynamoDB Local, and the rest (tables,
//! SSM) in moto, like any SDK client would.
//! The API's `apiEndpoint` is answered with the gateway's own address, as API Gateway answers
//! with the stage's host, so a client finds the stage the same way on AWS and here; so is a
//! function URL's `FunctionUrl`, where the gateway serves it (see `url`).

use bytes::Bytes;
use http_body_util::Full;
use hyper::http::request::Parts;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::http::{Body, collect, json_response};

pub struct Upstream {
    base: String,
    /// DynamoDB Local: the items of every table (see [`super::dynamodb`]).
    data_plane: String,
    /// The API this gateway serves (its id), and what GetApi and GetApis report as its
    /// endpoint: the gateway, `ws://host:port`. Other APIs of the emulator keep theirs.
    api_id: String,
    api_endpoint: String,
    /// `http://host:port`: where function URLs are served.
    http_base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Upstream {
    pub fn new(base: &str, data_plane: &str, api_id: &str, api_endpoint: &str) -> Upstream {
        Upstream {
            base: base.trim_end_matches('/').to_string(),
            data_plane: data_plane.trim_end_matches('/').to_string(),
            api_id: api_id.to_string(),
            api_endpoint: api_endpoint.to_string(),
            http_base: api_endpoint.replacen("ws://", "http://", 1),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Whether `function` has a URL in the emulator (`GetFunctionUrlConfig` in `region`).
    pub async fn has_function_url(&self, function: &str, region: &str) -> bool {
        let uri = format!("{}/2021-10-31/functions/{function}/url", self.base);
        // The emulator tells services apart by the credential scope, and checks no signature.
        let scope = format!(
            "AWS4-HMAC-SHA256 Credential=local/20260101/{region}/lambda/aws4_request, SignedHeaders=host, Signature=0"
        );
        let request = Request::get(uri).header("authorization", scope);
        let Ok(request) = request.body(Full::new(Bytes::new())) else {
            return false;
        };
        matches!(self.client.request(request).await, Ok(r) if r.status().is_success())
    }

    pub async fn forward(&self, parts: Parts, body: Bytes) -> Response<Body> {
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        // DynamoDB's JSON protocol names the call in X-Amz-Target: `DynamoDB_20120810.GetItem`.
        let items = parts
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .and_then(|t| t.strip_prefix("DynamoDB_20120810."))
            .is_some_and(|op| super::dynamodb::DATA_PLANE.contains(&op));
        let base = if items { &self.data_plane } else { &self.base };
        let Ok(uri) = format!("{base}{path}").parse::<hyper::Uri>() else {
            return json_response(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"message": "bad request path"}),
            );
        };
        let mut out = Request::builder().method(parts.method).uri(uri);
        for (k, v) in &parts.headers {
            out = out.header(k, v);
        }
        // API Gateway v2's REST paths: /v2/apis and /v2/apis/{id}.
        let api_read = parts
            .uri
            .path()
            .trim_end_matches('/')
            .strip_prefix("/v2/apis")
            .is_some_and(|rest| {
                rest.is_empty() || (rest.starts_with('/') && !rest[1..].contains('/'))
            });
        // Lambda's function URL configurations: /2021-10-31/functions/{name}/url(s).
        let url_read = {
            let p = parts.uri.path().trim_end_matches('/');
            p.contains("/functions/") && (p.ends_with("/url") || p.ends_with("/urls"))
        };
        let Ok(out) = out.body(Full::new(body)) else {
            return json_response(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"message": "bad request"}),
            );
        };
        match self.client.request(out).await {
            Ok(resp) => {
                let (mut parts, body) = resp.into_parts();
                let mut body = collect(body).await;
                let rewritten = match (api_read, url_read) {
                    _ if !parts.status.is_success() => None,
                    (true, _) => with_endpoint(&body, &self.api_id, &self.api_endpoint),
                    (_, true) => with_function_url(&body, &self.http_base),
                    _ => None,
                };
                if let Some(rewritten) = rewritten {
                    body = rewritten;
                    parts
                        .headers
                        .insert(hyper::header::CONTENT_LENGTH, body.len().into());
                }
                Response::from_parts(parts, Full::new(body))
            }
            Err(e) => json_response(
                StatusCode::BAD_GATEWAY,
                &serde_json::json!({"message": format!("the AWS emulator at {base} did not answer: {e}")}),
            ),
        }
    }
}

/// An API (or a page of them) with the `apiEndpoint` of API `id` set to `endpoint`; `None` if
/// it is not there.
fn with_endpoint(body: &[u8], id: &str, endpoint: &str) -> Option<Bytes> {
    let mut doc: serde_json::Value = serde_json::from_slice(body).ok()?;
    let mut changed = false;
    let mut set = |api: &mut serde_json::Value| {
        if api.get("apiId").and_then(|v| v.as_str()) == Some(id)
            && let Some(e) = api.get_mut("apiEndpoint")
        {
            *e = endpoint.into();
            changed = true;
        }
    };
    set(&mut doc);
    if let Some(items) = doc.get_mut("items").and_then(|i| i.as_array_mut()) {
        items.iter_mut().for_each(&mut set);
    }
    changed.then(|| Bytes::from(doc.to_string()))
}

/// A function URL configuration (or a page of them) with each `FunctionUrl` where the gateway
/// at `base` serves it; `None` if there is none.
fn with_function_url(body: &[u8], base: &str) -> Option<Bytes> {
    let mut doc: serde_json::Value = serde_json::from_slice(body).ok()?;
    let mut changed = false;
    let mut set = |config: &mut serde_json::Value| {
        let Some(arn) = config.get("FunctionArn").and_then(|v| v.as_str()) else {
            return;
        };
        let function = super::invoke::function_name(arn).to_string();
        if let Some(url) = config.get_mut("FunctionUrl") {
            *url = super::url::address(base, &function).into();
            changed = true;
        }
    };
    set(&mut doc);
    if let Some(items) = doc
        .get_mut("FunctionUrlConfigs")
        .and_then(|i| i.as_array_mut())
    {
        items.iter_mut().for_each(&mut set);
    }
    changed.then(|| Bytes::from(doc.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_function_url_is_the_gateways() {
        let one = br#"{"FunctionUrl":"https://abc.lambda-url.us-east-1.on.aws","FunctionArn":"arn:aws:lambda:us-east-1:123456789012:function:chat-dev-publish","AuthType":"AWS_IAM"}"#;
        let got: serde_json::Value =
            serde_json::from_slice(&with_function_url(one, "http://127.0.0.1:9").unwrap()).unwrap();
        assert_eq!(
            got["FunctionUrl"],
            "http://127.0.0.1:9/_lambda-url/chat-dev-publish/"
        );
        assert_eq!(got["AuthType"], "AWS_IAM");
        assert!(with_function_url(br#"{"Message":"x"}"#, "http://x").is_none());
    }

    #[test]
    fn the_api_endpoint_is_the_gateway() {
        let one = br#"{"apiId":"a1","apiEndpoint":"https://a1.execute-api.us-east-1.amazonaws.com","name":"x"}"#;
        let got: serde_json::Value =
            serde_json::from_slice(&with_endpoint(one, "a1", "ws://127.0.0.1:9").unwrap()).unwrap();
        assert_eq!(got["apiEndpoint"], "ws://127.0.0.1:9");
        assert_eq!(got["name"], "x");
        // Only the API this gateway serves: another stack's API keeps its AWS address.
        let page = br#"{"items":[{"apiId":"a1","apiEndpoint":"https://h"},{"apiId":"b2","apiEndpoint":"https://g"}]}"#;
        let got: serde_json::Value =
            serde_json::from_slice(&with_endpoint(page, "a1", "ws://127.0.0.1:9").unwrap())
                .unwrap();
        assert_eq!(got["items"][0]["apiEndpoint"], "ws://127.0.0.1:9");
        assert_eq!(got["items"][1]["apiEndpoint"], "https://g");
        assert!(with_endpoint(one, "b2", "ws://x").is_none());
        assert!(with_endpoint(br#"{"items":[]}"#, "a1", "ws://x").is_none());
        assert!(with_endpoint(b"not json", "a1", "ws://x").is_none());
    }
}
