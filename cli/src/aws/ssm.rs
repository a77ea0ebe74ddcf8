//! The stack's token secret: an SSM SecureString generated once and never printed.

use aws_sdk_ssm::types::{ParameterType, ResourceTypeForTagging, Tag};
use rand::RngCore;

use super::{AwsError, Clients, Ctx, found, is_code, tag_map};
use crate::engine::desired::Names;
use crate::engine::model::{Kind, Live, LiveState, ResourceId, SecretSpec, Spec};

pub async fn read(clients: &Clients, names: &Names, live: &mut LiveState) -> Result<(), AwsError> {
    let name = names.secret();
    // Without decryption: reading the stack must never need (or reveal) the secret itself.
    if found(clients.ssm.get_parameter().name(&name).with_decryption(false).send().await).ctx("GetParameter", &name)?.is_none() {
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
    let id = ResourceId { kind: Kind::Secret, name: name.clone() };
    if names.owns(&tags) {
        live.resources.insert(id, Live { spec: Spec::Secret(SecretSpec { name, tags }), physical_id: None });
    } else {
        live.foreign.push(id);
    }
    Ok(())
}

/// 32 random bytes, hex: the HS256 key the authorizer verifies tokens with.
pub async fn create(clients: &Clients, spec: &SecretSpec) -> Result<(), AwsError> {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    let value: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let mut req = clients
        .ssm
        .put_parameter()
        .name(&spec.name)
        .r#type(ParameterType::SecureString)
        .value(value)
        .description("HS256 key for client tokens, managed by wsctl");
    for (k, v) in &spec.tags {
        req = req.tags(Tag::builder().key(k).value(v).build().expect("set"));
    }
    match req.send().await {
        // Created by an interrupted run whose tags step never happened: keep the value.
        Err(e) if is_code(&e, &["ParameterAlreadyExists"]) => update_tags(clients, spec, &Default::default()).await,
        other => other.ctx("PutParameter", &spec.name).map(|_| ()),
    }
}

pub async fn update_tags(clients: &Clients, spec: &SecretSpec, current: &crate::engine::model::Tags) -> Result<(), AwsError> {
    let stale = super::removed_keys(current, &spec.tags);
    if !stale.is_empty() {
        clients
            .ssm
            .remove_tags_from_resource()
            .resource_type(ResourceTypeForTagging::Parameter)
            .resource_id(&spec.name)
            .set_tag_keys(Some(stale))
            .send()
            .await
            .ctx("RemoveTagsFromResource", &spec.name)?;
    }
    let tags = spec.tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build().expect("set")).collect();
    clients
        .ssm
        .add_tags_to_resource()
        .resource_type(ResourceTypeForTagging::Parameter)
        .resource_id(&spec.name)
        .set_tags(Some(tags))
        .send()
        .await
        .ctx("AddTagsToResource", &spec.name)?;
    Ok(())
}

pub async fn delete(clients: &Clients, name: &str) -> Result<(), AwsError> {
    found(clients.ssm.delete_parameter().name(name).send().await).ctx("DeleteParameter", name)?;
    Ok(())
}
