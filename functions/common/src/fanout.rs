//! Fan-out: one `@connections` POST per subscriber (API Gateway has no broadcast), page by
//! page, with bounded concurrency. A 410 Gone removes *that* connection and its subscriptions.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use futures::stream::{self, StreamExt};
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

/// Reads up to `budget` subscribers of `channel` from `start`; returns them and where the
/// next invocation should continue. Reading first lets the caller hand the rest of a large
/// channel on before it starts posting, so invocations work in parallel.
pub async fn collect(
    store: &Store,
    channel: &str,
    mut start: Option<Key>,
    budget: usize,
) -> Result<(Vec<String>, Option<Key>), StoreError> {
    let mut out = Vec::new();
    loop {
        let page_size = (budget - out.len()).clamp(1, 1000) as i32;
        let (subscribers, next) = store.subscribers(channel, start.take(), page_size).await?;
        // A member that is present without being subscribed gets none of the channel's traffic.
        out.extend(
            subscribers
                .into_iter()
                .filter(|s| s.listening)
                .map(|s| s.connection),
        );
        match next {
            Some(key) if out.len() < budget => start = Some(key),
            next => return Ok((out, next)),
        }
    }
}

/// Connections found gone and removed, each with the channels it was present in (as
/// `Store::remove_connection` returns them), so their presence `leave` can be announced.
pub type Removed = Vec<(String, Vec<(String, Subscriber)>)>;

/// Posts `frame` to each connection, `concurrency` at a time.
pub async fn post_all(
    store: &Store,
    connections: &Connections,
    targets: Vec<String>,
    frame: &str,
    concurrency: usize,
) -> (Report, Removed) {
    let frame = Frame::new(frame.to_string());
    let outcomes: Vec<(String, Result<(), PostError>)> = stream::iter(targets)
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
