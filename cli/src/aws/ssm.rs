//! The stack's token secret: an SSM SecureString generated once and never printed, rotated
//! by `wsctl secret rotate` (the previous key then stays valid for a grace period).

use aws_sdk_ssm::types::{ParameterType, ResourceTypeForTagging, Tag};
use rand::RngCore;
use serde::Serialize;
use wsctl_functions::auth::SecretKeys;

use super::{AwsError, CallContext, Clients, TagChange, found, is_code, tag_map};
use crate::engine::model::{Applying, Kind, Live, LiveState, Resource, ResourceId, Spec, Tags};
use crate::names::Names;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecretSpec {
    pub name: String,
    pub tags: Tags,
}

impl Resource for SecretSpec {
    const LABEL: &'static str = "secret";
    const WAVE: u8 = 0;

    fn name(&self) -> &str {
        &self.name
    }

    async fn read(
        clients: &Clients,
        names: &Names,
        _expected: &[String],
        live: &mut LiveState,
    ) -> Result<(), AwsError> {
        let name = names.secret();
        // Without decryption: reading the stack must never need (or reveal) the secret itself.
        if found(
            clients
                .ssm
                .get_parameter()
                .name(&name)
                .with_decryption(false)
                .send()
                .await,
        )
        .ctx("GetParameter", &name)?
        .is_none()
        {
            return Ok(());
        }
        let tags = tag_map(
            clients
                .ssm
                .list_tags_for_resource()
                .resource_type(ResourceTypeForTagging::Parameter)
                .resource_id(&name)
                .send()
                .await
                .ctx("ListTagsForResource", &name)?
                .tag_list
                .unwrap_or_default()
                .into_iter()
                .map(|t| (t.key, t.value)),
        );
        let id = ResourceId {
            kind: Kind::Secret,
            name: name.clone(),
        };
        if names.owns(&tags) {
            live.resources.insert(
                id,
                Live {
                    spec: Spec::Secret(SecretSpec { name, tags }),
                    physical_id: None,
                },
            );
        } else {
            live.foreign.push(id);
        }
        Ok(())
    }

    async fn create(&self, cx: &Applying<'_>) -> Result<Option<String>, AwsError> {
        let clients = cx.clients;
        let mut req = clients
            .ssm
            .put_parameter()
            .name(&self.name)
            .r#type(ParameterType::SecureString)
            .value(new_key())
            .description("HS256 key for client tokens, managed by wsctl");
        for (k, v) in &self.tags {
            req = req.tags(Tag::builder().key(k).value(v).build().expect("set"));
        }
        match req.send().await {
            // Created meanwhile (a concurrent deploy): keep it only if it is a usable key, never
            // adopt whatever value happens to be there.
            Err(e) if is_code(&e, &["ParameterAlreadyExists"]) => {
                if let Some(Err(why)) = read_keys(clients, &self.name).await? {
                    return Err(AwsError::BadSecret {
                        name: self.name.clone(),
                        message: format!("{why}; it was created by something else meanwhile"),
                    });
                }
                update_tags(clients, self, &Tags::new()).await?;
            }
            other => {
                other.ctx("PutParameter", &self.name)?;
            }
        }
        Ok(None)
    }

    async fn update(
        &self,
        current: &Self,
        _physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<Option<String>, AwsError> {
        update_tags(cx.clients, self, &current.tags).await?;
        Ok(None)
    }

    async fn delete(
        name: &str,
        _physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<(), AwsError> {
        found(cx.clients.ssm.delete_parameter().name(name).send().await)
            .ctx("DeleteParameter", name)?;
        Ok(())
    }
}

/// 32 random bytes, hex: an HS256 key for client tokens.
fn new_key() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// The stack's keys, decrypted: `None` when the parameter does not exist; the inner error
/// says why its value is not a usable secret.
pub async fn read_keys(
    clients: &Clients,
    name: &str,
) -> Result<Option<Result<SecretKeys, String>>, AwsError> {
    let got = found(
        clients
            .ssm
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await,
    )
    .ctx("GetParameter", name)?;
    Ok(got.map(|got| match got.parameter.and_then(|p| p.value) {
        Some(value) => SecretKeys::parse(&value),
        None => Err("it is empty".to_string()),
    }))
}

/// The parameter's value and version, as a rotation reads them.
pub async fn read_versioned(clients: &Clients, name: &str) -> Result<(String, i64), AwsError> {
    let got = clients
        .ssm
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .ctx("GetParameter", name)?;
    let p = got
        .parameter
        .unwrap_or_else(|| aws_sdk_ssm::types::Parameter::builder().name(name).build());
    Ok((p.value.unwrap_or_default(), p.version))
}

/// Makes a new key current over `value` (the parameter as read); the current key keeps
/// passing for `grace`. Returns the new keys.
pub async fn rotate(
    clients: &Clients,
    name: &str,
    value: &str,
    grace: std::time::Duration,
) -> Result<SecretKeys, AwsError> {
    // A current key too short to keep is replaced without a grace period.
    let next = match SecretKeys::parse(value) {
        Ok(keys) => keys.rotate(&new_key(), grace),
        Err(_) => Ok(new_key()),
    }
    .map_err(|message| AwsError::BadSecret {
        name: name.to_string(),
        message,
    })?;
    clients
        .ssm
        .put_parameter()
        .name(name)
        .r#type(ParameterType::SecureString)
        .value(&next)
        .overwrite(true)
        .send()
        .await
        .ctx("PutParameter", name)?;
    SecretKeys::parse(&next).map_err(|message| AwsError::BadSecret {
        name: name.to_string(),
        message,
    })
}

/// Sets the tags only: the value is the secret itself, which a deploy never rewrites.
async fn update_tags(clients: &Clients, spec: &SecretSpec, current: &Tags) -> Result<(), AwsError> {
    let Some(change) = TagChange::between(Some(current), &spec.tags) else {
        return Ok(());
    };
    change
        .apply(
            async |keys| {
                clients
                    .ssm
                    .remove_tags_from_resource()
                    .resource_type(ResourceTypeForTagging::Parameter)
                    .resource_id(&spec.name)
                    .set_tag_keys(Some(keys))
                    .send()
                    .await
                    .ctx("RemoveTagsFromResource", &spec.name)
                    .map(drop)
            },
            async |tags| {
                let tags = tags
                    .iter()
                    .map(|(k, v)| Tag::builder().key(k).value(v).build().expect("set"))
                    .collect();
                clients
                    .ssm
                    .add_tags_to_resource()
                    .resource_type(ResourceTypeForTagging::Parameter)
                    .resource_id(&spec.name)
                    .set_tags(Some(tags))
                    .send()
                    .await
                    .ctx("AddTagsToResource", &spec.name)
                    .map(drop)
            },
        )
        .await
}

/// The stack's keys, for minting tokens: an unusable value is an error that says how to fix it.
pub async fn token_keys(clients: &Clients, name: &str) -> Result<SecretKeys, AwsError> {
    let bad = |message: String| AwsError::BadSecret {
        name: name.to_string(),
        message,
    };
    read_keys(clients, name)
        .await?
        .ok_or_else(|| bad("it does not exist (run `wsctl deploy` to create it)".into()))?
        .map_err(bad)
}
