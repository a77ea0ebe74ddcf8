//! IAM roles: one per function, under the stack's path, with one inline policy.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::{AwsError, Clients, Ctx, TagChange, found, tag_map};
use crate::engine::desired::Names;
use crate::engine::model::{Cx, Kind, Live, LiveState, Resource, ResourceId, Spec, Tags};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoleSpec {
    pub name: String,
    pub path: String,
    pub assume_role_policy: Value,
    /// Inline policies by name; wsctl writes exactly one.
    pub policies: BTreeMap<String, Value>,
    pub tags: Tags,
}

impl Resource for RoleSpec {
    const LABEL: &'static str = "role";
    const WAVE: u8 = 1;
    const IMMUTABLE_FIELDS: &'static [&'static str] = &["path"];

    fn name(&self) -> &str {
        &self.name
    }

    async fn read(
        clients: &Clients,
        names: &Names,
        expected: &[String],
        live: &mut LiveState,
    ) -> Result<(), AwsError> {
        let path = names.role_path();
        let mut roles = Vec::new();
        let mut pages = clients
            .iam
            .list_roles()
            .path_prefix(&path)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            roles.extend(page.ctx("ListRoles", &path)?.roles);
        }
        for role in roles {
            let name = role.role_name;
            let tags = tag_map(
                clients
                    .iam
                    .list_role_tags()
                    .role_name(&name)
                    .send()
                    .await
                    .ctx("ListRoleTags", &name)?
                    .tags
                    .into_iter()
                    .map(|t| (t.key, t.value)),
            );
            if !names.owns(&tags) {
                if expected.contains(&name) {
                    live.foreign.push(ResourceId {
                        kind: Kind::Role,
                        name,
                    });
                }
                continue;
            }
            let mut policies = BTreeMap::new();
            let listed = clients
                .iam
                .list_role_policies()
                .role_name(&name)
                .send()
                .await
                .ctx("ListRolePolicies", &name)?;
            for policy in listed.policy_names {
                let got = clients
                    .iam
                    .get_role_policy()
                    .role_name(&name)
                    .policy_name(&policy)
                    .send()
                    .await
                    .ctx("GetRolePolicy", &name)?;
                policies.insert(policy, decode_policy(&got.policy_document));
            }
            let spec = RoleSpec {
                name: name.clone(),
                path: role.path,
                assume_role_policy: decode_policy(
                    role.assume_role_policy_document.as_deref().unwrap_or(""),
                ),
                policies,
                tags,
            };
            live.resources.insert(
                spec_id(&name),
                Live {
                    spec: Spec::Role(spec),
                    physical_id: Some(role.arn),
                },
            );
        }
        // A role of the same name elsewhere (another path) would make CreateRole fail half-way
        // through a deploy; find it now so the plan refuses up front.
        for name in expected {
            if live.resources.contains_key(&spec_id(name))
                || live
                    .foreign
                    .iter()
                    .any(|f| f.kind == Kind::Role && &f.name == name)
            {
                continue;
            }
            if found(clients.iam.get_role().role_name(name).send().await)
                .ctx("GetRole", name)?
                .is_some()
            {
                live.foreign.push(spec_id(name));
            }
        }
        Ok(())
    }

    async fn create(&self, cx: &Cx<'_>) -> Result<Option<String>, AwsError> {
        let clients = cx.clients;
        let mut req = clients
            .iam
            .create_role()
            .role_name(&self.name)
            .path(&self.path)
            .assume_role_policy_document(self.assume_role_policy.to_string())
            .description("Lambda execution role managed by wsctl");
        for (k, v) in &self.tags {
            req = req.tags(
                aws_sdk_iam::types::Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
                    .expect("key and value set"),
            );
        }
        let created = req.send().await.ctx("CreateRole", &self.name)?;
        for (policy, doc) in &self.policies {
            put_policy(clients, &self.name, policy, doc).await?;
        }
        Ok(Some(created.role.map(|r| r.arn).unwrap_or_default()))
    }

    async fn update(
        &self,
        current: &Self,
        physical_id: Option<&str>,
        cx: &Cx<'_>,
    ) -> Result<Option<String>, AwsError> {
        update(cx.clients, self, current).await?;
        Ok(physical_id.map(str::to_string))
    }

    /// Deletes the role's inline policies first: IAM refuses to delete a role that has any.
    async fn delete(name: &str, _physical_id: Option<&str>, cx: &Cx<'_>) -> Result<(), AwsError> {
        let Some(listed) = found(
            cx.clients
                .iam
                .list_role_policies()
                .role_name(name)
                .send()
                .await,
        )
        .ctx("ListRolePolicies", name)?
        else {
            return Ok(());
        };
        for policy in listed.policy_names {
            found(
                cx.clients
                    .iam
                    .delete_role_policy()
                    .role_name(name)
                    .policy_name(&policy)
                    .send()
                    .await,
            )
            .ctx("DeleteRolePolicy", name)?;
        }
        found(cx.clients.iam.delete_role().role_name(name).send().await).ctx("DeleteRole", name)?;
        Ok(())
    }
}

fn spec_id(name: &str) -> ResourceId {
    ResourceId {
        kind: Kind::Role,
        name: name.to_string(),
    }
}

async fn update(clients: &Clients, spec: &RoleSpec, current: &RoleSpec) -> Result<(), AwsError> {
    if current.assume_role_policy != spec.assume_role_policy {
        clients
            .iam
            .update_assume_role_policy()
            .role_name(&spec.name)
            .policy_document(spec.assume_role_policy.to_string())
            .send()
            .await
            .ctx("UpdateAssumeRolePolicy", &spec.name)?;
    }
    for (policy, doc) in &spec.policies {
        if current.policies.get(policy) != Some(doc) {
            put_policy(clients, &spec.name, policy, doc).await?;
        }
    }
    for policy in current
        .policies
        .keys()
        .filter(|p| !spec.policies.contains_key(*p))
    {
        clients
            .iam
            .delete_role_policy()
            .role_name(&spec.name)
            .policy_name(policy)
            .send()
            .await
            .ctx("DeleteRolePolicy", &spec.name)?;
    }
    let Some(change) = TagChange::between(Some(&current.tags), &spec.tags) else {
        return Ok(());
    };
    change
        .apply(
            async |keys| {
                clients
                    .iam
                    .untag_role()
                    .role_name(&spec.name)
                    .set_tag_keys(Some(keys))
                    .send()
                    .await
                    .ctx("UntagRole", &spec.name)
                    .map(drop)
            },
            async |tags| {
                let tags = tags.iter().map(|(k, v)| {
                    aws_sdk_iam::types::Tag::builder()
                        .key(k)
                        .value(v)
                        .build()
                        .expect("key and value set")
                });
                clients
                    .iam
                    .tag_role()
                    .role_name(&spec.name)
                    .set_tags(Some(tags.collect()))
                    .send()
                    .await
                    .ctx("TagRole", &spec.name)
                    .map(drop)
            },
        )
        .await
}

async fn put_policy(
    clients: &Clients,
    role: &str,
    policy: &str,
    doc: &Value,
) -> Result<(), AwsError> {
    clients
        .iam
        .put_role_policy()
        .role_name(role)
        .policy_name(policy)
        .policy_document(doc.to_string())
        .send()
        .await
        .ctx("PutRolePolicy", role)?;
    Ok(())
}

/// IAM returns policy documents URL-encoded; compare them as JSON values.
pub fn decode_policy(text: &str) -> Value {
    let decoded = percent_decode(text);
    serde_json::from_str(&decoded).unwrap_or(Value::String(decoded))
}

fn percent_decode(text: &str) -> String {
    if !text.contains('%') {
        return text.to_string();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoded_and_plain_policies_decode_to_the_same_value() {
        let plain =
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:Get*"}]}"#;
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%22s3%3AGet%2A%22%7D%5D%7D";
        assert_eq!(decode_policy(plain), decode_policy(encoded));
        assert_eq!(decode_policy(encoded)["Statement"][0]["Action"], "s3:Get*");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
