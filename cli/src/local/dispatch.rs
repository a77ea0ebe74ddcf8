//! Events to the routes' integrations: `$connect` decides a handshake, `$disconnect` hears how a
//! connection ended, and each frame goes to the route its selection expression picks. A frame
//! that fails gets API Gateway's error frame back, under the request id its event carried.

use std::sync::Arc;
use std::time::Instant;

use hyper::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::access::Request;
use super::connections::{Conn, Out};
use super::events::{self, Handshake, Origin};
use super::integration::Failed;
use super::state::Gateway;

/// `$connect`: `Ok(the subprotocol to answer with)` to accept, `Err(status)` to refuse.
pub async fn connect(
    gw: &Gateway,
    origin: &Origin,
    hs: &Handshake,
    authorizer: Option<&Value>,
) -> Result<Option<String>, StatusCode> {
    let Some(route) = gw.api.routes.get("$connect") else {
        return Ok(None);
    };
    gw.conns.meter.connect();
    let started = Instant::now();
    let mut call = route.call(|stamp| events::connect(origin, hs, authorizer, stamp));
    let decided = match call.answer().await {
        Ok(doc) => {
            let protocol = doc
                .pointer("/headers/Sec-WebSocket-Protocol")
                .and_then(Value::as_str)
                .map(str::to_string);
            match doc.get("statusCode").and_then(Value::as_u64) {
                Some(code) if !(200..300).contains(&code) => Err(u16::try_from(code)
                    .ok()
                    .and_then(|c| StatusCode::from_u16(c).ok())
                    .filter(|c| c.as_u16() >= 300)
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)),
                _ => Ok(protocol),
            }
        }
        Err(Failed::Function(f)) => {
            gw.note(&format!(
                "$connect failed for {} (request {}): {f}",
                origin.connection_id, call.request_id
            ));
            Err(StatusCode::INTERNAL_SERVER_ERROR)
        }
        Err(Failed::TimedOut) => Err(StatusCode::GATEWAY_TIMEOUT),
    };
    let status = decided.as_ref().map_or_else(|s| s.as_u16(), |_| 200);
    gw.access(&Request {
        request_id: &call.request_id,
        connection_id: &origin.connection_id,
        event_type: "CONNECT",
        route_key: "$connect",
        status,
        request_time_ms: origin.connected_at,
        source_ip: &origin.source_ip,
        integration_latency_ms: Some(started.elapsed().as_millis() as u64),
        error: decided.is_err().then_some("Connection refused by $connect"),
        ..Default::default()
    });
    decided
}

/// `$disconnect`, with the close code and reason API Gateway reports.
pub async fn disconnect(gw: &Gateway, conn: &Conn, code: u16, reason: &str) {
    let Some(route) = gw.api.routes.get("$disconnect") else {
        return;
    };
    let (started, at) = (Instant::now(), events::epoch_ms());
    let mut call = route.call(|stamp| {
        events::disconnect(&conn.origin, code, reason, conn.authorizer.as_ref(), stamp)
    });
    let answered = call.answer().await;
    if let Err(failed) = &answered {
        gw.note(&format!(
            "$disconnect failed for {} (request {}): {failed}",
            conn.origin.connection_id, call.request_id
        ));
    }
    gw.access(&Request {
        request_id: &call.request_id,
        connection_id: &conn.origin.connection_id,
        event_type: "DISCONNECT",
        route_key: "$disconnect",
        status: if answered.is_ok() { 200 } else { 500 },
        request_time_ms: at,
        source_ip: &conn.origin.source_ip,
        integration_latency_ms: Some(started.elapsed().as_millis() as u64),
        ..Default::default()
    });
}

/// Hands a frame to its route's function. Frames of one connection run concurrently, as on
/// API Gateway; a failed integration answers the client with the service's error frame.
pub fn message(gw: &Arc<Gateway>, conn: &Arc<Conn>, body: String, base64: bool) {
    let route_key = gw
        .api
        .route_for((!base64).then_some(body.as_str()))
        .to_string();
    let at = events::epoch_ms();
    let refused = |status: u16, text: &str| {
        // No function runs, yet the client gets a request id as from any other request.
        let request_id = events::request_id();
        let _ = conn
            .tx
            .try_send(error_frame(text, &conn.origin.connection_id, &request_id));
        gw.access(&Request {
            request_id: &request_id,
            connection_id: &conn.origin.connection_id,
            event_type: "MESSAGE",
            route_key: &route_key,
            status,
            request_time_ms: at,
            source_ip: &conn.origin.source_ip,
            error: Some(text),
            ..Default::default()
        });
    };
    let Some(route) = gw.api.routes.get(&route_key) else {
        refused(403, "Forbidden");
        return;
    };
    if gw.api.throttle.as_ref().is_some_and(|t| !t.take()) {
        refused(429, "Too Many Requests");
        return;
    }
    // Base64 carries a binary frame: four characters for three bytes.
    gw.conns.meter.message(if base64 {
        body.len() / 4 * 3
    } else {
        body.len()
    });
    // Queued here, in the order the frames arrived; only the wait for the answer is spawned.
    let mut call = route.call(|stamp| {
        events::message(
            &conn.origin,
            &route_key,
            &body,
            base64,
            conn.authorizer.as_ref(),
            stamp,
        )
    });
    let (gw, conn) = (gw.clone(), conn.clone());
    let started = Instant::now();
    tokio::spawn(async move {
        let failed = match call.answer().await {
            Ok(_) => None,
            Err(Failed::Function(f)) => {
                gw.note(&format!(
                    "{route_key} failed for {} (request {}): {f}",
                    conn.origin.connection_id, call.request_id
                ));
                Some((500, "Internal server error"))
            }
            Err(Failed::TimedOut) => Some((504, "Endpoint request timed out")),
        };
        gw.access(&Request {
            request_id: &call.request_id,
            connection_id: &conn.origin.connection_id,
            event_type: "MESSAGE",
            route_key: &route_key,
            status: failed.map_or(200, |(status, _)| status),
            request_time_ms: at,
            source_ip: &conn.origin.source_ip,
            integration_latency_ms: Some(started.elapsed().as_millis() as u64),
            error: failed.map(|(_, text)| text),
            ..Default::default()
        });
        if let Some((_, text)) = failed {
            let frame = error_frame(text, &conn.origin.connection_id, &call.request_id);
            let _ = conn.tx.send(frame).await;
        }
    });
}

/// What API Gateway sends a client whose frame could not be handled.
fn error_frame(text: &str, connection_id: &str, request_id: &str) -> Out {
    Out::Frame(Message::text(
        json!({"message": text, "connectionId": connection_id, "requestId": request_id})
            .to_string(),
    ))
}
