//! Closing connections through the stage's `@connections` API, as `wsctl revoke` and
//! `wsctl disconnect` do: API Gateway's `DeleteConnection` closes the socket and runs the
//! connection's `$disconnect`, which frees its place and its subscriptions.

use aws_sdk_apigatewaymanagement as mgmt;
use futures::stream::{self, StreamExt};

use crate::error::Error;

/// What closing a set of connections found.
/// `wsctl disconnect`'s answer, and part of `wsctl revoke`'s.
#[derive(Debug, Default, serde::Serialize)]
pub struct Closed {
    pub closed: Vec<String>,
    /// Already gone (410): nothing to close.
    pub gone: Vec<String>,
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "closed {} connection(s)", self.closed.len())
    }
}

/// Closes each of `ids`; a failure other than "gone" stops with its error.
pub async fn close_connections(api: &mgmt::Client, ids: &[String]) -> Result<Closed, Error> {
    let results: Vec<(String, Result<bool, Error>)> = stream::iter(ids.iter().cloned())
        .map(|id| async move {
            let result = match api.delete_connection().connection_id(&id).send().await {
                Ok(_) => Ok(true),
                Err(e) if e.as_service_error().is_some_and(|s| s.is_gone_exception()) => Ok(false),
                Err(e) => Err(crate::aws::classify(e, "DeleteConnection", &id).into()),
            };
            (id, result)
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut out = Closed::default();
    for (id, result) in results {
        if result? {
            out.closed.push(id);
        } else {
            out.gone.push(id);
        }
    }
    out.closed.sort();
    out.gone.sort();
    Ok(out)
}
