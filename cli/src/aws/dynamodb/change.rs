//! Changing a table in place: point-in-time recovery, indexes one at a time, TTL and tags.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    CreateGlobalSecondaryIndexAction, DeleteGlobalSecondaryIndexAction, GlobalSecondaryIndexUpdate,
    IndexStatus, PointInTimeRecoverySpecification, TableStatus, Tag,
};

use super::*;
use crate::aws::{AwsError, CallContext, Clients, TagChange, found};

/// Turns point-in-time recovery on or off. A table made moments ago may not take it yet:
/// `ContinuousBackupsUnavailableException` ("Backups are being enabled for the table…",
/// DynamoDB API reference, UpdateContinuousBackups) passes by itself.
pub(super) async fn set_recovery(
    clients: &Clients,
    table: &str,
    enabled: bool,
) -> Result<(), AwsError> {
    let pace = crate::aws::Pace {
        first: Duration::from_secs(2),
        max: Duration::from_secs(10),
        window: Duration::from_secs(120),
    };
    crate::aws::while_refused(
        "UpdateContinuousBackups",
        table,
        pace,
        |code, _| code == "ContinuousBackupsUnavailableException",
        || {
            clients
                .dynamodb
                .update_continuous_backups()
                .table_name(table)
                .point_in_time_recovery_specification(
                    PointInTimeRecoverySpecification::builder()
                        .point_in_time_recovery_enabled(enabled)
                        .build()
                        .expect("set"),
                )
                .send()
        },
    )
    .await
    .map(drop)
}

/// Waits until the table is ACTIVE and so is every index, none of them backfilling: DynamoDB
/// takes no index change while another is under way, and a backfilling index cannot be read.
pub(super) async fn wait_settled(clients: &Clients, table: &str) -> Result<(), AwsError> {
    let started = Instant::now();
    loop {
        let d = clients
            .dynamodb
            .describe_table()
            .table_name(table)
            .send()
            .await
            .ctx("DescribeTable", table)?
            .table;
        let status = d.as_ref().and_then(|t| t.table_status.clone());
        let busy = d
            .iter()
            .flat_map(|t| t.global_secondary_indexes())
            .find(|i| i.index_status != Some(IndexStatus::Active) || i.backfilling == Some(true));
        let waiting = match (status, busy) {
            (Some(TableStatus::Active), None) => return Ok(()),
            (_, Some(index)) => format!(
                "index {} is still {}",
                index.index_name().unwrap_or_default(),
                if index.backfilling == Some(true) {
                    "backfilling"
                } else {
                    index
                        .index_status
                        .as_ref()
                        .map(|s| s.as_str())
                        .unwrap_or("changing")
                }
            ),
            (status, None) => format!(
                "the table is still {}",
                status.as_ref().map(|s| s.as_str()).unwrap_or("not ACTIVE")
            ),
        };
        if started.elapsed() > WAIT {
            return Err(AwsError::Other {
                op: "DescribeTable",
                resource: table.into(),
                detail: format!(
                    "{waiting} after {} s (DynamoDB builds an index from every item of the table); re-run deploy to continue",
                    WAIT.as_secs()
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until a table being deleted is gone. False when the table is there and not being
/// deleted (its name is taken for good).
pub(super) async fn wait_gone(clients: &Clients, table: &str) -> Result<bool, AwsError> {
    let started = Instant::now();
    loop {
        let d = found(
            clients
                .dynamodb
                .describe_table()
                .table_name(table)
                .send()
                .await,
        )
        .ctx("DescribeTable", table)?;
        let Some(status) = d.map(|d| d.table.and_then(|t| t.table_status)) else {
            return Ok(true);
        };
        if status != Some(TableStatus::Deleting) {
            return Ok(false);
        }
        if started.elapsed() > WAIT {
            return Err(AwsError::Other {
                op: "CreateTable",
                resource: table.into(),
                detail: format!(
                    "the table of this name is still being deleted after {} s; re-run deploy to continue",
                    WAIT.as_secs()
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Indexes to remove (gone from the config, or whose keys change) and to add, in that order:
/// a changed index is removed before it is added again under its name.
pub(super) fn index_steps<'a>(
    want: &'a TableSpec,
    have: &'a TableSpec,
) -> (Vec<&'a str>, Vec<(&'a str, &'a IndexSpec)>) {
    let remove = have
        .indexes
        .iter()
        .filter(|(name, index)| want.indexes.get(*name) != Some(index))
        .map(|(name, _)| name.as_str())
        .collect();
    let add = want
        .indexes
        .iter()
        .filter(|(name, index)| have.indexes.get(*name) != Some(index))
        .map(|(name, index)| (name.as_str(), index))
        .collect();
    (remove, add)
}

/// Indexes, TTL and tags change in place; key changes are planned as replacements.
pub(super) async fn update(
    clients: &Clients,
    spec: &TableSpec,
    current: &TableSpec,
    arn: &str,
) -> Result<(), AwsError> {
    let (remove, add) = index_steps(spec, current);
    let mut indexes = current.indexes.clone();
    for name in remove {
        wait_settled(clients, &spec.name).await?;
        clients
            .dynamodb
            .update_table()
            .table_name(&spec.name)
            .global_secondary_index_updates(
                GlobalSecondaryIndexUpdate::builder()
                    .delete(
                        DeleteGlobalSecondaryIndexAction::builder()
                            .index_name(name)
                            .build()
                            .expect("name set"),
                    )
                    .build(),
            )
            .send()
            .await
            .ctx(
                "UpdateTable",
                format!("{} (removing index {name})", spec.name),
            )?;
        indexes.remove(name);
    }
    for (name, index) in add {
        wait_settled(clients, &spec.name).await?;
        indexes.insert(name.to_string(), index.clone());
        clients
            .dynamodb
            .update_table()
            .table_name(&spec.name)
            .set_attribute_definitions(Some(attributes(spec, &indexes)))
            .global_secondary_index_updates(
                GlobalSecondaryIndexUpdate::builder()
                    .create(
                        CreateGlobalSecondaryIndexAction::builder()
                            .index_name(name)
                            .set_key_schema(Some(schema(
                                &index.partition_key,
                                index.sort_key.as_ref(),
                            )))
                            .projection(projection())
                            .build()
                            .expect("name and schema set"),
                    )
                    .build(),
            )
            .send()
            .await
            .ctx(
                "UpdateTable",
                format!("{} (adding index {name})", spec.name),
            )?;
    }
    if indexes != current.indexes || !current.building.is_empty() {
        // Functions query the indexes as soon as the deploy is over; an index an earlier run
        // left building is waited for as a new one is.
        wait_settled(clients, &spec.name).await?;
    }
    if spec.deletion_protection != current.deletion_protection {
        clients
            .dynamodb
            .update_table()
            .table_name(&spec.name)
            .deletion_protection_enabled(spec.deletion_protection)
            .send()
            .await
            .ctx(
                "UpdateTable",
                format!("{} (deletion protection)", spec.name),
            )?;
        wait_settled(clients, &spec.name).await?;
    }
    if spec.point_in_time_recovery != current.point_in_time_recovery {
        set_recovery(clients, &spec.name, spec.point_in_time_recovery).await?;
    }
    let ttl = ttl_plan(spec, current, now());
    match ttl.now {
        Some(TtlStep::Off(old)) => {
            let next = spec.ttl_attribute.as_deref();
            set_ttl(clients, &spec.name, arn, old, false, next).await?
        }
        Some(TtlStep::On(new)) => set_ttl(clients, &spec.name, arn, new, true, None).await?,
        None => {}
    }
    let Some(change) = TagChange::between(Some(&current.tags), &spec.tags) else {
        return Ok(());
    };
    change
        .apply(
            async |keys| {
                clients
                    .dynamodb
                    .untag_resource()
                    .resource_arn(arn)
                    .set_tag_keys(Some(keys))
                    .send()
                    .await
                    .ctx("UntagResource", &spec.name)
                    .map(drop)
            },
            async |tags| {
                let tags = tags
                    .iter()
                    .map(|(k, v)| Tag::builder().key(k).value(v).build().expect("set"))
                    .collect();
                clients
                    .dynamodb
                    .tag_resource()
                    .resource_arn(arn)
                    .set_tags(Some(tags))
                    .send()
                    .await
                    .ctx("TagResource", &spec.name)
                    .map(drop)
            },
        )
        .await
}
