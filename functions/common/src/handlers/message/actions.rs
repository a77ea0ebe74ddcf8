//! One function per client action: what it does to the store and the frames it answers with.
//! The frame was authorized against the sender's capabilities before any of these runs.

use serde_json::Value;

use super::{Sender, Stored, Work, advance, announce, hold_channel, rate_limited};
use crate::Services;
use crate::limits;
use crate::protocol::{
    self, ClientFrame, ErrorCode, ErrorFrame, MAX_HISTORY_LIMIT, Member, PresenceEvent, ServerFrame,
};
use crate::store::{MAX_WAITING, SEQ_WINDOW, StoreError, Turn};

const DEFAULT_HISTORY_LIMIT: u32 = 100;
/// When a numbered publish refused for too many waiting predecessors may try again.
const BUSY_RETRY_MS: u64 = 250;

type Answer = Result<Vec<ServerFrame>, StoreError>;

/// `subscribe`, with a replay from `since` or of the last `rewind` messages.
pub(super) async fn subscribe(
    ctx: &Services,
    sender: &Sender,
    frame: &ClientFrame,
    channel: &str,
    since: Option<u64>,
    rewind: Option<u32>,
) -> Answer {
    let (store, connection) = (&ctx.store, sender.connection.as_str());
    if let Some(refused) = hold_channel(ctx, frame, connection, channel).await? {
        return Ok(vec![refused]);
    }
    // Subscribe first, then replay: a message published meanwhile is in the replay or
    // arrives live (clients drop serials they already have).
    store.subscribe(channel, connection, &sender.user).await?;
    let serial = store.latest_serial(channel).await?;
    let mut out = Vec::new();
    let mut more = false;
    if since.is_some() || rewind.is_some() {
        // One bounded read and one frame, whatever the gap: a client further behind is told
        // to page the rest with `history`.
        let page = store
            .history(
                channel,
                since,
                rewind,
                MAX_HISTORY_LIMIT,
                protocol::MAX_FRAME_BYTES,
            )
            .await?;
        let messages: Vec<_> = page
            .messages
            .into_iter()
            .filter(|m| m.serial <= serial)
            .collect();
        if let Some(since) = since {
            more = messages.last().map_or(since, |m| m.serial) < serial && page.more;
        }
        out.push(ServerFrame::History {
            channel: channel.into(),
            messages,
            more,
        });
    }
    out.push(ServerFrame::Subscribed {
        channel: channel.into(),
        serial,
        more,
    });
    Ok(out)
}

/// `unsubscribe`; a member of the channel's presence is announced as leaving.
pub(super) async fn unsubscribe(ctx: &Services, sender: &Sender, channel: &str) -> Answer {
    let connection = sender.connection.as_str();
    if let Some(old) = ctx.store.unsubscribe(channel, connection).await?
        && old.present
    {
        let member = Member {
            user: sender.user.clone(),
            connection: connection.into(),
            data: old.member,
        };
        announce(ctx, channel, PresenceEvent::Leave, member).await;
    }
    Ok(vec![ServerFrame::Unsubscribed {
        channel: channel.into(),
    }])
}

/// `publish`: in the connection's order when numbered (`seq`), within the user's budget, stored
/// under the channel's next serial, then handed to the fan-out.
pub(super) async fn publish(
    ctx: &Services,
    sender: &Sender,
    channel: &str,
    data: &Value,
    id: Option<&str>,
    seq: Option<u64>,
    work: &mut Work,
) -> Answer {
    let (store, connection, user) = (&ctx.store, sender.connection.as_str(), &sender.user);
    let refused = |code, message, retry_after_ms| {
        vec![ServerFrame::Error(ErrorFrame {
            code,
            message,
            action: Some("publish".into()),
            channel: Some(channel.into()),
            id: id.map(str::to_string),
            retry_after_ms,
        })]
    };
    if let Some(seq) = seq {
        let deadline = tokio::time::Instant::now() + ctx.seq_patience;
        match store.wait_turn(connection, seq, deadline).await? {
            Turn::Go => {}
            Turn::TooFar { last } => {
                return Ok(refused(
                    ErrorCode::BadRequest,
                    format!(
                        "`seq` {seq} is more than {SEQ_WINDOW} ahead of this connection's last stored publish ({last}); number publishes 1, 2, 3, ... on each connection and keep fewer than {SEQ_WINDOW} unacknowledged"
                    ),
                    None,
                ));
            }
            Turn::Busy => {
                return Ok(refused(
                    ErrorCode::RateLimited,
                    format!(
                        "{MAX_WAITING} numbered publishes of this connection are already waiting for earlier ones; send this one again once they are acknowledged"
                    ),
                    Some(BUSY_RETRY_MS),
                ));
            }
        }
    }
    // The user's publishes and bytes, over all of their connections: what one user may write
    // to history and fan out, whatever their grant.
    if sender.verified {
        let limits = &ctx.limits;
        let bytes = data.to_string().len() as u64;
        let budget = [
            ("publishes", limits.publishes, 1),
            ("publish_bytes", limits.publish_bytes, bytes),
        ];
        if let Err(refusal) = store.take(&limits::user_key(user), &budget).await? {
            return Ok(vec![rate_limited(
                ctx,
                connection,
                refusal,
                Some("publish".into()),
                Some(channel.into()),
                id.map(str::to_string),
            )]);
        }
    }
    let appended = store.append(channel, id, user, data, work.by).await;
    if let Some(seq) = seq {
        advance(ctx, connection, seq).await;
    }
    let (message, duplicate) = appended?;
    let serial = message.serial;
    let ack = ServerFrame::Ack {
        id: message.id.clone(),
        channel: channel.into(),
        serial,
        duplicate,
    };
    // Delivered once the ack is on its way, so the publisher's answer never waits for the
    // fan-out to start.
    if !duplicate {
        ctx.event(|| crate::events::Event::message(&message));
        work.stored = Some(Stored {
            channel: channel.into(),
            serial,
            id: id.map(str::to_string),
            frame: ServerFrame::Message(message).to_json(),
        });
    }
    Ok(vec![ack])
}

/// `history`: forward from `since`, or the newest `limit` that fit one frame.
pub(super) async fn history(
    ctx: &Services,
    channel: &str,
    since: Option<u64>,
    limit: Option<u32>,
) -> Answer {
    let limit = limit
        .unwrap_or(DEFAULT_HISTORY_LIMIT)
        .min(MAX_HISTORY_LIMIT);
    let page = ctx
        .store
        .history(
            channel,
            since,
            if since.is_none() { Some(limit) } else { None },
            limit,
            protocol::MAX_FRAME_BYTES,
        )
        .await?;
    // Only a read forward from `since` can be continued; the last N are the newest that fit
    // one frame.
    Ok(vec![ServerFrame::History {
        channel: channel.into(),
        messages: page.messages,
        more: since.is_some() && page.more,
    }])
}

/// `presence` with `enter`: the sender becomes a member, with `data` (`true` is no data).
pub(super) async fn enter(
    ctx: &Services,
    sender: &Sender,
    frame: &ClientFrame,
    channel: &str,
    data: &Value,
) -> Answer {
    let connection = sender.connection.as_str();
    let data = if data.is_boolean() {
        Value::Null
    } else {
        data.clone()
    };
    if let Some(refused) = hold_channel(ctx, frame, connection, channel).await? {
        return Ok(vec![refused]);
    }
    // An enter that changes nothing is not announced again: presence is no way to push
    // content to a channel's subscribers.
    if ctx
        .store
        .enter_presence(channel, connection, &sender.user, &data)
        .await?
    {
        announce(ctx, channel, PresenceEvent::Enter, member(sender, data)).await;
    }
    Ok(vec![])
}

/// `presence` with `leave: true`.
pub(super) async fn leave(ctx: &Services, sender: &Sender, channel: &str) -> Answer {
    if ctx
        .store
        .leave_presence(channel, &sender.connection)
        .await?
    {
        let member = member(sender, Value::Null);
        announce(ctx, channel, PresenceEvent::Leave, member).await;
    }
    Ok(vec![])
}

/// `presence` alone: one page of the channel's members, after the member `after`.
pub(super) async fn members(ctx: &Services, channel: &str, after: Option<&str>) -> Answer {
    let (members, next) = ctx
        .store
        .members(channel, after, protocol::MAX_MEMBERS_PER_FRAME)
        .await?;
    Ok(vec![ServerFrame::Members {
        channel: channel.into(),
        members,
        next,
    }])
}

fn member(sender: &Sender, data: Value) -> Member {
    Member {
        user: sender.user.clone(),
        connection: sender.connection.clone(),
        data,
    }
}
