//! `$disconnect`: removes the connection and all its subscriptions, announces a presence
//! `leave` in every channel it was present in, and frees its place among its user's
//! connections.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};

use crate::Ctx;
use crate::fanout::leave_frames;
use crate::store::StoreError;

pub async fn handle(
    ctx: &Ctx,
    event: &ApiGatewayWebsocketProxyRequest,
) -> Result<ApiGatewayProxyResponse, StoreError> {
    let connection = super::connection_id(&event.request_context);
    let present = ctx.store.remove_connection(&connection).await?;
    for (channel, frame) in leave_frames(&connection, present) {
        if let Err(e) = super::publish::hand_off(ctx, &channel, &frame, None).await {
            tracing::error!(channel, error = %e, "presence leave hand-off failed");
        }
    }
    // The authorizer's context reaches `$disconnect` too. A place not freed (this event is
    // best-effort) lapses at API Gateway's 2-hour connection limit.
    if let Some((user, _)) = super::identity(&event.request_context) {
        ctx.store.close_connection(&user, &connection).await?;
    }
    tracing::info!("disconnected");
    Ok(super::ok())
}
