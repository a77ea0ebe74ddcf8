//! DynamoDB tables: on-demand, with TTL on.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TableStatus, Tag, TimeToLiveSpecification,
    TimeToLiveStatus,
};
use serde::Serialize;

use super::{AwsError, Clients, Ctx, TagChange, found, tag_map};
use crate::config::KeyAttr;
use crate::engine::desired::Names;
use crate::engine::model::{Cx, Kind, Live, LiveState, Resource, ResourceId, Spec, Tags};

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
    pub ttl_attribute: Option<String>,
    pub tags: Tags,
}

impl Resource for TableSpec {
    const LABEL: &'static str = "table";
    const WAVE: u8 = 0;
    const IMMUTABLE_FIELDS: &'static [&'static str] = &["partition_key", "sort_key", "indexes"];

    fn name(&self) -> &str {
        &self.name
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
            let arn = table.table_arn.clone().unwrap_or_default();
            let tags = tag_map(
                clients
                    .dynamodb
                    .list_tags_of_resource()
                    .resource_arn(&arn)
                    .send()
                    .await
                    .ctx("ListTagsOfResource", &name)?
                    .tags
                    .unwrap_or_default()
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
            let ttl = clients
                .dynamodb
                .describe_time_to_live()
                .table_name(&name)
                .send()
                .await
                .ctx("DescribeTimeToLive", &name)?;
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
            let indexes = table
                .global_secondary_indexes
                .unwrap_or_default()
                .into_iter()
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

    async fn create(&self, cx: &Cx<'_>) -> Result<Option<String>, AwsError> {
        let clients = cx.clients;
        let mut keys: Vec<&KeyAttr> = vec![&self.partition_key];
        keys.extend(self.sort_key.iter());
        for index in self.indexes.values() {
            keys.push(&index.partition_key);
            keys.extend(index.sort_key.iter());
        }
        let attributes: BTreeMap<&str, &str> = keys
            .into_iter()
            .map(|k| (k.name.as_str(), k.kind.as_str()))
            .collect();
        let mut req = clients
            .dynamodb
            .create_table()
            .table_name(&self.name)
            .billing_mode(BillingMode::PayPerRequest)
            .set_key_schema(Some(schema(&self.partition_key, self.sort_key.as_ref())));
        for (name, kind) in attributes {
            req = req.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(ScalarAttributeType::from(kind))
                    .build()
                    .expect("set"),
            );
        }
        for (name, index) in &self.indexes {
            req = req.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(name)
                    .set_key_schema(Some(schema(&index.partition_key, index.sort_key.as_ref())))
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build()
                    .expect("name and schema set"),
            );
        }
        for (k, v) in &self.tags {
            req = req.tags(Tag::builder().key(k).value(v).build().expect("set"));
        }
        let created = req.send().await.ctx("CreateTable", &self.name)?;
        wait_active(clients, &self.name).await?;
        if let Some(attribute) = &self.ttl_attribute {
            set_ttl(clients, &self.name, attribute, true).await?;
        }
        Ok(Some(
            created
                .table_description
                .and_then(|t| t.table_arn)
                .unwrap_or_default(),
        ))
    }

    async fn update(
        &self,
        current: &Self,
        physical_id: Option<&str>,
        cx: &Cx<'_>,
    ) -> Result<Option<String>, AwsError> {
        update(cx.clients, self, current, physical_id.unwrap_or_default()).await?;
        Ok(physical_id.map(str::to_string))
    }

    async fn delete(name: &str, _physical_id: Option<&str>, cx: &Cx<'_>) -> Result<(), AwsError> {
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

async fn set_ttl(
    clients: &Clients,
    table: &str,
    attribute: &str,
    enabled: bool,
) -> Result<(), AwsError> {
    clients
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
        .await
        .ctx("UpdateTimeToLive", table)?;
    Ok(())
}

async fn wait_active(clients: &Clients, table: &str) -> Result<(), AwsError> {
    let started = Instant::now();
    loop {
        let d = clients
            .dynamodb
            .describe_table()
            .table_name(table)
            .send()
            .await
            .ctx("DescribeTable", table)?;
        if d.table.and_then(|t| t.table_status) == Some(TableStatus::Active) {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(300) {
            return Err(AwsError::Other {
                op: "DescribeTable",
                resource: table.into(),
                detail: "not ACTIVE after 300 s; re-run to continue".into(),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// TTL and tags change in place; key or index changes are planned as replacements.
async fn update(
    clients: &Clients,
    spec: &TableSpec,
    current: &TableSpec,
    arn: &str,
) -> Result<(), AwsError> {
    if current.ttl_attribute != spec.ttl_attribute {
        // DynamoDB allows one TTL attribute: switching means disabling the old one first.
        if let Some(old) = &current.ttl_attribute {
            set_ttl(clients, &spec.name, old, false).await?;
        }
        if let Some(new) = &spec.ttl_attribute {
            set_ttl(clients, &spec.name, new, true).await?;
        }
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
