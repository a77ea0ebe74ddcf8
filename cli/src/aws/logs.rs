//! Each function's log group, created up front so its retention is ours and not "never expire".

use super::{AwsError, Clients, Ctx, found, tag_map};
use crate::engine::desired::Names;
use crate::engine::model::{Kind, Live, LiveState, LogGroupSpec, ResourceId, Spec, Tags};

pub async fn read(
    clients: &Clients,
    names: &Names,
    expected: &[String],
    live: &mut LiveState,
) -> Result<(), AwsError> {
    let prefix = format!("/aws/lambda/{}", names.prefix());
    let mut groups = Vec::new();
    let mut pages = clients
        .logs
        .describe_log_groups()
        .log_group_name_prefix(&prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        groups.extend(
            page.ctx("DescribeLogGroups", format!("{prefix}*"))?
                .log_groups
                .unwrap_or_default(),
        );
    }
    for group in groups {
        let Some(name) = group.log_group_name else {
            continue;
        };
        let arn = group_arn(&group.arn.unwrap_or_default());
        let tags = tag_map(
            clients
                .logs
                .list_tags_for_resource()
                .resource_arn(&arn)
                .send()
                .await
                .ctx("ListTagsForResource", &name)?
                .tags
                .unwrap_or_default(),
        );
        if !names.owns(&tags) {
            if expected.contains(&name) {
                live.foreign.push(ResourceId {
                    kind: Kind::LogGroup,
                    name,
                });
            }
            continue;
        }
        let spec = LogGroupSpec {
            name: name.clone(),
            retention_days: group.retention_in_days.map(|d| d as u32),
            tags,
        };
        live.resources.insert(
            ResourceId {
                kind: Kind::LogGroup,
                name,
            },
            Live {
                spec: Spec::LogGroup(spec),
                physical_id: Some(arn),
            },
        );
    }
    Ok(())
}

/// DescribeLogGroups gives `…:log-group:NAME:*`; the tagging calls want it without `:*`.
fn group_arn(arn: &str) -> String {
    arn.strip_suffix(":*").unwrap_or(arn).to_string()
}

pub async fn create(clients: &Clients, spec: &LogGroupSpec) -> Result<(), AwsError> {
    let created = clients
        .logs
        .create_log_group()
        .log_group_name(&spec.name)
        .set_tags(Some(spec.tags.clone().into_iter().collect()))
        .send()
        .await;
    match created {
        // Lambda creates the group itself on a first invoke: adopt it, tags included.
        Err(e) if super::is_code(&e, &["ResourceAlreadyExistsException"]) => {
            update(clients, spec, None).await
        }
        other => {
            other.ctx("CreateLogGroup", &spec.name)?;
            let tagged = LogGroupSpec {
                retention_days: None,
                ..spec.clone()
            };
            update(clients, spec, Some(&tagged)).await
        }
    }
}

pub async fn update(
    clients: &Clients,
    spec: &LogGroupSpec,
    current: Option<&LogGroupSpec>,
) -> Result<(), AwsError> {
    if current.is_none_or(|c| c.retention_days != spec.retention_days) {
        match spec.retention_days {
            Some(days) => {
                clients
                    .logs
                    .put_retention_policy()
                    .log_group_name(&spec.name)
                    .retention_in_days(days as i32)
                    .send()
                    .await
                    .ctx("PutRetentionPolicy", &spec.name)?;
            }
            None => {
                clients
                    .logs
                    .delete_retention_policy()
                    .log_group_name(&spec.name)
                    .send()
                    .await
                    .ctx("DeleteRetentionPolicy", &spec.name)?;
            }
        }
    }
    let current_tags: Tags = current.map(|c| c.tags.clone()).unwrap_or_default();
    if current.is_none() || current_tags != spec.tags {
        // Unknown current tags (None) are rewritten in full.
        let arn = arn_of(clients, &spec.name).await?;
        let stale = super::removed_keys(&current_tags, &spec.tags);
        if !stale.is_empty() {
            clients
                .logs
                .untag_resource()
                .resource_arn(&arn)
                .set_tag_keys(Some(stale))
                .send()
                .await
                .ctx("UntagResource", &spec.name)?;
        }
        {
            clients
                .logs
                .tag_resource()
                .resource_arn(&arn)
                .set_tags(Some(spec.tags.clone().into_iter().collect()))
                .send()
                .await
                .ctx("TagResource", &spec.name)?;
        }
    }
    Ok(())
}

async fn arn_of(clients: &Clients, name: &str) -> Result<String, AwsError> {
    let page = clients
        .logs
        .describe_log_groups()
        .log_group_name_prefix(name)
        .send()
        .await
        .ctx("DescribeLogGroups", name)?;
    let group = page
        .log_groups
        .unwrap_or_default()
        .into_iter()
        .find(|g| g.log_group_name.as_deref() == Some(name));
    Ok(group_arn(&group.and_then(|g| g.arn).unwrap_or_default()))
}

pub async fn delete(clients: &Clients, name: &str) -> Result<(), AwsError> {
    found(
        clients
            .logs
            .delete_log_group()
            .log_group_name(name)
            .send()
            .await,
    )
    .ctx("DeleteLogGroup", name)?;
    Ok(())
}
