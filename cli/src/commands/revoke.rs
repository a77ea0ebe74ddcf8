//! `wsctl revoke --user U`: every token of U issued before now stops passing (the authorizer
//! refuses it at the handshake, the message function at the next frame and in `auth`
//! renewals), and U's open connections are closed.

use std::fmt::Display;
use std::time::Duration;

use serde::Serialize;
use wsctl_functions::auth::now;

use crate::args::RevokeArgs;
use crate::aws::AwsArgs;
use crate::config::Config;
use crate::error::Error;
use crate::stack::{Closed, Stack, close_connections};

/// How long after closing the connections it found revoke looks again: a handshake the
/// authorizer let through just before the revocation stores its connection a moment later.
const SECOND_LOOK: Duration = Duration::from_secs(2);

pub async fn run(config: &Config, aws: &AwsArgs, args: &RevokeArgs) -> Result<Revoked, Error> {
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
    Ok(Revoked {
        user: args.user.clone(),
        revoked_before: before,
        closed: result,
    })
}

/// `wsctl revoke`'s answer.
#[derive(Debug, Serialize)]
pub struct Revoked {
    user: String,
    /// Epoch seconds: tokens issued at or before it no longer pass.
    revoked_before: u64,
    #[serde(flatten)]
    closed: Closed,
}

impl Display for Revoked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "revoked the tokens of {} issued before {}; closed {} open connection(s)",
            self.user,
            crate::local::events::iso8601(self.revoked_before * 1000),
            self.closed.closed.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_are_pinned() {
        let revoked = Revoked {
            user: "alice".into(),
            revoked_before: 1_700_000_000,
            closed: Closed {
                closed: vec!["abc=".into()],
                gone: vec![],
            },
        };
        assert_eq!(
            crate::output::forms(&revoked),
            (
                "{\n  \"closed\": [\n    \"abc=\"\n  ],\n  \"gone\": [],\n  \"revoked_before\": 1700000000,\n  \"user\": \"alice\"\n}".into(),
                "revoked the tokens of alice issued before 2023-11-14T22:13:20.000Z; closed 1 open connection(s)".into()
            )
        );
    }
}
