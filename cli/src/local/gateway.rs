//! The WebSocket gateway: one loopback HTTP port that behaves like a deployed API Gateway
//! WebSocket API and its stage.
//!
//! - `GET /{stage}` with `Upgrade: websocket`: a connection (see `session`);
//! - `/{stage}/@connections/{id}`: the management API (see `connections`);
//! - `/2015-03-31/functions/{name}/invocations`: Lambda's Invoke (see `invoke`);
//! - `/` the demo page and `/_wsctl/*` the dev-only helpers (see `endpoints`);
//! - anything else is forwarded to the emulator (see `proxy`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub use super::endpoints::Minter;
pub use super::state::{Gateway, Limits};

use super::http::{Body, collect, message, percent_decode};
use super::{connections, endpoints, guard, invoke, session};

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
    Ok(match segments.as_slice() {
        [s] | [s, ""] if *s == stage && upgrade => session::handshake(gw, req, peer).await,
        [s] | [s, ""] if *s == stage => message(
            StatusCode::UPGRADE_REQUIRED,
            "this is a WebSocket endpoint: connect with a WebSocket client",
        ),
        [s, "@connections", id] if *s == stage => {
            let id = percent_decode(id);
            let method = req.method().clone();
            let body = collect(req.into_body()).await;
            connections::api(&gw.conns, &method, &id, body)
        }
        ["2015-03-31", "functions", name, "invocations"] => {
            let name = percent_decode(name);
            invoke::handle(&gw, req, &name).await
        }
        [""] | ["index.html"] if req.method() == Method::GET => endpoints::page(&gw.page),
        ["_wsctl", rest @ ..] => endpoints::dev(
            req.method(),
            rest,
            req.uri().query(),
            gw.minter.as_ref(),
            &gw.conns,
        ),
        _ => gw.upstream.forward(req).await,
    })
}
