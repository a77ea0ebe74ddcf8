//! Events to the routes' integrations: `$connect` decides a handshake, `$disconnect` hears how a
//! connection ended, and each frame goes to the route its selection expression picks. A frame
//! that fails gets API Gateway's error frame back, under the request id its event carried.

use std::sync::Arc;

use hyper::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

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
    let mut call = route.call(|stamp| events::connect(origin, hs, authorizer, stamp));
    match call.answer().await {
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
    }
}

/// `$disconnect`, with the close code and reason API Gateway reports.
pub async fn disconnect(gw: &Gateway, conn: &Conn, code: u16, reason: &str) {
    let Some(route) = gw.api.routes.get("$disconnect") else {
        return;
    };
    let mut call = route.call(|stamp| {
        events::disconnect(&conn.origin, code, reason, conn.authorizer.as_ref(), stamp)
    });
    if let Err(failed) = call.answer().await {
        gw.note(&format!(
            "$disconnect failed for {} (request {}): {failed}",
            conn.origin.connection_id, call.request_id
        ));
    }
}

/// Hands a frame to its route's function. Frames of one connection run concurrently, as on
/// API Gateway; a failed integration answers the client with the service's error frame.
pub fn message(gw: &Arc<Gateway>, conn: &Arc<Conn>, body: String, base64: bool) {
    let route_key = gw
        .api
        .route_for((!base64).then_some(body.as_str()))
        .to_string();
    let Some(route) = gw.api.routes.get(&route_key) else {
        // No function runs, yet the client gets a request id as from any other request.
        let _ = conn.tx.try_send(error_frame(
            "Forbidden",
            &conn.origin.connection_id,
            &events::request_id(),
        ));
        return;
    };
    if gw.api.throttle.as_ref().is_some_and(|t| !t.take()) {
        let _ = conn.tx.try_send(error_frame(
            "Too Many Requests",
            &conn.origin.connection_id,
            &events::request_id(),
        ));
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
    tokio::spawn(async move {
        let text = match call.answer().await {
            Ok(_) => return,
            Err(Failed::Function(f)) => {
                gw.note(&format!(
                    "{route_key} failed for {} (request {}): {f}",
                    conn.origin.connection_id, call.request_id
                ));
                "Internal server error"
            }
            Err(Failed::TimedOut) => "Endpoint request timed out",
        };
        let frame = error_frame(text, &conn.origin.connection_id, &call.request_id);
        let _ = conn.tx.send(frame).await;
    });
}

/// What API Gateway sends a client whose frame could not be handled.
fn error_frame(text: &str, connection_id: &str, request_id: &str) -> Out {
    Out::Frame(Message::text(
        json!({"message": text, "connectionId": connection_id, "requestId": request_id})
            .to_string(),
    ))
}
