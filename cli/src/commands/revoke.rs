//! `wsctl revoke --user U`: every token of U issued before now stops passing (the authorizer
//! refuses it at the handshake, the message function at the next frame and in `auth`
//! renewals), and U's open connections are closed.

use std::time::Duration;

use serde_json::json;
use wsctl_functions::auth::now;

use crate::args::RevokeArgs;
use crate::aws::AwsArgs;
use crate::config::Config;
use crate::error::Error;
use crate::output::Printer;
use crate::stack::{Stack, close_connections};

/// How long after closing the connections it found revoke looks again: a handshake the
/// authorizer let through just before the revocation stores its connection a moment later.
const SECOND_LOOK: Duration = Duration::from_secs(2);

pub async fn run(
    config: &Config,
    aws: &AwsArgs,
    args: &RevokeArgs,
    printer: &Printer,
) -> Result<(), Error> {
    wsctl_functions::auth::check_user(&args.user).map_err(|e| Error::Usage {
        usage: format!("--user: {e}\nhint: the user id exactly as its tokens' `sub` spells it"),
    })?;
    let stack = Stack::open(config, aws).await?;
    let store = stack.store();
    let failed = |e: wsctl_functions::store::StoreError| Error::Io(e.to_string());
    let before = now();
    store.revoke(&args.user, before).await.map_err(failed)?;
    let api = stack.connections().await?;
    let found = store.connections_of(&args.user).await.map_err(failed)?;
    let mut result = close_connections(&api, &found).await?;
    tokio::time::sleep(SECOND_LOOK).await;
    let mut late = Vec::new();
    for id in store.connections_of(&args.user).await.map_err(failed)? {
        if found.contains(&id) {
            continue;
        }
        let opened = store.get_connection(&id).await.map_err(failed)?;
        if opened.is_some_and(|c| c.connected_at <= before) {
            late.push(id);
        }
    }
    let again = close_connections(&api, &late).await?;
    result.closed.extend(again.closed);
    result.gone.extend(again.gone);
    if printer.json() {
        printer.result_json(&json!({
            "user": args.user,
            "revoked_before": before,
            "closed": result.closed,
            "gone": result.gone,
        }));
    } else {
        printer.result(format!(
            "revoked the tokens of {} issued before {}; closed {} open connection(s)",
            args.user,
            crate::local::events::iso8601(before * 1000),
            result.closed.len()
        ));
    }
    Ok(())
}
