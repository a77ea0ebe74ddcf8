//! `wsctl connections`: the connections the stack's table knows, with their user, connection
//! time and channels; filtered by channel (a query of its subscribers) or by user.

use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::json;
use wsctl_functions::auth::now;

use crate::args::ConnectionsArgs;
use crate::aws::AwsArgs;
use crate::config::Config;
use crate::error::Error;
use crate::output::Printer;
use crate::stack::{Stack, scan, subscriber_ids};

pub async fn run(
    config: &Config,
    aws: &AwsArgs,
    args: &ConnectionsArgs,
    printer: &Printer,
) -> Result<(), Error> {
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
    let listed: Vec<_> = stream::iter(rows)
        .map(|r| {
            let store = &store;
            async move {
                let channels: Vec<String> = store
                    .subscriptions_of(&r.id)
                    .await?
                    .into_iter()
                    .map(|(c, _)| c)
                    .collect();
                Ok::<_, wsctl_functions::store::StoreError>((r, channels))
            }
        })
        .buffered(32)
        .try_collect()
        .await
        .map_err(failed)?;
    if printer.json() {
        let list: Vec<_> = listed
            .iter()
            .map(|(r, channels)| json!({"id": r.id, "user": r.user, "connected_at": r.connected_at, "channels": channels}))
            .collect();
        printer.result_json(&json!(list));
    } else if listed.is_empty() {
        printer.result("no connections");
    } else {
        printer.result(format!(
            "{:<17} {:<20} {:<24} CHANNELS",
            "ID", "USER", "CONNECTED AT"
        ));
        for (r, channels) in &listed {
            let at = crate::local::events::iso8601(r.connected_at * 1000);
            printer.result(format!(
                "{:<17} {:<20} {:<24} {}",
                r.id,
                r.user,
                at,
                channels.join(",")
            ));
        }
    }
    Ok(())
}
