//! `$disconnect`: removes the connection and all its subscriptions, and announces a presence
//! `leave` in every channel it was present in.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};

use crate::Ctx;
use crate::protocol::{Member, PresenceEvent, ServerFrame};
use crate::store::StoreError;

pub async fn handle(ctx: &Ctx, event: &ApiGatewayWebsocketProxyRequest) -> Result<ApiGatewayProxyResponse, StoreError> {
    let connection = super::connection_id(&event.request_context);
    let present = ctx.store.remove_connection(&connection).await?;
    for (channel, sub) in present {
        let frame = ServerFrame::Presence {
            channel: channel.clone(),
            event: PresenceEvent::Leave,
            member: Member { user: sub.user, connection: connection.clone(), data: sub.member },
        };
        super::publish::hand_off(ctx, &channel, &frame.to_json(), None).await;
    }
    tracing::info!("disconnected");
    Ok(super::ok())
}
