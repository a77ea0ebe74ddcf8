//! `wsctl secret rotate`: a fresh key for client tokens. Tokens minted afterwards are signed
//! with it; tokens signed with the old key keep passing until the grace period ends. Warm
//! authorizers learn the new key the first time a token names it (and within a minute
//! regardless).

use serde_json::json;
use wsctl_functions::auth::{SecretKeys, now};

use crate::args::SecretCommand;
use crate::aws::AwsArgs;
use crate::config::Config;
use crate::engine::desired::Names;
use crate::error::Error;
use crate::output::Printer;
use crate::stack::Stack;

pub async fn run(
    config: &Config,
    aws: &AwsArgs,
    command: &SecretCommand,
    printer: &Printer,
) -> Result<(), Error> {
    let SecretCommand::Rotate { grace } = command;
    let stack = Stack::open(config, aws).await?;
    let clients = &stack.clients;
    let name = Names::new(config).secret();
    let Some(current) = crate::aws::ssm::read_keys(clients, &name).await? else {
        return Err(Error::Usage {
            usage: format!("the stack has no token secret {name}\nhint: run `wsctl deploy` first"),
        });
    };
    // A second rotation inside the grace period would cut the oldest key's grace short:
    // tokens promised until then would be refused at once.
    if let Ok(SecretKeys {
        previous: Some((_, until)),
        ..
    }) = current
        && !grace.is_zero()
        && until > now()
    {
        return Err(Error::Usage {
            usage: format!(
                "the key before the current one still passes until {}; rotating again now would refuse its tokens at once\nhint: run this again after that time, or pass `--grace 0s` to retire every older key now",
                crate::local::events::iso8601(until * 1000)
            ),
        });
    }
    let keys = crate::aws::ssm::rotate(clients, &name, *grace).await?;
    let key_id = wsctl_functions::auth::key_id(&keys.current);
    let until = keys.previous.as_ref().map(|(_, until)| *until);
    if printer.json() {
        printer.result_json(
            &json!({"parameter": name, "key_id": key_id, "previous_valid_until": until}),
        );
    } else {
        let previous = match until {
            Some(t) => format!(
                "tokens signed with the previous key pass until {} (epoch {t})",
                crate::local::events::iso8601(t * 1000)
            ),
            None => "tokens signed with older keys stop passing within a minute".into(),
        };
        printer.result(format!("rotated {name}: new key {key_id}; {previous}"));
    }
    Ok(())
}
