//! Each function's log group, created up front so its retention is ours and not "never expire",
//! and the stage's access log.

use serde::Serialize;

use super::{AwsError, CallContext, Clients, TagChange, found, tag_map};
use crate::engine::model::{Applying, Kind, Live, LiveState, Resource, ResourceId, Spec, Tags};
use crate::names::Names;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogGroupSpec {
    pub name: String,
    pub retention_days: Option<u32>,
    pub tags: Tags,
}

impl Resource for LogGroupSpec {
    const LABEL: &'static str = "log group";
    const WAVE: u8 = 0;

    fn name(&self) -> &str {
        &self.name
    }

    async fn read(
        clients: &Clients,
        names: &Names,
        expected: &[String],
        live: &mut LiveState,
    ) -> Result<(), AwsError> {
        let mut groups = Vec::new();
        for prefix in [names.log_group(""), names.access_log_group()] {
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

    async fn create(&self, cx: &Applying<'_>) -> Result<Option<String>, AwsError> {
        let clients = cx.clients;
        let created = clients
            .logs
            .create_log_group()
            .log_group_name(&self.name)
            .set_tags(Some(self.tags.clone().into_iter().collect()))
            .send()
            .await;
        match created {
            // Lambda creates the group itself on a first invoke: adopt it, tags included.
            Err(e) if super::is_code(&e, &["ResourceAlreadyExistsException"]) => {
                update(clients, self, None).await?
            }
            other => {
                other.ctx("CreateLogGroup", &self.name)?;
                let tagged = LogGroupSpec {
                    retention_days: None,
                    ..self.clone()
                };
                update(clients, self, Some(&tagged)).await?
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
        update(cx.clients, self, Some(current)).await?;
        Ok(None)
    }

    async fn delete(
        name: &str,
        _physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<(), AwsError> {
        found(
            cx.clients
                .logs
                .delete_log_group()
                .log_group_name(name)
                .send()
                .await,
        )
        .ctx("DeleteLogGroup", name)?;
        Ok(())
    }
}

/// DescribeLogGroups gives `…:log-group:NAME:*`; the tagging calls want it without `:*`.
fn group_arn(arn: &str) -> String {
    arn.strip_suffix(":*").unwrap_or(arn).to_string()
}

/// `current` is `None` for a group of unknown state (one Lambda made): all is set again.
async fn update(
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
    let Some(change) = TagChange::between(current.map(|c| &c.tags), &spec.tags) else {
        return Ok(());
    };
    let arn = arn_of(clients, &spec.name).await?;
    change
        .apply(
            async |keys| {
                clients
                    .logs
                    .untag_resource()
                    .resource_arn(&arn)
                    .set_tag_keys(Some(keys))
                    .send()
                    .await
                    .ctx("UntagResource", &spec.name)
                    .map(drop)
            },
            async |tags| {
                clients
                    .logs
                    .tag_resource()
                    .resource_arn(&arn)
                    .set_tags(Some(tags.clone().into_iter().collect()))
                    .send()
                    .await
                    .ctx("TagResource", &spec.name)
                    .map(drop)
            },
        )
        .await
}

async fn arn_of(clients: &Clients, name: &str) -> Result<String, AwsError> {
    // The prefix matches every group whose name starts with this one's: read them all.
    let mut pages = clients
        .logs
        .describe_log_groups()
        .log_group_name_prefix(name)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let group = page
            .ctx("DescribeLogGroups", name)?
            .log_groups
            .unwrap_or_default()
            .into_iter()
            .find(|g| g.log_group_name.as_deref() == Some(name));
        if let Some(group) = group {
            return Ok(group_arn(&group.arn.unwrap_or_default()));
        }
    }
    Ok(group_arn(""))
}
