//! Every client action (`$default` and custom routes). Replies go back to the sender through
//! `@connections`; a bad frame gets an `error` frame and the connection stays open.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};

use crate::Ctx;
use crate::auth::{Capabilities, Op};
use crate::protocol::{self, ClientFrame, ErrorCode, ErrorFrame, Member, PresenceEvent, ServerFrame, MAX_HISTORY_LIMIT};
use crate::store::StoreError;

const DEFAULT_HISTORY_LIMIT: u32 = 100;

pub async fn handle(ctx: &Ctx, event: &ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
    let connection = super::connection_id(&event.request_context);
    let body = event.body.as_deref().unwrap_or_default();
    let frames = match protocol::parse(body) {
        Err(e) => vec![ServerFrame::Error(e)],
        Ok(frame) => match identity(ctx, event, &connection).await {
            Ok((user, caps)) => act(ctx, &connection, &user, &caps, &frame).await.unwrap_or_else(|e| {
                tracing::error!(error = %e, action = frame.action(), "store failed");
                vec![ServerFrame::Error(ErrorFrame {
                    code: ErrorCode::Internal,
                    message: "the server could not complete this action; retry".into(),
                    action: Some(frame.action().into()),
                    channel: frame.channel().map(str::to_string),
                    id: None,
                })]
            }),
            Err(e) => {
                tracing::error!(error = %e, "identity lookup failed");
                vec![ServerFrame::error(ErrorCode::Internal, "the server could not read this connection; retry")]
            }
        },
    };
    for frame in frames {
        if let Err(e) = ctx.connections.post(&connection, &frame.to_json()).await {
            tracing::warn!(error = ?e, "reply to sender failed");
        }
    }
    super::ok()
}

async fn identity(ctx: &Ctx, event: &ApiGatewayWebsocketProxyRequest, connection: &str) -> Result<(String, Capabilities), StoreError> {
    if let Some(id) = super::identity(&event.request_context) {
        return Ok(id);
    }
    // No authorizer context (a stack without an authorizer): what `$connect` stored.
    Ok(ctx.store.get_connection(connection).await?.map(|c| (c.user, c.capabilities)).unwrap_or_else(|| ("anonymous".into(), Capabilities::default())))
}

fn forbidden(frame: &ClientFrame, op: Op) -> ServerFrame {
    let id = match frame {
        ClientFrame::Publish { id, .. } => id.clone(),
        _ => None,
    };
    ServerFrame::Error(ErrorFrame {
        code: ErrorCode::Forbidden,
        message: format!("your token does not allow {op:?} on this channel").to_lowercase(),
        action: Some(frame.action().into()),
        channel: frame.channel().map(str::to_string),
        id,
    })
}

/// The frames to send back to the sender, in order.
async fn act(ctx: &Ctx, connection: &str, user: &str, caps: &Capabilities, frame: &ClientFrame) -> Result<Vec<ServerFrame>, StoreError> {
    let needs = match frame {
        ClientFrame::Subscribe { .. } => Some(Op::Subscribe),
        ClientFrame::Publish { .. } => Some(Op::Publish),
        ClientFrame::History { .. } => Some(Op::History),
        ClientFrame::Presence { .. } => Some(Op::Presence),
        ClientFrame::Unsubscribe { .. } | ClientFrame::Ping { .. } => None,
    };
    if let (Some(op), Some(channel)) = (needs, frame.channel())
        && !caps.allows(channel, op)
    {
        return Ok(vec![forbidden(frame, op)]);
    }
    let store = &ctx.store;
    Ok(match frame {
        ClientFrame::Ping { id } => vec![ServerFrame::Pong { id: id.clone() }],
        ClientFrame::Subscribe { channel, since, rewind } => {
            // Subscribe first, then replay: a message published meanwhile is in the replay or
            // arrives live (clients drop serials they already have).
            store.subscribe(channel, connection, user, None).await?;
            let serial = store.latest_serial(channel).await?;
            let mut out = Vec::new();
            if since.is_some() || rewind.is_some() {
                let replay = store.history(channel, *since, *rewind, u32::MAX).await?;
                out.extend(replay.into_iter().filter(|m| m.serial <= serial).map(ServerFrame::Message));
            }
            out.push(ServerFrame::Subscribed { channel: channel.clone(), serial });
            out
        }
        ClientFrame::Unsubscribe { channel } => {
            if let Some(old) = store.unsubscribe(channel, connection).await?
                && old.present
            {
                announce(ctx, channel, PresenceEvent::Leave, Member { user: user.into(), connection: connection.into(), data: old.member }).await;
            }
            vec![ServerFrame::Unsubscribed { channel: channel.clone() }]
        }
        ClientFrame::Publish { channel, data, id } => {
            let (message, duplicate) = store.append(channel, id.as_deref(), user, data).await?;
            let ack = ServerFrame::Ack { id: message.id.clone(), channel: channel.clone(), serial: message.serial, duplicate };
            if !duplicate {
                super::publish::hand_off(ctx, channel, &ServerFrame::Message(message).to_json(), None).await;
            }
            vec![ack]
        }
        ClientFrame::History { channel, since, limit } => {
            let limit = limit.unwrap_or(DEFAULT_HISTORY_LIMIT).min(MAX_HISTORY_LIMIT);
            let messages = store.history(channel, *since, if since.is_none() { Some(limit) } else { None }, limit).await?;
            vec![ServerFrame::History { channel: channel.clone(), messages }]
        }
        ClientFrame::Presence { channel, enter, leave } => {
            let member = |data| Member { user: user.into(), connection: connection.into(), data };
            if let Some(data) = enter {
                let data = if data.is_boolean() { serde_json::Value::Null } else { data.clone() };
                store.subscribe(channel, connection, user, Some(&data)).await?;
                announce(ctx, channel, PresenceEvent::Enter, member(data)).await;
                vec![]
            } else if leave == &Some(true) {
                if store.leave_presence(channel, connection).await? {
                    announce(ctx, channel, PresenceEvent::Leave, member(serde_json::Value::Null)).await;
                }
                vec![]
            } else {
                vec![ServerFrame::Members { channel: channel.clone(), members: store.members(channel).await? }]
            }
        }
    })
}

async fn announce(ctx: &Ctx, channel: &str, event: PresenceEvent, member: Member) {
    let frame = ServerFrame::Presence { channel: channel.into(), event, member };
    super::publish::hand_off(ctx, channel, &frame.to_json(), None).await;
}
