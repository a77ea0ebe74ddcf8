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
use std::time::Duration;

use aws_sdk_dynamodb::primitives::{DateTime, DateTimeFormat};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, IndexStatus, KeySchemaElement, KeyType,
    PointInTimeRecoveryStatus, Projection, ProjectionType, ScalarAttributeType, TableStatus, Tag,
    TimeToLiveStatus,
};
use serde::Serialize;

mod change;
mod ttl;

use change::{set_recovery, update, wait_gone, wait_settled};
use ttl::{TtlStep, now, set_ttl, ttl_plan};

use super::{AwsError, CallContext, Clients, all_pages, found, is_code, tag_map};
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
