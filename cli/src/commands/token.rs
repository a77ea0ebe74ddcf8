//! `wsctl token`: a client token signed with the stack's own secret (read from SSM), so tests
//! and demos can connect without an identity provider.

use std::collections::BTreeMap;

use serde_json::json;
use wsctl_functions::auth::{Capabilities, Op, check_user};

use crate::args::TokenArgs;
use crate::aws::AwsArgs;
use crate::config::Config;
use crate::error::Error;
use crate::output::Printer;
use crate::stack::Stack;

pub async fn run(
    config: &Config,
    aws: &AwsArgs,
    args: &TokenArgs,
    printer: &Printer,
) -> Result<(), Error> {
    let cap = capabilities(&args.allow)?;
    check_user(&args.user).map_err(|why| Error::Usage {
        usage: format!("--user: {why}\nhint: pick another user id"),
    })?;
    let stack = Stack::open(config, aws).await?;
    // Everything on every channel is a fine default on this machine, and never what a
    // deployed stage's token should carry by accident.
    if args.allow.is_empty() && stack.local_gateway().await?.is_none() {
        return Err(Error::Usage {
            usage: format!(
                "--allow is required for a token of the deployed stage {}/{}: without it the token may do everything on every channel\nhint: grant what the client needs, e.g. --allow 'room-*:subscribe,publish'; --allow '*:subscribe,publish,presence,history' if you do mean everything",
                config.stack, config.stage
            ),
        });
    }
    let (token, claims) = stack.mint(&args.user, cap, args.ttl).await?;
    if printer.json() {
        printer.result_json(&json!({"token": token, "user": args.user, "expires_at": claims.exp, "cap": claims.cap}));
    } else {
        printer.result(token);
    }
    Ok(())
}

/// `room-*:subscribe,publish` → `{"room-*": [subscribe, publish]}`; none → everything everywhere.
pub fn capabilities(allow: &[String]) -> Result<Capabilities, Error> {
    if allow.is_empty() {
        return Ok(Capabilities::everything());
    }
    let mut cap: BTreeMap<String, Vec<Op>> = BTreeMap::new();
    for rule in allow {
        let (glob, ops) = Capabilities::parse_rule(rule).map_err(|why| Error::Usage {
            usage: format!("--allow {rule:?}: {why}\nhint: write CHANNEL-GLOB:OPERATION,... e.g. 'room-*:subscribe,publish'; operations are subscribe, publish, presence, history"),
        })?;
        let entry = cap.entry(glob).or_default();
        for op in ops {
            if !entry.contains(&op) {
                entry.push(op);
            }
        }
    }
    Ok(Capabilities(cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_rules() {
        let c =
            capabilities(&["room-*:subscribe,publish".into(), "lobby:presence".into()]).unwrap();
        assert!(c.allows("room-1", Op::Publish));
        assert!(!c.allows("room-1", Op::History));
        assert!(c.allows("lobby", Op::Presence));
        assert!(capabilities(&[]).unwrap().allows("anything", Op::History));
        assert!(capabilities(&["room".into()]).is_err());
        assert!(capabilities(&["room:dance".into()]).is_err());
    }
}
