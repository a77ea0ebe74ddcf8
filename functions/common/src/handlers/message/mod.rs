//! Every client action (`$default` and custom routes). Replies go back to the sender through
//! `@connections`; a bad frame gets an `error` frame and the connection stays open. A published
//! message is delivered after its ack is posted (the publisher's answer never waits for the
//! fan-out): to a small channel from here, to a larger one through the publish function too.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use tokio::time::Instant;

use crate::Services;
use crate::auth::{Capabilities, Op, now};
use crate::connections::Frame;
use crate::limits::{self, Refusal};
use crate::protocol::{
    self, ClientFrame, ErrorCode, ErrorFrame, Member, PresenceEvent, ServerFrame,
};
use crate::session::Session;

mod actions;
use crate::store::StoreError;

pub async fn handle(
    ctx: &Services,
    event: &ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    handle_by(ctx, event, None).await
}

/// As [`handle`], for an invocation that must be done by `deadline`.
pub async fn handle_by(
    ctx: &Services,
    event: &ApiGatewayWebsocketProxyRequest,
    deadline: Option<Instant>,
) -> ApiGatewayProxyResponse {
    let connection = super::connection_id(&event.request_context);
    let body = event.body.as_deref().unwrap_or_default();
    let mut work = Work {
        by: settle_by(deadline),
        stored: None,
    };
    let parsed = protocol::parse(body);
    let (action, channel) = match &parsed {
        Ok(f) => (
            Some(f.action().to_string()),
            f.channel().map(str::to_string),
        ),
        Err(e) => (e.action.clone(), e.channel.clone()),
    };
    let frames = match parsed {
        // A malformed frame costs an invocation like any other: it counts against the
        // connection's frames.
        Err(e) => match admit(ctx, &connection, None).await {
            Ok((Ok(()), _)) => vec![ServerFrame::Error(e)],
            Ok((Err(refusal), _)) => vec![rate_limited(
                ctx,
                &connection,
                refusal,
                e.action,
                e.channel,
                e.id,
            )],
            Err(e) => vec![internal(None, &e)],
        },
        Ok(frame) => match identity(ctx, event, &connection).await {
            Ok(sender) => answer(ctx, sender, &frame, &mut work)
                .await
                .unwrap_or_else(|e| vec![internal(Some(&frame), &e)]),
            Err(e) => {
                tracing::error!(error = %e, "identity lookup failed");
                vec![ServerFrame::error(
                    ErrorCode::Internal,
                    "the server could not read this connection; retry",
                )]
            }
        },
    };
    // One line per frame, so one connection's session reads from its logs alone.
    let refused = frames.iter().find_map(|f| match f {
        ServerFrame::Error(e) => Some(e.code.name()),
        _ => None,
    });
    tracing::info!(
        action = action.as_deref().unwrap_or("none"),
        channel = channel.as_deref(),
        serial = work.stored.as_ref().map(|s: &Stored| s.serial),
        refused,
        "frame"
    );
    let known = action.as_deref().and_then(protocol::known_action);
    crate::metrics::add_by("Frames", "Action", known.unwrap_or("unknown"), 1.0);
    if let Some(code) = refused {
        crate::metrics::add_by("Refusals", "Code", code, 1.0);
    }
    if work.stored.is_some() {
        crate::metrics::add("Publishes", 1.0);
    }
    let ends = frames.iter().any(|f| {
        matches!(f, ServerFrame::Error(e) if matches!(e.code, ErrorCode::TokenExpired | ErrorCode::TokenRevoked | ErrorCode::Flooding))
    });
    for frame in frames {
        if let Err(e) = ctx
            .connections
            .post(&connection, &Frame::new(frame.to_json()))
            .await
        {
            tracing::warn!(error = ?e, "reply to sender failed");
        }
    }
    if let Some(stored) = work.stored {
        deliver(ctx, &connection, stored, deadline).await;
    }
    if ends {
        // After the reply, so the client reads why ("DeleteConnection", API Gateway's
        // `@connections` API: the connection closes and `$disconnect` runs).
        match ctx.connections.delete(&connection).await {
            Ok(()) | Err(crate::connections::PostError::Gone) => {}
            Err(e) => tracing::warn!(error = ?e, "closing the connection failed"),
        }
    }
    super::ok()
}

/// What a frame's own work may take of the invocation: the rest is for its answer and, for a
/// message, its delivery (the first posts, a hand-off of what is left).
const ANSWER_ROOM: std::time::Duration = std::time::Duration::from_secs(2);

/// When no retry of the frame's writes may start any more: [`ANSWER_ROOM`] (or, in a short
/// invocation, half of what is left) before `deadline`. Without a deadline (a test, a local
/// call), the retries' own count bounds them.
fn settle_by(deadline: Option<Instant>) -> Instant {
    match deadline {
        Some(d) => super::short_of(d, ANSWER_ROOM),
        None => Instant::now() + std::time::Duration::from_secs(900),
    }
}

/// One frame's work: when its writes must settle, and the message it stored, if any.
struct Work {
    by: Instant,
    stored: Option<Stored>,
}

/// A message a `publish` frame stored, delivered once the sender has its ack.
struct Stored {
    channel: String,
    serial: u64,
    /// The publisher's own id, for an error frame about this message.
    id: Option<String>,
    frame: String,
}

/// The message goes out from here, after the ack: a small channel's subscribers are posted to
/// by this invocation, a larger channel is handed to the publish function as well.
async fn deliver(ctx: &Services, connection: &str, stored: Stored, deadline: Option<Instant>) {
    let Stored {
        channel,
        serial,
        id,
        frame,
    } = stored;
    if let Err(e) =
        crate::handlers::publish::deliver_here(ctx, &channel, &frame, Some(connection), deadline)
            .await
    {
        tracing::error!(channel, serial, error = %e, "fan-out hand-off failed");
        let refused = ServerFrame::Error(ErrorFrame {
            code: ErrorCode::Internal,
            message: format!(
                "stored as serial {serial}, but its delivery could not be started; subscribers get it with `history`"
            ),
            action: Some("publish".into()),
            channel: Some(channel),
            id,
            retry_after_ms: None,
        });
        if let Err(e) = ctx
            .connections
            .post(connection, &Frame::new(refused.to_json()))
            .await
        {
            tracing::warn!(error = ?e, "reply to sender failed");
        }
    }
}

/// Who sent a frame.
struct Sender {
    connection: String,
    user: String,
    /// The token it acts under: its expiry and capabilities.
    session: Session,
    /// The user comes from a verified token, so per-user limits apply to it. Without an
    /// authorizer every connection is `anonymous`, and only per-connection limits apply.
    verified: bool,
}

async fn identity(
    ctx: &Services,
    event: &ApiGatewayWebsocketProxyRequest,
    connection: &str,
) -> Result<Sender, StoreError> {
    let sender = |(user, caps), (expires, issued), verified| Sender {
        connection: connection.to_string(),
        user,
        session: Session {
            expires,
            issued,
            caps,
        },
        verified,
    };
    if let Some(id) = super::identity(&event.request_context) {
        let times = super::token_times(&event.request_context);
        return Ok(sender(id, times, true));
    }
    // No authorizer context (a stack without an authorizer): what `$connect` stored.
    let stored = ctx
        .store
        .get_connection(connection)
        .await?
        .map(|c| (c.user, c.capabilities))
        .unwrap_or_else(|| ("anonymous".into(), Capabilities::default()));
    Ok(sender(stored, (None, None), false))
}

/// The frame's place in the connection's budget, its token, then the frame itself.
async fn answer(
    ctx: &Services,
    mut sender: Sender,
    frame: &ClientFrame,
    work: &mut Work,
) -> Result<Vec<ServerFrame>, StoreError> {
    let (admitted, item) =
        admit(ctx, &sender.connection, Some((frame, &sender.session.caps))).await?;
    if let Err(refusal) = admitted {
        return Ok(vec![rate_limited(
            ctx,
            &sender.connection,
            refusal,
            Some(frame.action().into()),
            frame.channel().map(str::to_string),
            client_id(frame),
        )]);
    }
    if let Some(renewed) = Session::from_item(&item) {
        sender.session = renewed;
    }
    if sender.verified {
        let ending = |code, message: &str| {
            Ok(vec![ServerFrame::Error(ErrorFrame {
                code,
                message: message.into(),
                action: Some(frame.action().into()),
                channel: frame.channel().map(str::to_string),
                id: client_id(frame),
                retry_after_ms: None,
            })])
        };
        if sender.session.expired(now()) {
            return ending(
                ErrorCode::TokenExpired,
                "this connection's token has expired, so nothing was done and the connection closes; renew with an `auth` frame before the expiry, or reconnect with a fresh token",
            );
        }
        let before = ctx.revocations.before(&ctx.store, &sender.user).await?;
        if sender.session.revoked_by(before) {
            return ending(
                ErrorCode::TokenRevoked,
                "this connection's token was revoked, so nothing was done and the connection closes; reconnect with a token issued since",
            );
        }
    }
    act(ctx, &sender, frame, work).await
}

/// An `auth` frame: the fresh token replaces the connection's, for the same user. Channels
/// the new token does not allow are left first, so nothing reaches the connection that its
/// token does not grant.
async fn renew(
    ctx: &Services,
    sender: &Sender,
    token: &str,
) -> Result<Vec<ServerFrame>, StoreError> {
    let refuse = |code, message: String| {
        Ok(vec![ServerFrame::Error(ErrorFrame {
            code,
            message,
            action: Some("auth".into()),
            channel: None,
            id: None,
            retry_after_ms: None,
        })])
    };
    let Some(tokens) = ctx.tokens.as_ref().filter(|_| sender.verified) else {
        return refuse(
            ErrorCode::BadRequest,
            "this stage does not renew tokens (its message function may not read the token secret: give it `read_secret: true` in wsctl.yaml and deploy); reconnect with a fresh token instead".into(),
        );
    };
    let identity = match tokens.verify_current(token).await {
        Ok(identity) => identity,
        Err(e @ crate::auth::TokenError::Unavailable(_)) => {
            tracing::warn!(reason = %e, "renewal not checked");
            return refuse(
                ErrorCode::Internal,
                format!("{e}; send the `auth` frame again shortly"),
            );
        }
        Err(e) => {
            tracing::info!(reason = %e, "renewal refused");
            return refuse(
                ErrorCode::Unauthorized,
                format!("{e}; the connection keeps its current token"),
            );
        }
    };
    if identity.user != sender.user {
        return refuse(
            ErrorCode::Forbidden,
            format!(
                "this token is for another user than the connection's `{}`; a connection keeps its user: open a new connection for another",
                sender.user
            ),
        );
    }
    let session = Session::of(&identity);
    if session.expired(now()) {
        return refuse(
            ErrorCode::Unauthorized,
            "this token has already expired; the connection keeps its current token".into(),
        );
    }
    let mut dropped = Vec::new();
    for (channel, held) in ctx.store.subscriptions_of(&sender.connection).await? {
        let allowed = (!held.listening || session.caps.allows(&channel, Op::Subscribe))
            && (!held.present || session.caps.allows(&channel, Op::Presence));
        if allowed {
            continue;
        }
        if let Some(old) = ctx.store.unsubscribe(&channel, &sender.connection).await?
            && old.present
        {
            let member = Member {
                user: sender.user.clone(),
                connection: sender.connection.clone(),
                data: old.member,
            };
            announce(ctx, &channel, PresenceEvent::Leave, member).await;
        }
        dropped.push(channel);
    }
    ctx.store.renew(&sender.connection, &session).await?;
    tracing::info!(
        expires = identity.expires,
        dropped = dropped.len(),
        "token renewed"
    );
    Ok(vec![ServerFrame::Authenticated {
        user: identity.user,
        expires: identity.expires,
        dropped,
    }])
}

/// Takes one frame from the connection's budget, and one presence update for an `enter` or
/// `leave` its grant allows (a refused one changes no presence, so it costs none).
async fn admit(
    ctx: &Services,
    connection: &str,
    frame: Option<(&ClientFrame, &Capabilities)>,
) -> Result<(Result<(), Refusal>, crate::store::Key), StoreError> {
    let limits = &ctx.limits;
    let mut buckets = vec![("frames", limits.frames, 1)];
    if let Some((f @ ClientFrame::Presence { enter, leave, .. }, caps)) = frame
        && (enter.is_some() || *leave == Some(true))
        && authorize(caps, f).is_ok()
    {
        buckets.push(("presence", limits.presence, 1));
    }
    ctx.store
        .take_reading(&limits::connection_key(connection), &buckets)
        .await
}

fn rate_limited(
    ctx: &Services,
    connection: &str,
    refusal: Refusal,
    action: Option<String>,
    channel: Option<String>,
    id: Option<String>,
) -> ServerFrame {
    if refusal.limit == "frames" && ctx.floods.refused(connection, ctx.limits.flood_refusals()) {
        tracing::info!("closed: kept sending past limits.frames");
        return ServerFrame::Error(ErrorFrame {
            code: ErrorCode::Flooding,
            message: format!(
                "this connection kept sending after `rate_limited` (over {} refused frames in {} s), so the server closes it; wait `retry_after_ms` when told to",
                ctx.limits.flood_refusals(),
                limits::FLOOD_WINDOW.as_secs()
            ),
            action,
            channel,
            id,
            retry_after_ms: Some(refusal.retry_after_ms),
        });
    }
    ServerFrame::Error(ErrorFrame {
        code: ErrorCode::RateLimited,
        message: format!(
            "over this stage's `limits.{}`; nothing was done: send it again in {} ms",
            refusal.limit, refusal.retry_after_ms
        ),
        action,
        channel,
        id,
        retry_after_ms: Some(refusal.retry_after_ms),
    })
}

/// When a frame DynamoDB throttled may be sent again: a partition's throughput is measured
/// by the second.
const THROTTLED_RETRY_MS: u64 = 1000;

fn internal(frame: Option<&ClientFrame>, e: &StoreError) -> ServerFrame {
    let action = frame.map(ClientFrame::action);
    let (code, message, retry_after_ms) = if e.throttled {
        tracing::warn!(error = %e, action, "store throttled");
        (
            ErrorCode::RateLimited,
            "the stage's tables are busier here than they serve (DynamoDB throttled a hot key: one partition takes about 1,000 small writes a second, and a busy channel's publishes share its keys), so this frame was not carried out; send it again after `retry_after_ms`, or spread the load over more channels".into(),
            Some(THROTTLED_RETRY_MS),
        )
    } else {
        tracing::error!(error = %e, action, "store failed");
        (
            ErrorCode::Internal,
            "the server could not complete this action; retry".into(),
            None,
        )
    };
    ServerFrame::Error(ErrorFrame {
        code,
        message,
        action: action.map(str::to_string),
        channel: frame.and_then(|f| f.channel().map(str::to_string)),
        id: frame.and_then(client_id),
        retry_after_ms,
    })
}

fn client_id(frame: &ClientFrame) -> Option<String> {
    match frame {
        ClientFrame::Publish { id, .. } => id.clone(),
        _ => None,
    }
}

/// The grants a frame needs on its channel. Receiving a channel's messages is `subscribe`'s
/// alone; reading its past is `history`'s, also when a subscribe replays it.
pub fn needs(frame: &ClientFrame) -> Vec<Op> {
    match frame {
        ClientFrame::Subscribe {
            since: None,
            rewind: None,
            ..
        } => vec![Op::Subscribe],
        ClientFrame::Subscribe { .. } => vec![Op::Subscribe, Op::History],
        ClientFrame::Publish { .. } => vec![Op::Publish],
        ClientFrame::History { .. } => vec![Op::History],
        ClientFrame::Presence { .. } => vec![Op::Presence],
        ClientFrame::Unsubscribe { .. } | ClientFrame::Ping { .. } | ClientFrame::Auth { .. } => {
            vec![]
        }
    }
}

/// `Err` with the `forbidden` frame when the capabilities lack a grant the frame needs.
pub fn authorize(caps: &Capabilities, frame: &ClientFrame) -> Result<(), ServerFrame> {
    let Some(channel) = frame.channel() else {
        return Ok(());
    };
    match needs(frame)
        .into_iter()
        .find(|op| !caps.allows(channel, *op))
    {
        None => Ok(()),
        Some(op) => Err(ServerFrame::Error(ErrorFrame {
            code: ErrorCode::Forbidden,
            message: format!("your token does not allow {} on this channel", op.name()),
            action: Some(frame.action().into()),
            channel: Some(channel.to_string()),
            id: client_id(frame),
            retry_after_ms: None,
        })),
    }
}

/// The frames to send back to the sender, in order.
async fn act(
    ctx: &Services,
    sender: &Sender,
    frame: &ClientFrame,
    work: &mut Work,
) -> Result<Vec<ServerFrame>, StoreError> {
    // A refused frame touches nothing, not even the publish order: a numbered publish after
    // it waits out `Services::seq_patience` once and goes on.
    if let Err(refused) = authorize(&sender.session.caps, frame) {
        return Ok(vec![refused]);
    }
    match frame {
        ClientFrame::Ping { id } => Ok(vec![ServerFrame::Pong { id: id.clone() }]),
        ClientFrame::Auth { token } => renew(ctx, sender, token).await,
        ClientFrame::Subscribe {
            channel,
            since,
            rewind,
        } => actions::subscribe(ctx, sender, frame, channel, *since, *rewind).await,
        ClientFrame::Unsubscribe { channel } => actions::unsubscribe(ctx, sender, channel).await,
        ClientFrame::Publish {
            channel,
            data,
            id,
            seq,
        } => actions::publish(ctx, sender, channel, data, id.as_deref(), *seq, work).await,
        ClientFrame::History {
            channel,
            since,
            limit,
        } => actions::history(ctx, channel, *since, *limit).await,
        ClientFrame::Presence {
            channel,
            enter: Some(data),
            ..
        } => actions::enter(ctx, sender, frame, channel, data).await,
        ClientFrame::Presence {
            channel,
            leave: Some(true),
            ..
        } => actions::leave(ctx, sender, channel).await,
        ClientFrame::Presence { channel, after, .. } => {
            actions::members(ctx, channel, after.as_deref()).await
        }
    }
}

/// `Some(refusal)` when the connection already holds `subscriptions_per_connection` channels
/// other than `channel`.
async fn hold_channel(
    ctx: &Services,
    frame: &ClientFrame,
    connection: &str,
    channel: &str,
) -> Result<Option<ServerFrame>, StoreError> {
    let max = ctx.limits.subscriptions_per_connection;
    if ctx.store.may_hold_channel(connection, channel, max).await? {
        return Ok(None);
    }
    Ok(Some(ServerFrame::Error(ErrorFrame {
        code: ErrorCode::LimitExceeded,
        message: format!(
            "this connection is in {max} channels, this stage's `limits.subscriptions_per_connection`; unsubscribe from one (or leave its presence) first"
        ),
        action: Some(frame.action().into()),
        channel: Some(channel.into()),
        id: None,
        retry_after_ms: None,
    })))
}

/// Marks a numbered publish as done (stored or refused), so the next one goes ahead.
async fn advance(ctx: &Services, connection: &str, seq: u64) {
    if let Err(e) = ctx.store.advance_seq(connection, seq).await {
        tracing::warn!(error = %e, seq, "could not record the publish order");
    }
}

async fn announce(ctx: &Services, channel: &str, event: PresenceEvent, member: Member) {
    ctx.event(|| crate::events::Event::presence(channel, event, &member));
    let origin = member.connection.clone();
    let frame = ServerFrame::Presence {
        channel: channel.into(),
        event,
        member,
    };
    if let Err(e) =
        super::publish::hand_off(ctx, channel, &frame.to_json(), None, Some(&origin)).await
    {
        tracing::error!(channel, error = %e, "presence hand-off failed");
    }
}
