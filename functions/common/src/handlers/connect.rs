//! `$connect`: stores the connection with the identity the authorizer established. A failure
//! here fails the handshake, so no connection exists that the store does not know. A user who
//! already holds `limits.connections_per_user` connections is refused.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};

use crate::Services;
use crate::auth::now;
use crate::events::Event;
use crate::store::{Connection, StoreError};

pub async fn handle(
    ctx: &Services,
    event: &ApiGatewayWebsocketProxyRequest,
) -> Result<ApiGatewayProxyResponse, StoreError> {
    let rc = &event.request_context;
    let verified = super::identity(rc);
    let id = super::connection_id(rc);
    // Without an authorizer every connection is `anonymous`: there is no user to count.
    if let Some((user, _)) = &verified {
        let max = ctx.limits.connections_per_user;
        if !ctx.store.open_connection(user, &id, max).await? {
            tracing::info!(user = %user, max, "refused: connections_per_user");
            crate::metrics::add_by("ConnectsRefused", "Reason", "connections_per_user", 1.0);
            return Ok(too_many(max));
        }
    }
    let (user, capabilities) = verified.unwrap_or_else(|| ("anonymous".into(), Default::default()));
    let connected_at = if rc.connected_at > 0 {
        rc.connected_at as u64 / 1000
    } else {
        now()
    };
    let connection = Connection {
        id,
        user,
        capabilities,
        connected_at,
    };
    if let Err(e) = ctx.store.put_connection(&connection).await {
        // The handshake fails: its place among the user's connections goes with it.
        let _ = ctx
            .store
            .close_connection(&connection.user, &connection.id)
            .await;
        return Err(e);
    }
    tracing::info!(user = %connection.user, "connected");
    crate::metrics::add("Connects", 1.0);
    ctx.event(|| Event::connected(&connection.id, &connection.user));
    Ok(super::ok())
}

/// A `$connect` integration's non-2xx answer refuses the handshake, and API Gateway answers the
/// upgrade request with it ("Set up a `$connect` route that requires a WebSocket subprotocol",
/// API Gateway Developer Guide, refuses with the Lambda proxy response's `statusCode`). 429 Too
/// Many Requests is the status API Gateway itself gives a request over a limit ("Throttle
/// requests to your REST APIs for better throughput in API Gateway").
fn too_many(max: u32) -> ApiGatewayProxyResponse {
    let mut r = ApiGatewayProxyResponse::default();
    r.status_code = 429;
    r.body = Some(aws_lambda_events::encodings::Body::Text(format!(
        "this user already holds {max} connections, this stage's limits.connections_per_user; close one first"
    )));
    r
}
