//! `$disconnect`: removes the connection and all its subscriptions, and announces a presence
//! `leave` in every channel it was present in.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};

use crate::Ctx;
use crate::protocol::{Member, PresenceEvent, ServerFrame};
use crate::store::{StoreError, Subscriber};

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
    tracing::info!("disconnected");
    Ok(super::ok())
}

/// For each channel `connection` was present in (as `Store::remove_connection` returns them),
/// the channel and the presence `leave` frame its subscribers get.
pub fn leave_frames(
    connection: &str,
    present: Vec<(String, Subscriber)>,
) -> impl Iterator<Item = (String, String)> + '_ {
    present.into_iter().map(move |(channel, sub)| {
        let frame = ServerFrame::Presence {
            channel: channel.clone(),
            event: PresenceEvent::Leave,
            member: Member {
                user: sub.user,
                connection: connection.to_string(),
                data: sub.member,
            },
        };
        (channel, frame.to_json())
    })
}
