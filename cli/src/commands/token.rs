//! `wsctl token`: a client token signed with the stack's own secret (read from SSM), so tests
//! and demos can connect without an identity provider.

use std::collections::BTreeMap;

use serde_json::json;
use wsctl_functions::auth::{Capabilities, Claims, Op, mint};

use crate::args::TokenArgs;
use crate::aws::{AwsArgs, Clients, Ctx};
use crate::config::Config;
use crate::engine::desired::Names;
use crate::error::Error;
use crate::output::Printer;

pub async fn run(config: &Config, aws: &AwsArgs, args: &TokenArgs, printer: &Printer) -> Result<(), Error> {
    let cap = capabilities(&args.allow)?;
    let (clients, _) = super::connect(config, aws).await?;
    let secret = secret(&clients, &Names::new(config)).await?;
    let claims = Claims::issue(&args.user, cap, args.ttl);
    let token = mint(&secret, &claims);
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

/// The stack's token secret (an SSM SecureString `wsctl deploy` created).
pub async fn secret(clients: &Clients, names: &Names) -> Result<Vec<u8>, Error> {
    let name = names.secret();
    secret_at(clients, &name)
        .await?
        .ok_or_else(|| Error::Usage { usage: format!("the token secret {name} is empty\nhint: run `wsctl deploy` to create it") })
}

/// The value of the SecureString `name`, decrypted; `None` when it is empty.
pub async fn secret_at(clients: &Clients, name: &str) -> Result<Option<Vec<u8>>, Error> {
    let got = clients.ssm.get_parameter().name(name).with_decryption(true).send().await.ctx("GetParameter", name)?;
    Ok(got.parameter.and_then(|p| p.value).map(String::into_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_rules() {
        let c = capabilities(&["room-*:subscribe,publish".into(), "lobby:presence".into()]).unwrap();
        assert!(c.allows("room-1", Op::Publish));
        assert!(!c.allows("room-1", Op::History));
        assert!(c.allows("lobby", Op::Presence));
        assert!(capabilities(&[]).unwrap().allows("anything", Op::History));
        assert!(capabilities(&["room".into()]).is_err());
        assert!(capabilities(&["room:dance".into()]).is_err());
    }
}
