//! DynamoDB tables: on-demand, with TTL on.
//!
//! DynamoDB changes a table slowly and one thing at a time, and the code here follows its
//! rules rather than hoping for the best:
//! - a deleted table's name stays DELETING for a while: a read ignores such a table, and a
//!   create waits for the name to be free (DeleteTable, CreateTable API reference);
//! - TTL changes once an hour per table ("Any additional UpdateTimeToLive calls for the same
//!   table during this one hour duration result in a ValidationException", UpdateTimeToLive
//!   API reference): wsctl records when it last changed it in a tag and makes a switch of
//!   attribute in two steps an hour apart, saying when;
//! - global secondary indexes are added and removed in place, one per UpdateTable, the next
//!   once the previous is ACTIVE or gone (UpdateTable API reference; Developer Guide,
//!   "Managing Global Secondary Indexes").

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::primitives::{DateTime, DateTimeFormat};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, CreateGlobalSecondaryIndexAction,
    DeleteGlobalSecondaryIndexAction, GlobalSecondaryIndex, GlobalSecondaryIndexUpdate,
    IndexStatus, KeySchemaElement, KeyType, PointInTimeRecoverySpecification,
    PointInTimeRecoveryStatus, Projection, ProjectionType, ScalarAttributeType, TableStatus, Tag,
    TimeToLiveSpecification, TimeToLiveStatus,
};
use serde::Serialize;

use super::{AwsError, CallContext, Clients, TagChange, all_pages, found, is_code, tag_map};
use crate::config::KeyAttr;
use crate::engine::model::{Applying, Kind, Live, LiveState, Resource, ResourceId, Spec, Tags};
use crate::names::Names;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IndexSpec {
    pub partition_key: KeyAttr,
    pub sort_key: Option<KeyAttr>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableSpec {
    pub name: String,
    pub partition_key: KeyAttr,
    pub sort_key: Option<KeyAttr>,
    pub indexes: BTreeMap<String, IndexSpec>,
    /// The attribute TTL is on (or being turned on) for; a TTL being turned off is none.
    pub ttl_attribute: Option<String>,
    /// When wsctl last changed the TTL (seconds since the epoch), from the table's
    /// [`TTL_CHANGED_TAG`]: not a setting, so never compared.
    #[serde(skip)]
    pub ttl_changed: Option<i64>,
    /// Continuous backups for point-in-time recovery (UpdateContinuousBackups).
    pub point_in_time_recovery: bool,
    /// DynamoDB refuses DeleteTable while this is on.
    pub deletion_protection: bool,
    /// Indexes that exist but cannot be read yet: being created, or backfilled from the
    /// table's items ("Cannot read from backfilling global secondary index"). Always empty in
    /// the config, so a deploy waits for them before it ships code that queries them.
    pub building: Vec<String>,
    /// The stack's tags, without [`TTL_CHANGED_TAG`].
    pub tags: Tags,
}

/// The tag in which wsctl records when it last changed a table's TTL (RFC 3339, UTC), because
/// DynamoDB refuses a second change within the hour and does not say when the last one was.
pub const TTL_CHANGED_TAG: &str = "wsctl:ttl-changed";
/// DynamoDB allows one TTL change per table in this many seconds.
const TTL_INTERVAL: i64 = 3600;
/// How long a table may take to become ACTIVE, to free its name, or to build an index, before
/// wsctl stops waiting and says to re-run.
const WAIT: Duration = Duration::from_secs(600);

impl Resource for TableSpec {
    const LABEL: &'static str = "table";
    const WAVE: u8 = 0;
    /// Indexes are added and removed in place; only the table's own key cannot change.
    const IMMUTABLE_FIELDS: &'static [&'static str] = &["partition_key", "sort_key"];

    fn name(&self) -> &str {
        &self.name
    }

    /// Deleting a table deletes its items; an index whose keys change is deleted and built
    /// again, and cannot be read meanwhile.
    fn drops(_name: &str, action: &crate::engine::plan::Action) -> Option<&'static str> {
        match action {
            crate::engine::plan::Action::Delete | crate::engine::plan::Action::Replace(_) => {
                Some("deletes the table's items")
            }
            crate::engine::plan::Action::Update(fields)
                if fields
                    .iter()
                    .any(|f| f.field == "indexes" && rebuilds_an_index(&f.before, &f.after)) =>
            {
                Some(
                    "rebuilds an index: DynamoDB deletes it, then builds it again from every item (minutes to hours); queries on it fail meanwhile ($disconnect, gc)",
                )
            }
            _ => None,
        }
    }

    async fn read(
        clients: &Clients,
        names: &Names,
        expected: &[String],
        live: &mut LiveState,
    ) -> Result<(), AwsError> {
        let prefix = names.prefix();
        let mut tables = Vec::new();
        let mut pages = clients.dynamodb.list_tables().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.ctx("ListTables", format!("{prefix}*"))?;
            tables.extend(
                page.table_names
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|n| n.starts_with(&prefix)),
            );
        }
        for name in tables {
            let Some(described) = found(
                clients
                    .dynamodb
                    .describe_table()
                    .table_name(&name)
                    .send()
                    .await,
            )
            .ctx("DescribeTable", &name)?
            else {
                continue;
            };
            let Some(table) = described.table else {
                continue;
            };
            // A table being deleted is as good as gone: its name is free again soon, and a
            // create waits for that.
            if table.table_status == Some(TableStatus::Deleting) {
                continue;
            }
            let arn = table.table_arn.clone().unwrap_or_default();
            let mut tags = tag_map(
                all_pages(async |token| {
                    let page = clients
                        .dynamodb
                        .list_tags_of_resource()
                        .resource_arn(&arn)
                        .set_next_token(token)
                        .send()
                        .await
                        .ctx("ListTagsOfResource", &name)?;
                    Ok((page.tags.unwrap_or_default(), page.next_token))
                })
                .await?
                .into_iter()
                .map(|t| (t.key, t.value)),
            );
            if !names.owns(&tags) {
                if expected.contains(&name) {
                    live.foreign.push(ResourceId {
                        kind: Kind::Table,
                        name,
                    });
                }
                continue;
            }
            let ttl_changed = tags
                .remove(TTL_CHANGED_TAG)
                .and_then(|t| DateTime::from_str(&t, DateTimeFormat::DateTime).ok())
                .map(|t| t.secs());
            let ttl = clients
                .dynamodb
                .describe_time_to_live()
                .table_name(&name)
                .send()
                .await
                .ctx("DescribeTimeToLive", &name)?;
            // ENABLING counts as on and DISABLING as off: the change was made, DynamoDB is
            // carrying it out, and another would be refused within the hour anyway.
            let ttl_attribute = ttl.time_to_live_description.and_then(|d| {
                matches!(
                    d.time_to_live_status,
                    Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
                )
                .then_some(d.attribute_name)
                .flatten()
            });
            let types: BTreeMap<String, String> = table
                .attribute_definitions
                .unwrap_or_default()
                .into_iter()
                .map(|a| (a.attribute_name, a.attribute_type.as_str().to_string()))
                .collect();
            let (partition_key, sort_key) = keys(&table.key_schema.unwrap_or_default(), &types);
            let described = table.global_secondary_indexes.unwrap_or_default();
            let building = described
                .iter()
                .filter_map(|i| {
                    let state = match (&i.index_status, i.backfilling) {
                        (Some(IndexStatus::Deleting), _) => return None,
                        (_, Some(true)) => "backfilling",
                        (Some(IndexStatus::Active), _) => return None,
                        (status, _) => status.as_ref().map_or("not ACTIVE", |s| s.as_str()),
                    };
                    Some(format!("{} ({state})", i.index_name.as_deref()?))
                })
                .collect();
            let continuous = clients
                .dynamodb
                .describe_continuous_backups()
                .table_name(&name)
                .send()
                .await
                .ctx("DescribeContinuousBackups", &name)?;
            let point_in_time_recovery = continuous
                .continuous_backups_description
                .and_then(|d| d.point_in_time_recovery_description)
                .and_then(|p| p.point_in_time_recovery_status)
                == Some(PointInTimeRecoveryStatus::Enabled);
            let indexes = described
                .into_iter()
                // An index being deleted is gone for the plan; one being built is there, and
                // named in `building` until it can be read.
                .filter(|i| i.index_status != Some(IndexStatus::Deleting))
                .filter_map(|i| {
                    let (pk, sk) = keys(&i.key_schema.unwrap_or_default(), &types);
                    Some((
                        i.index_name?,
                        IndexSpec {
                            partition_key: pk,
                            sort_key: sk,
                        },
                    ))
                })
                .collect();
            let spec = TableSpec {
                name: name.clone(),
                partition_key,
                sort_key,
                indexes,
                ttl_attribute,
                ttl_changed,
                point_in_time_recovery,
                deletion_protection: table.deletion_protection_enabled.unwrap_or(false),
                building,
                tags,
            };
            live.resources.insert(
                ResourceId {
                    kind: Kind::Table,
                    name,
                },
                Live {
                    spec: Spec::Table(spec),
                    physical_id: Some(arn),
                },
            );
        }
        Ok(())
    }

    async fn create(&self, cx: &Applying<'_>) -> Result<Option<String>, AwsError> {
        let clients = cx.clients;
        let mut req = clients
            .dynamodb
            .create_table()
            .table_name(&self.name)
            .billing_mode(BillingMode::PayPerRequest)
            .deletion_protection_enabled(self.deletion_protection)
            .set_key_schema(Some(schema(&self.partition_key, self.sort_key.as_ref())));
        req = req.set_attribute_definitions(Some(attributes(self, &self.indexes)));
        for (name, index) in &self.indexes {
            req = req.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(name)
                    .set_key_schema(Some(schema(&index.partition_key, index.sort_key.as_ref())))
                    .projection(projection())
                    .build()
                    .expect("name and schema set"),
            );
        }
        for (k, v) in &self.tags {
            req = req.tags(Tag::builder().key(k).value(v).build().expect("set"));
        }
        let created = match req.clone().send().await {
            // The name is still held by a table being deleted (a replacement, or a deploy
            // right after `destroy`): wait until it is free, then create.
            Err(e) if is_code(&e, &["ResourceInUseException"]) => {
                if !wait_gone(clients, &self.name).await? {
                    return Err(e).ctx("CreateTable", &self.name);
                }
                req.send().await.ctx("CreateTable", &self.name)?
            }
            other => other.ctx("CreateTable", &self.name)?,
        };
        let arn = created
            .table_description
            .and_then(|t| t.table_arn)
            .unwrap_or_default();
        wait_settled(clients, &self.name).await?;
        if let Some(attribute) = &self.ttl_attribute {
            set_ttl(clients, &self.name, &arn, attribute, true, None).await?;
        }
        if self.point_in_time_recovery {
            set_recovery(clients, &self.name, true).await?;
        }
        Ok(Some(arn))
    }

    fn note(&self, current: Option<&Self>) -> Option<String> {
        ttl_plan(self, current?, now()).note
    }

    async fn update(
        &self,
        current: &Self,
        physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<Option<String>, AwsError> {
        update(cx.clients, self, current, physical_id.unwrap_or_default()).await?;
        Ok(physical_id.map(str::to_string))
    }

    async fn delete(
        name: &str,
        _physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<(), AwsError> {
        found(
            cx.clients
                .dynamodb
                .delete_table()
                .table_name(name)
                .send()
                .await,
        )
        .ctx("DeleteTable", name)?;
        Ok(())
    }
}

/// An index whose keys change is deleted and created again under its name: DynamoDB cannot
/// change an index's keys in place (UpdateTable takes Create and Delete, and Update only for
/// throughput).
fn rebuilds_an_index(before: &serde_json::Value, after: &serde_json::Value) -> bool {
    let (Some(before), Some(after)) = (before.as_object(), after.as_object()) else {
        return false;
    };
    before
        .iter()
        .any(|(name, keys)| after.get(name).is_some_and(|k| k != keys))
}

fn keys(
    schema: &[KeySchemaElement],
    types: &BTreeMap<String, String>,
) -> (KeyAttr, Option<KeyAttr>) {
    let attr = |k: &KeySchemaElement| KeyAttr {
        name: k.attribute_name.clone(),
        kind: types
            .get(&k.attribute_name)
            .cloned()
            .unwrap_or_else(|| "S".into()),
    };
    let pk = schema
        .iter()
        .find(|k| k.key_type == KeyType::Hash)
        .map(attr)
        .unwrap_or(KeyAttr {
            name: String::new(),
            kind: "S".into(),
        });
    let sk = schema
        .iter()
        .find(|k| k.key_type == KeyType::Range)
        .map(attr);
    (pk, sk)
}

fn schema(pk: &KeyAttr, sk: Option<&KeyAttr>) -> Vec<KeySchemaElement> {
    let element = |k: &KeyAttr, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(&k.name)
            .key_type(t)
            .build()
            .expect("name and type set")
    };
    let mut out = vec![element(pk, KeyType::Hash)];
    if let Some(sk) = sk {
        out.push(element(sk, KeyType::Range));
    }
    out
}

fn projection() -> Projection {
    Projection::builder()
        .projection_type(ProjectionType::All)
        .build()
}

/// Definitions of every key attribute of the table and of `indexes`: DynamoDB wants exactly
/// the attributes some key uses.
fn attributes(
    table: &TableSpec,
    indexes: &BTreeMap<String, IndexSpec>,
) -> Vec<AttributeDefinition> {
    let mut keys: Vec<&KeyAttr> = vec![&table.partition_key];
    keys.extend(table.sort_key.iter());
    for index in indexes.values() {
        keys.push(&index.partition_key);
        keys.extend(index.sort_key.iter());
    }
    let mut kinds: BTreeMap<&str, &str> = BTreeMap::new();
    for k in keys {
        kinds.entry(k.name.as_str()).or_insert(k.kind.as_str());
    }
    kinds
        .into_iter()
        .map(|(name, kind)| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::from(kind))
                .build()
                .expect("set")
        })
        .collect()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// `HH:MM` of the first whole minute at or after `secs`, so that "after HH:MM UTC" holds.
fn clock(secs: i64) -> String {
    let minute = (secs + 59).div_euclid(60) * 60;
    let day = minute.rem_euclid(86_400);
    format!("{:02}:{:02}", day / 3600, day % 3600 / 60)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum TtlStep<'a> {
    Off(&'a str),
    On(&'a str),
}

/// What a deploy does about a table's TTL now, and what it must leave for later.
#[derive(Debug, PartialEq)]
struct TtlPlan<'a> {
    now: Option<TtlStep<'a>>,
    /// Said by the plan and the deploy when a step has to wait for DynamoDB's hour.
    note: Option<String>,
}

const ONE_AN_HOUR: &str = "(DynamoDB allows one TTL change per table per hour)";

/// DynamoDB holds TTL on one attribute and takes one change an hour: a switch of attribute is
/// turning the old one off, then, an hour later, the new one on. A step runs when the last
/// recorded change is an hour old (or none is recorded).
fn ttl_plan<'a>(want: &'a TableSpec, have: &'a TableSpec, now: i64) -> TtlPlan<'a> {
    let (want_on, have_on) = (want.ttl_attribute.as_deref(), have.ttl_attribute.as_deref());
    if want_on == have_on {
        return TtlPlan {
            now: None,
            note: None,
        };
    }
    let mut steps = Vec::new();
    if let Some(old) = have_on {
        steps.push(TtlStep::Off(old));
    }
    if let Some(new) = want_on {
        steps.push(TtlStep::On(new));
    }
    let allowed = have.ttl_changed.map_or(now, |t| t + TTL_INTERVAL);
    if allowed <= now {
        let note = match (steps[0], steps.get(1)) {
            (TtlStep::Off(old), Some(TtlStep::On(new))) => Some(format!(
                "TTL on `{old}` is turned off now; TTL on `{new}` can be enabled after {} UTC {ONE_AN_HOUR}; items do not expire until then; re-run deploy then",
                clock(now + TTL_INTERVAL)
            )),
            _ => None,
        };
        return TtlPlan {
            now: Some(steps[0]),
            note,
        };
    }
    let at = clock(allowed);
    let note = match (steps[0], steps.get(1)) {
        (TtlStep::On(new), _) => format!(
            "TTL on `{new}` can be enabled after {at} UTC {ONE_AN_HOUR}; items do not expire until then; re-run deploy then"
        ),
        (TtlStep::Off(old), Some(TtlStep::On(new))) => format!(
            "TTL on `{old}` can be turned off after {at} UTC {ONE_AN_HOUR}, and TTL on `{new}` enabled an hour after that; items expire by `{old}` until then; re-run deploy then"
        ),
        (TtlStep::Off(old), _) => format!(
            "TTL on `{old}` can be turned off after {at} UTC {ONE_AN_HOUR}; re-run deploy then"
        ),
    };
    TtlPlan {
        now: None,
        note: Some(note),
    }
}

/// Turns TTL on or off and records when on the table. A refusal for a change within the hour
/// (one wsctl has no record of) becomes the same advice the plan gives.
async fn set_ttl(
    clients: &Clients,
    table: &str,
    arn: &str,
    attribute: &str,
    enabled: bool,
    next: Option<&str>,
) -> Result<(), AwsError> {
    let sent = clients
        .dynamodb
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name(attribute)
                .enabled(enabled)
                .build()
                .expect("set"),
        )
        .send()
        .await;
    match sent {
        Err(e)
            if is_code(&e, &["ValidationException"])
                && e.as_service_error()
                    .and_then(|e| aws_sdk_dynamodb::error::ProvideErrorMetadata::message(e))
                    .is_some_and(|m| m.contains("multiple times")) =>
        {
            let change = if enabled {
                format!("TTL on `{attribute}` can be enabled")
            } else {
                format!("TTL on `{attribute}` can be turned off")
            };
            let then = next
                .map(|n| format!(", and TTL on `{n}` enabled an hour after that"))
                .unwrap_or_default();
            return Err(AwsError::Other {
                op: "UpdateTimeToLive",
                resource: table.into(),
                detail: format!(
                    "its TTL was changed less than an hour ago (not by this wsctl, which keeps no record of it) {ONE_AN_HOUR}. {change} within the hour{then}; re-run deploy then"
                ),
            });
        }
        other => {
            other.ctx("UpdateTimeToLive", table)?;
        }
    }
    let at = DateTime::from_secs(now())
        .fmt(DateTimeFormat::DateTime)
        .expect("a time after 1970");
    clients
        .dynamodb
        .tag_resource()
        .resource_arn(arn)
        .tags(
            Tag::builder()
                .key(TTL_CHANGED_TAG)
                .value(at)
                .build()
                .expect("set"),
        )
        .send()
        .await
        .ctx("TagResource", table)?;
    Ok(())
}

/// Turns point-in-time recovery on or off. A table made moments ago may not take it yet:
/// `ContinuousBackupsUnavailableException` ("Backups are being enabled for the table…",
/// DynamoDB API reference, UpdateContinuousBackups) passes by itself.
async fn set_recovery(clients: &Clients, table: &str, enabled: bool) -> Result<(), AwsError> {
    let pace = super::Pace {
        first: Duration::from_secs(2),
        max: Duration::from_secs(10),
        window: Duration::from_secs(120),
    };
    super::while_refused(
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
async fn wait_settled(clients: &Clients, table: &str) -> Result<(), AwsError> {
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
async fn wait_gone(clients: &Clients, table: &str) -> Result<bool, AwsError> {
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
fn index_steps<'a>(
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
async fn update(
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
