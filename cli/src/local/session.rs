//! One WebSocket connection from handshake to `$disconnect`: the handshake through the
//! authorizer and `$connect`, then the socket's loop (frames in, `@connections` posts out, API
//! Gateway's frame, message, idle and lifetime limits), then its end.
//!
//! A connection is listed in the registry through an [`Entry`] the session holds; it leaves
//! when the entry is dropped, and `$disconnect` runs only from `finish`, which consumes the
//! entry, so a connection is forgotten in one place and disconnected at most once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::connections::{Conn, Entry, MAX_MESSAGE, Out};
use super::dispatch;
use super::events::{self, Handshake, Origin};
use super::http::{Body, message, query_pairs, respond};
use super::state::Gateway;

/// API Gateway's quota for one frame.
pub const MAX_FRAME: usize = 32 * 1024;
/// How long a write to one client may take before the client counts as gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET /{stage}` with `Upgrade: websocket`.
pub async fn handshake(
    gw: Arc<Gateway>,
    mut req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let headers = req.headers();
    let key = headers
        .get("sec-websocket-key")
        .map(|k| k.as_bytes().to_vec());
    let is_ws = headers
        .get("upgrade")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let (Some(key), true) = (key, is_ws) else {
        return message(
            StatusCode::BAD_REQUEST,
            "not a WebSocket handshake: Upgrade: websocket and Sec-WebSocket-Key are required",
        );
    };
    if headers
        .get("sec-websocket-version")
        .and_then(|v| v.to_str().ok())
        != Some("13")
    {
        return message(
            StatusCode::BAD_REQUEST,
            "unsupported Sec-WebSocket-Version: 13 is required",
        );
    }
    let hs = Handshake {
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    title_case(k.as_str()),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .chain([
                ("X-Forwarded-For".into(), peer.ip().to_string()),
                ("X-Forwarded-Proto".into(), "http".into()),
            ])
            .collect(),
        query: query_pairs(req.uri().query()),
    };
    let origin = Origin {
        api_id: gw.api.api_id.clone(),
        stage: gw.api.stage.clone(),
        domain: gw.domain.clone(),
        connection_id: events::connection_id(),
        connected_at: events::epoch_ms(),
        source_ip: peer.ip().to_string(),
        user_agent: headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    };
    let authorizer = match &gw.api.authorizer {
        Some(auth) => {
            let arn = origin.method_arn(&gw.api.region, &gw.api.account);
            match auth
                .authorize(&origin, &hs, &arn, |line| gw.note(line))
                .await
            {
                Ok(ctx) => Some(ctx),
                Err(refused) => {
                    let status = refused.status();
                    gw.access(&super::access::Request {
                        request_id: &super::events::request_id(),
                        connection_id: &origin.connection_id,
                        event_type: "CONNECT",
                        route_key: "$connect",
                        status: status.as_u16(),
                        request_time_ms: origin.connected_at,
                        source_ip: &origin.source_ip,
                        authorizer_error: Some(status.canonical_reason().unwrap_or("Unauthorized")),
                        ..Default::default()
                    });
                    return refused;
                }
            }
        }
        None => None,
    };
    // Known but not open while `$connect` runs: posting to it answers 410, as on AWS. If the
    // client goes away meanwhile, hyper drops this future, and the entry with it.
    let (tx, rx) = mpsc::channel(256);
    let conn = Arc::new(Conn::new(origin.clone(), authorizer.clone(), tx));
    let entry = gw.conns.enter(conn.clone());
    let protocol = match dispatch::connect(&gw, &origin, &hs, authorizer.as_ref()).await {
        Ok(protocol) => protocol,
        Err(status) => {
            let text = if status == StatusCode::INTERNAL_SERVER_ERROR {
                "Internal server error"
            } else {
                "Connection refused by $connect"
            };
            return message(status, text);
        }
    };
    // Open from before the 101 goes out, as on AWS: a client that has its handshake can be
    // posted to at once. Frames posted before the socket task starts wait in its queue.
    conn.open();
    let upgrade = hyper::upgrade::on(&mut req);
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
    let gw2 = gw.clone();
    tokio::spawn(async move {
        let end = match upgrade.await {
            Ok(upgraded) => run(&gw2, &conn, rx, TokioIo::new(upgraded)).await,
            Err(_) => End::Closed(
                1006,
                "Connection closed abnormally before the handshake completed".into(),
            ),
        };
        finish(&gw2, entry, end).await;
    });
    let mut r = respond(StatusCode::SWITCHING_PROTOCOLS, Bytes::new());
    let h = r.headers_mut();
    h.insert("upgrade", HeaderValue::from_static("websocket"));
    h.insert("connection", HeaderValue::from_static("Upgrade"));
    h.insert(
        "sec-websocket-accept",
        HeaderValue::from_str(&accept).expect("base64 is a valid header"),
    );
    if let Some(p) = protocol.and_then(|p| HeaderValue::from_str(&p).ok()) {
        h.insert("sec-websocket-protocol", p);
    }
    r
}

/// Header names as clients usually spell them (hyper lowercases them).
fn title_case(name: &str) -> String {
    name.split('-')
        .map(|w| match w {
            "websocket" => "WebSocket".to_string(),
            _ => {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                    .unwrap_or_default()
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// How a connection ended.
enum End {
    /// With the close code and reason `$disconnect` reports.
    Closed(u16, String),
    /// Without `$disconnect`: the fault switch, or wsctl dev stopping.
    Vanished,
}

/// The connection leaves the registry (dropping its entry), then `$disconnect` runs.
async fn finish(gw: &Gateway, entry: Entry, end: End) {
    let conn = entry.conn().clone();
    drop(entry);
    if let End::Closed(code, reason) = end {
        dispatch::disconnect(gw, &conn, code, &reason).await;
    }
}

/// One open connection: frames in, `@connections` posts out, limits enforced.
async fn run<S>(gw: &Arc<Gateway>, conn: &Arc<Conn>, mut rx: mpsc::Receiver<Out>, io: S) -> End
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config())).await;
    let idle = tokio::time::sleep(gw.limits.idle);
    let lifetime = tokio::time::sleep(gw.limits.lifetime);
    tokio::pin!(idle, lifetime);
    let mut stop = gw.stop.clone();
    loop {
        tokio::select! {
            frame = ws.next() => {
                conn.touch();
                idle.as_mut().reset(tokio::time::Instant::now() + gw.limits.idle);
                match frame {
                    Some(Ok(Message::Text(t))) => dispatch::message(gw, conn, t.as_str().to_string(), false),
                    Some(Ok(Message::Binary(b))) => dispatch::message(gw, conn, base64::engine::general_purpose::STANDARD.encode(&b), true),
                    Some(Ok(Message::Close(frame))) => {
                        let _ = ws.flush().await;
                        return match frame {
                            Some(f) => End::Closed(u16::from(f.code), format!("Client-side close frame status set: {}", f.reason)),
                            None => End::Closed(1005, "Client-side close frame status not set".into()),
                        };
                    }
                    Some(Ok(_)) => {}
                    Some(Err(WsError::Capacity(e))) => {
                        gw.note(&format!("{}: {e}; closing with 1009", conn.origin.connection_id));
                        let _ = tokio::time::timeout(WRITE_TIMEOUT, ws.send(close_frame(1009, "Message too big"))).await;
                        return End::Closed(1009, "Message too big".into());
                    }
                    Some(Err(_)) | None => return End::Closed(1006, "Connection closed abnormally".into()),
                }
            }
            out = rx.recv() => match out {
                Some(Out::Frame(m)) => {
                    if !matches!(tokio::time::timeout(WRITE_TIMEOUT, ws.send(m)).await, Ok(Ok(()))) {
                        return End::Closed(1006, "Connection closed abnormally".into());
                    }
                }
                Some(Out::Close) => {
                    close(conn, &mut ws, 1000, "").await;
                    return End::Closed(1000, "Connection closed through the @connections API".into());
                }
                // The fault switch: gone without a close frame and without `$disconnect`.
                Some(Out::Drop) | None => return End::Vanished,
            },
            _ = &mut idle => {
                close(conn, &mut ws, 1001, "Going away").await;
                return End::Closed(1001, "Idle timeout".into());
            }
            _ = &mut lifetime => {
                close(conn, &mut ws, 1001, "Going away").await;
                return End::Closed(1001, "Maximum connection lifetime reached".into());
            }
            _ = stop.changed() => {
                conn.close();
                let _ = ws.send(close_frame(1001, "Going away")).await;
                return End::Vanished;
            }
        }
    }
}

/// Sends a server-side close and waits briefly for the client's reply, so the close code
/// arrives rather than a reset. The connection is gone for `@connections` from the start.
async fn close<S>(conn: &Conn, ws: &mut WebSocketStream<S>, code: u16, reason: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    conn.close();
    if tokio::time::timeout(WRITE_TIMEOUT, ws.send(close_frame(code, reason)))
        .await
        .is_ok()
    {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
    }
}

fn config() -> WebSocketConfig {
    // A small eagerly-allocated read buffer keeps 10,000 idle connections cheap.
    let mut c = WebSocketConfig::default();
    c.read_buffer_size = 4096;
    c.write_buffer_size = 0;
    c.max_message_size = Some(MAX_MESSAGE);
    c.max_frame_size = Some(MAX_FRAME);
    c
}

fn close_frame(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code: code.into(),
        reason: reason.to_string().into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::title_case;

    #[test]
    fn decoding() {
        assert_eq!(title_case("sec-websocket-key"), "Sec-WebSocket-Key");
    }
}
