//! Every other AWS call that reaches the gateway goes on to the emulator, so the gateway's URL
//! is a complete local AWS endpoint: `wsctl --endpoint-url http://127.0.0.1:8080 publish …`
//! invokes functions here and reads DynamoDB and SSM from moto, like any SDK client would.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::http::{Body, collect, json_response};

pub struct Upstream {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Upstream {
    pub fn new(base: &str) -> Upstream {
        Upstream {
            base: base.trim_end_matches('/').to_string(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub async fn forward(&self, req: Request<Incoming>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let Ok(uri) = format!("{}{path}", self.base).parse::<hyper::Uri>() else {
            return json_response(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"message": "bad request path"}),
            );
        };
        let body = collect(body).await;
        let mut out = Request::builder().method(parts.method).uri(uri);
        for (k, v) in &parts.headers {
            out = out.header(k, v);
        }
        let Ok(out) = out.body(Full::new(body)) else {
            return json_response(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"message": "bad request"}),
            );
        };
        match self.client.request(out).await {
            Ok(resp) => {
                let (parts, body) = resp.into_parts();
                Response::from_parts(parts, Full::new(collect(body).await))
            }
            Err(e) => json_response(
                StatusCode::BAD_GATEWAY,
                &serde_json::json!({"message": format!("the AWS emulator at {} did not answer: {e}", self.base)}),
            ),
        }
    }
}
