//! DynamoDB tables: on-demand, with TTL on.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TableStatus, Tag, TimeToLiveSpecification,
    TimeToLiveStatus,
};

use super::{AwsError, Clients, Ctx, found, tag_map};
use crate::config::KeyAttr;
use crate::engine::desired::Names;
use crate::engine::model::{IndexSpec, Kind, Live, LiveState, ResourceId, Spec, TableSpec};

pub async fn read(
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

pub async fn create(clients: &Clients, spec: &TableSpec) -> Result<String, AwsError> {
    let mut keys: Vec<&KeyAttr> = vec![&spec.partition_key];
    keys.extend(spec.sort_key.iter());
    for index in spec.indexes.values() {
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
        .table_name(&spec.name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(schema(&spec.partition_key, spec.sort_key.as_ref())));
    for (name, kind) in attributes {
        req = req.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::from(kind))
                .build()
                .expect("set"),
        );
    }
    for (name, index) in &spec.indexes {
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
    for (k, v) in &spec.tags {
        req = req.tags(Tag::builder().key(k).value(v).build().expect("set"));
    }
    let created = req.send().await.ctx("CreateTable", &spec.name)?;
    wait_active(clients, &spec.name).await?;
    if let Some(attribute) = &spec.ttl_attribute {
        set_ttl(clients, &spec.name, attribute, true).await?;
    }
    Ok(created
        .table_description
        .and_then(|t| t.table_arn)
        .unwrap_or_default())
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
pub async fn update(
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
    if current.tags != spec.tags {
        let stale = super::removed_keys(&current.tags, &spec.tags);
        if !stale.is_empty() {
            clients
                .dynamodb
                .untag_resource()
                .resource_arn(arn)
                .set_tag_keys(Some(stale))
                .send()
                .await
                .ctx("UntagResource", &spec.name)?;
        }
        let tags = spec
            .tags
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
            .ctx("TagResource", &spec.name)?;
    }
    Ok(())
}

pub async fn delete(clients: &Clients, name: &str) -> Result<(), AwsError> {
    found(
        clients
            .dynamodb
            .delete_table()
            .table_name(name)
            .send()
            .await,
    )
    .ctx("DeleteTable", name)?;
    Ok(())
}
