//! The stack's permissions boundary: a managed policy wsctl keeps (versions rotated, the
//! oldest deleted) unless the config names one of its own.

use serde::Serialize;
use serde_json::Value;

use crate::aws::{AwsError, CallContext, Clients, TagChange, found, tag_map};
use crate::engine::model::{Applying, Kind, Live, LiveState, Resource, ResourceId, Spec, Tags};
use crate::names::Names;

use super::*;

/// The stack's permissions boundary, a customer managed policy under the roles' path.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BoundarySpec {
    pub name: String,
    pub path: String,
    pub document: Value,
    pub tags: Tags,
}

/// IAM keeps at most five versions of a managed policy (IAM quotas).
const POLICY_VERSIONS: usize = 5;

impl Resource for BoundarySpec {
    const LABEL: &'static str = "boundary";
    const WAVE: u8 = 0;
    const IMMUTABLE_FIELDS: &'static [&'static str] = &["path"];

    fn name(&self) -> &str {
        &self.name
    }

    /// Found by listing the path: reading needs no account id, and a policy of the same name
    /// elsewhere is not the stack's.
    async fn read(
        clients: &Clients,
        names: &Names,
        _expected: &[String],
        live: &mut LiveState,
    ) -> Result<(), AwsError> {
        let path = names.role_path();
        let mut pages = clients
            .iam
            .list_policies()
            .scope(aws_sdk_iam::types::PolicyScopeType::Local)
            .path_prefix(&path)
            .into_paginator()
            .send();
        let mut found_policy = None;
        while let Some(page) = pages.next().await {
            let page = page.ctx("ListPolicies", &path)?;
            found_policy = found_policy.or(page
                .policies
                .unwrap_or_default()
                .into_iter()
                .find(|p| p.policy_name.as_deref() == Some(&names.boundary())));
        }
        let Some(policy) = found_policy else {
            return Ok(());
        };
        let arn = policy.arn.unwrap_or_default();
        let tags = tag_map(
            clients
                .iam
                .list_policy_tags()
                .policy_arn(&arn)
                .send()
                .await
                .ctx("ListPolicyTags", &arn)?
                .tags
                .into_iter()
                .map(|t| (t.key, t.value)),
        );
        let id = ResourceId {
            kind: Kind::Boundary,
            name: names.boundary(),
        };
        if !names.owns(&tags) {
            live.foreign.push(id);
            return Ok(());
        }
        let version = clients
            .iam
            .get_policy_version()
            .policy_arn(&arn)
            .version_id(policy.default_version_id.unwrap_or_default())
            .send()
            .await
            .ctx("GetPolicyVersion", &arn)?;
        let document = decode_policy(
            version
                .policy_version
                .and_then(|v| v.document)
                .as_deref()
                .unwrap_or(""),
        );
        live.resources.insert(
            id,
            Live {
                spec: Spec::Boundary(BoundarySpec {
                    name: names.boundary(),
                    path: policy.path.unwrap_or(path),
                    document,
                    tags,
                }),
                physical_id: Some(arn),
            },
        );
        Ok(())
    }

    async fn create(&self, cx: &Applying<'_>) -> Result<Option<String>, AwsError> {
        let mut req = cx
            .clients
            .iam
            .create_policy()
            .policy_name(&self.name)
            .path(&self.path)
            .policy_document(self.document.to_string())
            .description("Permissions boundary of the stack's roles, managed by wsctl");
        for (k, v) in &self.tags {
            req = req.tags(iam_tag(k, v));
        }
        let created = for_admin(req.send().await.ctx("CreatePolicy", &self.name))?;
        Ok(created.policy.and_then(|p| p.arn))
    }

    async fn update(
        &self,
        current: &Self,
        physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<Option<String>, AwsError> {
        let Some(arn) = physical_id else {
            return self.create(cx).await;
        };
        let iam = &cx.clients.iam;
        if current.document != self.document {
            // A full history leaves no room for the new version: the oldest one goes.
            let versions = policy_versions(iam, arn).await?.unwrap_or_default();
            if versions.len() >= POLICY_VERSIONS
                && let Some(oldest) = versions
                    .iter()
                    .filter(|v| !v.is_default_version)
                    .min_by_key(|v| v.create_date.map(|d| d.secs()))
            {
                for_admin(
                    iam.delete_policy_version()
                        .policy_arn(arn)
                        .set_version_id(oldest.version_id.clone())
                        .send()
                        .await
                        .ctx("DeletePolicyVersion", arn),
                )?;
            }
            for_admin(
                iam.create_policy_version()
                    .policy_arn(arn)
                    .policy_document(self.document.to_string())
                    .set_as_default(true)
                    .send()
                    .await
                    .ctx("CreatePolicyVersion", arn),
            )?;
        }
        if let Some(change) = TagChange::between(Some(&current.tags), &self.tags) {
            change
                .apply(
                    async |keys| {
                        iam.untag_policy()
                            .policy_arn(arn)
                            .set_tag_keys(Some(keys))
                            .send()
                            .await
                            .ctx("UntagPolicy", arn)
                            .map(drop)
                    },
                    async |tags| {
                        iam.tag_policy()
                            .policy_arn(arn)
                            .set_tags(Some(tags.iter().map(|(k, v)| iam_tag(k, v)).collect()))
                            .send()
                            .await
                            .ctx("TagPolicy", arn)
                            .map(drop)
                    },
                )
                .await?;
        }
        Ok(Some(arn.to_string()))
    }

    /// Its older versions first: IAM deletes a policy only when it has no other version.
    async fn delete(
        name: &str,
        physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<(), AwsError> {
        let Some(arn) = physical_id else {
            return Ok(());
        };
        let iam = &cx.clients.iam;
        let Some(listed) = policy_versions(iam, arn).await? else {
            return Ok(());
        };
        for version in listed {
            if !version.is_default_version {
                found(
                    iam.delete_policy_version()
                        .policy_arn(arn)
                        .set_version_id(version.version_id)
                        .send()
                        .await,
                )
                .ctx("DeletePolicyVersion", name)?;
            }
        }
        found(iam.delete_policy().policy_arn(arn).send().await).ctx("DeletePolicy", name)?;
        Ok(())
    }
}
