//! `$disconnect`: removes the connection's subscriptions, announces a presence `leave` in
//! every channel it was present in, removes its presence and its item, and frees its place
//! among its user's connections. The subscriptions go first, so that no leave's fan-out posts
//! to the connection (which would answer 410 and start a removal of its own).
//!
//! Its work is bounded by `limits.subscriptions_per_connection` (at most 1,000 channels, two
//! items each) and done in parallel: the leaves 16 hand-offs at a time, the deletes 8 batches at
//! a time. Should the invocation run short of time anyway (a low function timeout), it stops
//! announcing a second before its deadline and leaves the rest to `wsctl gc`: the member items
//! of the channels it did not announce stay, and so does the connection's item, which is how
//! gc finds the connection; gc then announces those leaves and removes the rest.

use std::collections::HashSet;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use futures::stream::{self, StreamExt};
use tokio::time::{Duration, Instant};

use crate::Services;
use crate::events::Event;
use crate::fanout::leave_frames;
use crate::protocol::{Member, PresenceEvent};
use crate::store::StoreError;

/// Leave hand-offs in flight at once.
const LEAVES_AT_ONCE: usize = 16;
/// No new leave starts with less than this left before the deadline: the deletes follow.
const MARGIN: Duration = Duration::from_secs(1);

/// `deadline` is the invocation's (Lambda's context), if known.
pub async fn handle(
    ctx: &Services,
    event: &ApiGatewayWebsocketProxyRequest,
    deadline: Option<Instant>,
) -> Result<ApiGatewayProxyResponse, StoreError> {
    let connection = super::connection_id(&event.request_context);
    let present = ctx.store.drop_subscriptions(&connection).await?;
    let due = present.len();
    // The leaves' events, kept for after the announcements; made only when events are sent.
    let leaves: Vec<(String, Event)> = present
        .iter()
        .filter(|_| ctx.sends_events())
        .map(|(channel, sub)| {
            let member = Member {
                user: sub.user.clone(),
                connection: connection.clone(),
                data: sub.member.clone(),
            };
            let event = Event::presence(channel, PresenceEvent::Leave, &member);
            (channel.clone(), event)
        })
        .collect();
    let in_time = |_: &(String, String)| {
        let go = deadline.is_none_or(|d| Instant::now() + MARGIN < d);
        std::future::ready(go)
    };
    let origin = connection.as_str();
    let announced: HashSet<String> = stream::iter(leave_frames(&connection, present))
        .take_while(in_time)
        .map(|(channel, frame)| async move {
            match super::publish::hand_off(ctx, &channel, &frame, None, Some(origin)).await {
                Ok(()) => Some(channel),
                Err(e) => {
                    tracing::error!(channel, error = %e, "presence leave hand-off failed");
                    None
                }
            }
        })
        .buffer_unordered(LEAVES_AT_ONCE)
        .filter_map(std::future::ready)
        .collect()
        .await;
    if announced.len() < due {
        tracing::warn!(
            left_to_gc = due - announced.len(),
            "out of time or hand-offs failed: wsctl gc announces the rest"
        );
    }
    ctx.store
        .remove_presence(
            &connection,
            announced.iter().map(String::as_str),
            announced.len() == due,
        )
        .await?;
    // The authorizer's context reaches `$disconnect` too. A place not freed (this event is
    // best-effort) lapses at API Gateway's 2-hour connection limit.
    let user = match super::identity(&event.request_context) {
        Some((user, _)) => {
            ctx.store.close_connection(&user, &connection).await?;
            user
        }
        None => "anonymous".into(),
    };
    tracing::info!("disconnected");
    crate::metrics::add("Disconnects", 1.0);
    for (channel, leave) in leaves {
        if announced.contains(&channel) {
            ctx.event(|| leave);
        }
    }
    ctx.event(|| Event::disconnected(&connection, &user));
    Ok(super::ok())
}
