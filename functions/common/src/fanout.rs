//! Fan-out: one `@connections` POST per subscriber (API Gateway has no broadcast), page by
//! page, with bounded concurrency. A 410 Gone removes *that* connection and its subscriptions.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use futures::channel::mpsc::UnboundedSender;
use futures::stream::{self, Stream, StreamExt};
use serde::{Deserialize, Serialize};

use crate::connections::{Connections, Frame, PostError};
use crate::protocol::{Member, PresenceEvent, ServerFrame};
use crate::store::{Key, Store, StoreError, Subscriber};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub delivered: u64,
    pub gone: u64,
    pub failed: u64,
}

impl std::ops::AddAssign for Report {
    fn add_assign(&mut self, o: Report) {
        self.delivered += o.delivered;
        self.gone += o.gone;
        self.failed += o.failed;
    }
}

/// A subscriptions-table key as plain strings, so it can travel in an invocation payload.
pub fn key_to_json(key: &Key) -> HashMap<String, String> {
    key.iter()
        .filter_map(|(k, v)| v.as_s().ok().map(|s| (k.clone(), s.clone())))
        .collect()
}

pub fn key_from_json(key: &HashMap<String, String>) -> Key {
    key.iter()
        .map(|(k, v)| (k.clone(), AttributeValue::S(v.clone())))
        .collect()
}

/// Subscribers per Query page after the first.
const PAGE: usize = 1000;
/// The first page is small, so the first posts go out after one short read while the rest
/// of the channel is still being read.
const FIRST_PAGE: usize = 100;

/// Reads up to `budget` listening subscribers of `channel` from `start`, page by page, and
/// sends each to `out` as its page arrives; returns where the next invocation should continue,
/// if anything is left. Reading ahead of the posts lets the caller hand the rest of a large
/// channel on before its own posts are done, so invocations work in parallel.
pub async fn read(
    store: &Store,
    channel: &str,
    mut start: Option<Key>,
    budget: usize,
    out: UnboundedSender<String>,
) -> Result<Option<Key>, StoreError> {
    let mut sent = 0;
    let mut page_size = FIRST_PAGE.min(budget).max(1);
    loop {
        let (subscribers, next) = store
            .subscribers(channel, start.take(), page_size as i32)
            .await?;
        // A member that is present without being subscribed gets none of the channel's traffic.
        for s in subscribers.into_iter().filter(|s| s.listening) {
            sent += 1;
            // The posting side only stops early if it is gone, and then nothing is to be sent.
            let _ = out.unbounded_send(s.connection);
        }
        match next {
            Some(key) if sent < budget => {
                start = Some(key);
                page_size = (budget - sent).clamp(1, PAGE);
            }
            Some(key) => {
                // A page that ends exactly at the budget still carries a LastEvaluatedKey: look
                // one item ahead rather than start an invocation that would find nothing.
                let (ahead, more) = store.subscribers(channel, Some(key.clone()), 1).await?;
                return Ok((!ahead.is_empty() || more.is_some()).then_some(key));
            }
            None => return Ok(None),
        }
    }
}

/// Connections found gone and removed, each with the channels it was present in (as
/// `Store::remove_connection` returns them), so their presence `leave` can be announced.
pub type Removed = Vec<(String, Vec<(String, Subscriber)>)>;

/// Posts `frame` to each connection as it arrives, `concurrency` at a time.
pub async fn post_all(
    store: &Store,
    connections: &Connections,
    targets: impl Stream<Item = String>,
    frame: &str,
    concurrency: usize,
) -> (Report, Removed) {
    let frame = Frame::new(frame.to_string());
    let outcomes: Vec<(String, Result<(), PostError>)> = targets
        .map(|connection| {
            let frame = frame.clone();
            async move {
                let r = connections.post(&connection, &frame).await;
                (connection, r)
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut report = Report::default();
    let mut gone = Vec::new();
    for (connection, outcome) in outcomes {
        match outcome {
            Ok(()) => report.delivered += 1,
            Err(PostError::Gone) => {
                report.gone += 1;
                gone.push(connection);
            }
            Err(PostError::Other(e)) => {
                report.failed += 1;
                tracing::warn!(connection, error = %e, "post to connection failed");
            }
        }
    }
    // Only the connections that answered 410 go, never the sender or others; a page full of
    // them is removed in parallel, so it cannot outlast the invocation.
    let removed = stream::iter(gone)
        .map(|connection| async move {
            match store.remove_connection(&connection).await {
                Ok(present) if !present.is_empty() => Some((connection, present)),
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(connection, error = %e, "could not remove a gone connection");
                    None
                }
            }
        })
        .buffer_unordered(concurrency.clamp(1, 16))
        .filter_map(|r| async move { r })
        .collect()
        .await;
    (report, removed)
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
