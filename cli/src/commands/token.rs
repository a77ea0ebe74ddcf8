//! `wsctl token`: a client token signed with the stack's own secret (read from SSM), so tests
//! and demos can connect without an identity provider.

use std::collections::BTreeMap;
use std::fmt::Display;

use serde::Serialize;
use wsctl_functions::auth::{Capabilities, Op, check_user};

use crate::args::TokenArgs;
use crate::aws::AwsArgs;
use crate::config::Config;
use crate::error::Error;
use crate::stack::Stack;

pub async fn run(config: &Config, aws: &AwsArgs, args: &TokenArgs) -> Result<Token, Error> {
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
    Ok(Token {
        token,
        user: args.user.clone(),
        expires_at: claims.exp,
        cap: claims.cap,
    })
}

/// `wsctl token`'s answer; its text is the token alone, for `$(wsctl token …)`.
#[derive(Debug, Serialize)]
pub struct Token {
    token: String,
    user: String,
    expires_at: u64,
    cap: Capabilities,
}

impl Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.token)
    }
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

    #[test]
    fn both_forms_are_pinned() {
        let token = Token {
            token: "eyJ.x.y".into(),
            user: "alice".into(),
            expires_at: 1_700_000_000,
            cap: capabilities(&["room-*:publish".into()]).unwrap(),
        };
        assert_eq!(
            crate::output::forms(&token),
            (
                "{\n  \"cap\": {\n    \"room-*\": [\n      \"publish\"\n    ]\n  },\n  \"expires_at\": 1700000000,\n  \"token\": \"eyJ.x.y\",\n  \"user\": \"alice\"\n}".into(),
                "eyJ.x.y".into()
            )
        );
    }
}
