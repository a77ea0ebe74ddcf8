//! `wsctl connections`: the connections the stack's table knows, with their user, connection
//! time and channels; filtered by channel (a query of its subscribers) or by user.

use std::fmt::Display;

use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;
use wsctl_functions::auth::now;

use crate::args::ConnectionsArgs;
use crate::aws::AwsArgs;
use crate::config::Config;
use crate::error::Error;
use crate::stack::{Stack, scan, subscriber_ids};

pub async fn run(config: &Config, aws: &AwsArgs, args: &ConnectionsArgs) -> Result<Listed, Error> {
    let stack = Stack::open(config, aws).await?;
    let store = stack.store();
    let failed = |e: wsctl_functions::store::StoreError| Error::Io(e.to_string());
    let only = match &args.channel {
        Some(channel) => Some(subscriber_ids(&store, channel).await?),
        None => None,
    };
    let mut rows = scan(&store).await?;
    let current = now();
    rows.retain(|r| {
        only.as_ref().is_none_or(|ids| ids.contains(&r.id))
            && args.user.as_ref().is_none_or(|u| &r.user == u)
            && r.expires.is_none_or(|e| e >= current)
    });
    rows.sort_by(|a, b| (a.connected_at, &a.id).cmp(&(b.connected_at, &b.id)));
    let listed = stream::iter(rows)
        .map(|r| {
            let store = &store;
            async move {
                let channels: Vec<String> = store
                    .subscriptions_of(&r.id)
                    .await?
                    .into_iter()
                    .map(|(c, _)| c)
                    .collect();
                Ok::<_, wsctl_functions::store::StoreError>(Listing {
                    id: r.id,
                    user: r.user,
                    connected_at: r.connected_at,
                    channels,
                })
            }
        })
        .buffered(32)
        .try_collect()
        .await
        .map_err(failed)?;
    Ok(Listed(listed))
}

/// `wsctl connections`' answer: a JSON list, or a table.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct Listed(Vec<Listing>);

#[derive(Debug, Serialize)]
struct Listing {
    id: String,
    user: String,
    /// Epoch seconds.
    connected_at: u64,
    channels: Vec<String>,
}

impl Display for Listed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no connections");
        }
        write!(
            f,
            "{:<17} {:<20} {:<24} CHANNELS",
            "ID", "USER", "CONNECTED AT"
        )?;
        for c in &self.0 {
            let at = crate::local::events::iso8601(c.connected_at * 1000);
            write!(
                f,
                "\n{:<17} {:<20} {:<24} {}",
                c.id,
                c.user,
                at,
                c.channels.join(",")
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_are_pinned() {
        let listed = Listed(vec![Listing {
            id: "abc=".into(),
            user: "alice".into(),
            connected_at: 1_700_000_000,
            channels: vec!["room-1".into(), "room-2".into()],
        }]);
        let (json, text) = crate::output::forms(&listed);
        assert_eq!(
            json,
            "[\n  {\n    \"channels\": [\n      \"room-1\",\n      \"room-2\"\n    ],\n    \"connected_at\": 1700000000,\n    \"id\": \"abc=\",\n    \"user\": \"alice\"\n  }\n]"
        );
        assert_eq!(
            text,
            "ID                USER                 CONNECTED AT             CHANNELS\nabc=              alice                2023-11-14T22:13:20.000Z room-1,room-2"
        );
        assert_eq!(crate::output::forms(&Listed(vec![])).1, "no connections");
    }
}
