//! `wsctl secret rotate`: a fresh key for client tokens. Tokens minted afterwards are signed
//! with it; tokens signed with the old key keep passing until the grace period ends. Warm
//! authorizers learn the new key the first time a token names it (and within a minute
//! regardless).

use std::fmt::Display;

use serde::Serialize;
use wsctl_functions::auth::{SecretKeys, now};

use crate::args::SecretCommand;
use crate::aws::AwsArgs;
use crate::config::Config;
use crate::error::Error;
use crate::stack::Stack;

pub async fn run(
    config: &Config,
    aws: &AwsArgs,
    command: &SecretCommand,
) -> Result<Rotated, Error> {
    let SecretCommand::Rotate { grace } = command;
    let stack = Stack::open(config, aws).await?;
    let clients = &stack.clients;
    let name = config.names().secret();
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
    // SSM has no conditional write: the version read is claimed in the counters table first,
    // so of two rotations that read the same version one goes on and the other is refused
    // (without the claim, the second would overwrite the key the first just minted).
    let (value, version) = crate::aws::ssm::read_versioned(clients, &name).await?;
    let counters = stack.store().tables.counters;
    if !claim(&stack.clients.dynamodb, &counters, version).await? {
        return Err(Error::Usage {
            usage: format!(
                "another rotation of {name} is under way (or just ran): version {version} was already rotated\nhint: run `wsctl secret rotate` again to rotate the key it made"
            ),
        });
    }
    let keys = match crate::aws::ssm::rotate(clients, &name, &value, *grace).await {
        Ok(keys) => keys,
        Err(e) => {
            // Nothing was rotated: the next rotation may claim this version again.
            let _ = release(&stack.clients.dynamodb, &counters, version).await;
            return Err(e.into());
        }
    };
    let key_id = wsctl_functions::auth::key_id(&keys.current);
    let until = keys.previous.as_ref().map(|(_, until)| *until);
    Ok(Rotated {
        parameter: name,
        key_id,
        previous_valid_until: until,
    })
}

/// `wsctl secret rotate`'s answer.
#[derive(Debug, Serialize)]
pub struct Rotated {
    parameter: String,
    key_id: String,
    /// Epoch seconds until which tokens signed with the previous key pass.
    previous_valid_until: Option<u64>,
}

impl Display for Rotated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let previous = match self.previous_valid_until {
            Some(t) => format!(
                "tokens signed with the previous key pass until {} (epoch {t})",
                crate::local::events::iso8601(t * 1000)
            ),
            None => "tokens signed with older keys stop passing within a minute".into(),
        };
        write!(
            f,
            "rotated {}: new key {}; {previous}",
            self.parameter, self.key_id
        )
    }
}

/// The counters item recording the last parameter version a rotation started from.
const ROTATION: &str = "#secret-rotation";
/// A claim older than this is taken to be of a rotation that died before its write.
const STALE_CLAIM_SECS: u64 = 300;

/// Claims the rotation of parameter version `version`: false when another rotation claimed
/// it (or a later one) within the last few minutes.
async fn claim(db: &aws_sdk_dynamodb::Client, table: &str, version: i64) -> Result<bool, Error> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let result = db
        .update_item()
        .table_name(table)
        .key(
            wsctl_functions::layout::COUNTERS.partition_key.name,
            AttributeValue::S(ROTATION.into()),
        )
        .update_expression("SET #v = :v, #at = :now")
        .condition_expression("attribute_not_exists(#v) OR #v < :v OR #at < :stale")
        .expression_attribute_names("#v", "version")
        .expression_attribute_names("#at", "claimed_at")
        .expression_attribute_values(":v", AttributeValue::N(version.to_string()))
        .expression_attribute_values(":now", AttributeValue::N(now().to_string()))
        .expression_attribute_values(
            ":stale",
            AttributeValue::N(now().saturating_sub(STALE_CLAIM_SECS).to_string()),
        )
        .send()
        .await;
    match result {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
        {
            Ok(false)
        }
        Err(e) => Err(crate::aws::classify(e, "UpdateItem", table).into()),
    }
}

/// Gives a claim back after a failed write.
async fn release(db: &aws_sdk_dynamodb::Client, table: &str, version: i64) -> Result<(), Error> {
    use aws_sdk_dynamodb::types::AttributeValue;
    db.delete_item()
        .table_name(table)
        .key(
            wsctl_functions::layout::COUNTERS.partition_key.name,
            AttributeValue::S(ROTATION.into()),
        )
        .condition_expression("#v = :v")
        .expression_attribute_names("#v", "version")
        .expression_attribute_values(":v", AttributeValue::N(version.to_string()))
        .send()
        .await
        .map_err(|e| crate::aws::classify(e, "DeleteItem", table))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_are_pinned() {
        let rotated = Rotated {
            parameter: "/wsctl/chat/dev/token-secret".into(),
            key_id: "k1".into(),
            previous_valid_until: None,
        };
        assert_eq!(
            crate::output::forms(&rotated),
            (
                "{\n  \"key_id\": \"k1\",\n  \"parameter\": \"/wsctl/chat/dev/token-secret\",\n  \"previous_valid_until\": null\n}".into(),
                "rotated /wsctl/chat/dev/token-secret: new key k1; tokens signed with older keys stop passing within a minute".into()
            )
        );
    }
}
