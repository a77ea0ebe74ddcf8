//! IAM roles: one per function, under the stack's path, with one inline policy and the
//! stack's permissions boundary; and that boundary, a managed policy wsctl keeps unless the
//! config names one.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::{AwsError, CallContext, Clients, TagChange, found, tag_map};
use crate::engine::model::{Applying, Kind, Live, LiveState, Resource, ResourceId, Spec, Tags};
use crate::names::Names;

mod boundary;

pub use boundary::BoundarySpec;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoleSpec {
    pub name: String,
    pub path: String,
    pub assume_role_policy: Value,
    /// Inline policies by name; wsctl writes exactly one.
    pub policies: BTreeMap<String, Value>,
    /// The managed policy that caps what the role may do, whatever its own policy says.
    pub permissions_boundary: Option<String>,
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
            let listed = role_policy_names(&clients.iam, &name)
                .await?
                .unwrap_or_default();
            for policy in listed {
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
            // ListRoles leaves the boundary out (IAM API reference, ListRoles).
            let permissions_boundary = clients
                .iam
                .get_role()
                .role_name(&name)
                .send()
                .await
                .ctx("GetRole", &name)?
                .role
                .and_then(|r| r.permissions_boundary)
                .and_then(|b| b.permissions_boundary_arn);
            let spec = RoleSpec {
                name: name.clone(),
                path: role.path,
                assume_role_policy: decode_policy(
                    role.assume_role_policy_document.as_deref().unwrap_or(""),
                ),
                policies,
                permissions_boundary,
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

    async fn create(&self, cx: &Applying<'_>) -> Result<Option<String>, AwsError> {
        let clients = cx.clients;
        let mut req = clients
            .iam
            .create_role()
            .role_name(&self.name)
            .path(&self.path)
            .assume_role_policy_document(self.assume_role_policy.to_string())
            .set_permissions_boundary(self.permissions_boundary.clone())
            .description("Lambda execution role managed by wsctl");
        for (k, v) in &self.tags {
            req = req.tags(iam_tag(k, v));
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
        cx: &Applying<'_>,
    ) -> Result<Option<String>, AwsError> {
        update(cx.clients, self, current).await?;
        Ok(physical_id.map(str::to_string))
    }

    /// Deletes the role's inline policies first: IAM refuses to delete a role that has any.
    async fn delete(
        name: &str,
        _physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<(), AwsError> {
        let Some(listed) = role_policy_names(&cx.clients.iam, name).await? else {
            return Ok(());
        };
        for policy in listed {
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

/// Only an administrator creates or changes the boundary: a refusal says so and how.
fn for_admin<T>(result: Result<T, AwsError>) -> Result<T, AwsError> {
    result.map_err(|e| match e {
        AwsError::AccessDenied {
            op,
            resource,
            message,
        } => AwsError::BoundaryNeedsAdmin {
            op,
            resource,
            message,
        },
        other => other,
    })
}

fn iam_tag(key: &str, value: &str) -> aws_sdk_iam::types::Tag {
    aws_sdk_iam::types::Tag::builder()
        .key(key)
        .value(value)
        .build()
        .expect("key and value set")
}

fn spec_id(name: &str) -> ResourceId {
    ResourceId {
        kind: Kind::Role,
        name: name.to_string(),
    }
}

async fn update(clients: &Clients, spec: &RoleSpec, current: &RoleSpec) -> Result<(), AwsError> {
    // First: a deployer may change a role's policy only once the role carries the boundary.
    if let Some(boundary) = &spec.permissions_boundary
        && current.permissions_boundary.as_ref() != Some(boundary)
    {
        clients
            .iam
            .put_role_permissions_boundary()
            .role_name(&spec.name)
            .permissions_boundary(boundary)
            .send()
            .await
            .ctx("PutRolePermissionsBoundary", &spec.name)?;
    }
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
                let tags = tags.iter().map(|(k, v)| iam_tag(k, v));
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

/// A role's inline policies, every page of them (IAM pages its lists by `Marker` while
/// `IsTruncated`, IAM API reference, ListRolePolicies); `None` when the role does not exist.
async fn role_policy_names(
    iam: &aws_sdk_iam::Client,
    role: &str,
) -> Result<Option<Vec<String>>, AwsError> {
    let mut names = Vec::new();
    let mut pages = iam
        .list_role_policies()
        .role_name(role)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        match found(page).ctx("ListRolePolicies", role)? {
            Some(page) => names.extend(page.policy_names),
            None => return Ok(None),
        }
    }
    Ok(Some(names))
}

/// A managed policy's versions, every page; `None` when the policy does not exist.
async fn policy_versions(
    iam: &aws_sdk_iam::Client,
    arn: &str,
) -> Result<Option<Vec<aws_sdk_iam::types::PolicyVersion>>, AwsError> {
    let mut versions = Vec::new();
    let mut pages = iam
        .list_policy_versions()
        .policy_arn(arn)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        match found(page).ctx("ListPolicyVersions", arn)? {
            Some(page) => versions.extend(page.versions.unwrap_or_default()),
            None => return Ok(None),
        }
    }
    Ok(Some(versions))
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
