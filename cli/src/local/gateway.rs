//! The WebSocket gateway: one loopback HTTP port that behaves like a deployed API Gateway
//! WebSocket API and its stage.
//!
//! - `GET /{stage}` with `Upgrade: websocket`: a connection (see `session`);
//! - `/{stage}/@connections/{id}`: the management API (see `connections`);
//! - `/2015-03-31/functions/{name}/invocations`: Lambda's Invoke (see `invoke`);
//! - `/_lambda-url/{name}/`: a function's URL (see `url`);
//! - `/` the demo page and `/_wsctl/*` the dev-only helpers (see `endpoints`);
//! - anything else is forwarded to the emulator (see `proxy`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub use super::endpoints::Minter;
pub use super::state::{Gateway, Limits};

use bytes::Bytes;

use super::http::{Body, collect, json_response, message, percent_decode, query_param};
use super::likeaws::{Call, LikeAws};
use super::{
    connections, crowd, dispatch, endpoints, events, guard, iam, invoke, partitions, session, url,
};

/// Serves until `stop` turns true.
pub async fn serve(gw: Arc<Gateway>, listener: TcpListener) {
    let mut stop = gw.stop.clone();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of file descriptors, most likely: back off rather than spin.
                Err(_) => { tokio::time::sleep(Duration::from_millis(50)).await; continue }
            },
            _ = stop.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let gw = gw.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| route(gw.clone(), req, peer));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

async fn route(
    gw: Arc<Gateway>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let stage = gw.api.stage.as_str();
    let upgrade = req.headers().contains_key("upgrade");
    let websocket = matches!(segments.as_slice(), [s] | [s, ""] if *s == stage) && upgrade;
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let port = gw.domain.rsplit_once(':').map_or("", |(_, p)| p);
    if let Some(why) = guard::refuse(header("host"), header("origin"), port, websocket) {
        gw.note(&format!("refused {} {path}: {why}", req.method()));
        return Ok(message(StatusCode::FORBIDDEN, &why));
    }
    if websocket {
        return Ok(session::handshake(gw, req, peer).await);
    }
    let (parts, body) = req.into_parts();
    let body = collect(body).await;
    if let Some(refused) = iam_refusal(&gw, &parts, &segments, &body) {
        return Ok(refused);
    }
    Ok(match segments.as_slice() {
        [s] | [s, ""] if *s == stage => message(
            StatusCode::UPGRADE_REQUIRED,
            "this is a WebSocket endpoint: connect with a WebSocket client",
        ),
        [s, "@connections", id] if *s == stage => {
            if let Some(like) = &gw.like_aws {
                if !like.throttle.take() {
                    return Ok(connections::throttled());
                }
                like.delay(Call::Connections).await;
            }
            let id = percent_decode(id);
            let conn = gw.conns.get(&id);
            let response = connections::api(&gw.conns, &parts.method, &id, body);
            // A virtual subscriber has no socket task to run its `$disconnect`.
            if let Some(conn) = conn.filter(|c| c.arrivals().is_some())
                && parts.method == Method::DELETE
                && response.status() == StatusCode::NO_CONTENT
            {
                let gw = gw.clone();
                tokio::spawn(async move {
                    let reason = "Connection closed through the @connections API";
                    dispatch::disconnect(&gw, &conn, 1000, reason).await;
                });
            }
            response
        }
        ["2015-03-31", "functions", name, "invocations"] => {
            if let Some(like) = &gw.like_aws {
                like.delay(Call::Invoke).await;
            }
            invoke::handle(&gw, &parts, body, &percent_decode(name)).await
        }
        ["_lambda-url", function, rest @ ..] => {
            url::serve(&gw, &parts, body, &percent_decode(function), rest).await
        }
        [""] | ["index.html"] if parts.method == Method::GET => endpoints::page(&gw.page),
        ["_wsctl", "stats"] if parts.method == Method::GET => {
            let meter = &gw.conns.meter;
            let now = events::epoch_ms();
            let limit = gw.like_aws.as_ref().map(|l| l.concurrency);
            let stats = meter.stats(limit, &gw.conns.open_since(), now);
            if query_param(parts.uri.query(), "reset").is_some() {
                meter.reset(now);
            }
            json_response(StatusCode::OK, &stats)
        }
        ["_wsctl", "virtual"] => {
            let origin = events::Origin {
                api_id: gw.api.api_id.clone(),
                stage: gw.api.stage.clone(),
                domain: gw.domain.clone(),
                connection_id: String::new(),
                connected_at: 0,
                source_ip: "127.0.0.1".into(),
                user_agent: None,
            };
            crowd::serve(
                &gw.crowd,
                &gw.conns,
                &origin,
                &parts.method,
                parts.uri.query(),
            )
            .await
        }
        ["_wsctl", rest @ ..] => endpoints::dev(
            &parts.method,
            rest,
            parts.uri.query(),
            gw.minter.as_ref(),
            &gw.conns,
        ),
        _ => {
            let dynamodb = parts
                .headers
                .get("x-amz-target")
                .and_then(|v| v.to_str().ok())
                .and_then(|t| t.strip_prefix("DynamoDB_20120810."))
                .map(str::to_string);
            match (&gw.like_aws, dynamodb) {
                (Some(like), Some(op)) => {
                    like.delay(Call::Dynamodb).await;
                    like_dynamodb(&gw, like, &op, parts, body).await
                }
                _ => gw.upstream.forward(parts, body).await,
            }
        }
    })
}

/// A DynamoDB call under `--like-aws`: refused while a partition it touches is over its
/// throughput, else sent with its units counted (`partitions.rs`).
async fn like_dynamodb(
    gw: &Gateway,
    like: &LikeAws,
    op: &str,
    mut parts: Parts,
    body: Bytes,
) -> Response<Body> {
    let Some(call) = like.partitions.call(op, &body) else {
        return gw.upstream.forward(parts, body).await;
    };
    let meter = &gw.conns.meter;
    if let Err(hot) = like.partitions.admit(&call) {
        meter.dynamodb_throttled();
        return partitions::throttled(hot, call.kind, &gw.api.region, &gw.api.account);
    }
    parts.headers.remove(hyper::header::CONTENT_LENGTH);
    let response = gw.upstream.forward(parts, call.body.clone()).await;
    let (mut head, answer) = response.into_parts();
    let answer = answer
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let (units, rewritten) = like.partitions.settle(&call, head.status.as_u16(), &answer);
    meter.dynamodb(call.kind == partitions::Kind::Write, units);
    let answer = match rewritten {
        Some(body) => {
            // The engine's checksum is of the body before the units were taken out.
            head.headers.remove("x-amz-crc32");
            // A large answer came in chunks; it goes out whole.
            head.headers.remove(hyper::header::TRANSFER_ENCODING);
            head.headers
                .insert(hyper::header::CONTENT_LENGTH, body.len().into());
            body
        }
        None => answer,
    };
    Response::from_parts(head, Body::new(answer))
}

/// A function's call its role does not allow, answered as the service would; `None` to serve
/// it. Calls not signed with a function's credentials (the CLI's, a browser's) pass.
fn iam_refusal(
    gw: &Gateway,
    parts: &Parts,
    segments: &[&str],
    body: &[u8],
) -> Option<Response<Body>> {
    let me = gw.iam.as_ref()?.signer(&parts.headers)?;
    let api = &gw.api;
    let scope = iam::Scope {
        region: &api.region,
        account: &api.account,
    };
    let (service, asks) = match segments {
        [s, "@connections", id] if *s == api.stage => (
            iam::Service::ExecuteApi,
            scope.manage_connections(
                &api.api_id,
                &api.stage,
                parts.method.as_str(),
                &percent_decode(id),
            ),
        ),
        ["2015-03-31", "functions", name, "invocations"] => {
            let name = percent_decode(name);
            let qualifier = query_param(parts.uri.query(), "Qualifier")
                .or_else(|| invoke::qualifier(&name).map(str::to_string));
            (
                iam::Service::Lambda,
                scope.invoke(invoke::function_name(&name), qualifier.as_deref()),
            )
        }
        _ => {
            let target = parts.headers.get("x-amz-target")?.to_str().ok()?;
            scope.json_call(target, body)?
        }
    };
    let denied = me.check(&asks).err()?;
    gw.note(&format!("refused: {}", denied.0));
    Some(iam::refusal(service, &denied))
}
