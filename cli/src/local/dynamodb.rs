//! The data plane of `wsctl dev`: DynamoDB Local, Amazon's own DynamoDB engine (the service's
//! validation and semantics: transactions, indexes, conditions), where moto answers an index
//! query by reading the whole table. moto stays the control plane: the deploy creates and tags
//! the tables there, and each is mirrored here (keys, indexes) with its data-plane calls sent
//! here. DynamoDB Local never expires items, so [`sweep`] deletes expired ones as the service's
//! TTL does.
//!
//! The engine comes from the npm package `amplify-dynamodb-simulator` (its `emulator/` folder:
//! DynamoDBLocal.jar and its libraries), unpacked once into the user's cache; it needs Java 17+.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ScalarAttributeType,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::LocalError;
use crate::aws::dynamodb::{IndexSpec, TableSpec};
use crate::config::KeyAttr;

/// The package and version the engine is taken from.
pub const PACKAGE: &str = "amplify-dynamodb-simulator@2.9.30";
const LAUNCHER: &str = include_str!("DynamoDbLoopback.java");
const START_LIMIT: Duration = Duration::from_secs(60);

/// Calls DynamoDB Local answers; every other DynamoDB call (tables, TTL settings, tags) is the
/// control plane's.
pub const DATA_PLANE: &[&str] = &[
    "BatchGetItem",
    "BatchWriteItem",
    "DeleteItem",
    "ExecuteStatement",
    "ExecuteTransaction",
    "BatchExecuteStatement",
    "GetItem",
    "PutItem",
    "Query",
    "Scan",
    "TransactGetItems",
    "TransactWriteItems",
    "UpdateItem",
];

pub struct DynamoDbLocal {
    pub url: String,
    child: Child,
}

/// Where the engine is: `WSCTL_DYNAMODB_LOCAL` (a folder with DynamoDBLocal.jar), else the
/// user's cache.
fn engine_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WSCTL_DYNAMODB_LOCAL") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    let version = PACKAGE.rsplit('@').next().unwrap_or("current");
    cache
        .join("wsctl")
        .join(format!("dynamodb-local-{version}"))
}

/// Fetches the package with npm and keeps its `emulator/` folder. Unpacked beside the target
/// and renamed into place, so two `wsctl dev` starting at once never see half a folder.
async fn install(dir: &Path) -> Result<(), LocalError> {
    let missing = |detail: String| LocalError::DynamoDbMissing {
        dir: dir.to_path_buf(),
        detail,
    };
    let parent = dir.parent().unwrap_or(dir);
    std::fs::create_dir_all(parent).map_err(|e| missing(e.to_string()))?;
    let work = tempfile::tempdir_in(parent).map_err(|e| missing(e.to_string()))?;
    let packed = run(
        Command::new("npm")
            .args(["pack", "--silent", PACKAGE, "--pack-destination"])
            .arg(work.path()),
        &format!("npm pack {PACKAGE}"),
    )
    .await
    .map_err(missing)?;
    let tgz = String::from_utf8_lossy(&packed.stdout).trim().to_string();
    run(
        Command::new("tar")
            .arg("xzf")
            .arg(work.path().join(&tgz))
            .arg("-C")
            .arg(work.path())
            .arg("package/emulator"),
        "tar",
    )
    .await
    .map_err(missing)?;
    let emulator = work.path().join("package/emulator");
    std::fs::write(emulator.join("DynamoDbLoopback.java"), LAUNCHER)
        .map_err(|e| missing(e.to_string()))?;
    match std::fs::rename(&emulator, dir) {
        Ok(()) => Ok(()),
        // Another start installed it meanwhile.
        Err(_) if dir.join("DynamoDBLocal.jar").exists() => Ok(()),
        Err(e) => Err(missing(e.to_string())),
    }
}

/// Runs `cmd` to the end; its output, or why it failed (prefixed with `what`).
async fn run(cmd: &mut Command, what: &str) -> Result<std::process::Output, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out)
}

impl DynamoDbLocal {
    /// Installs the engine if needed and starts it on a free loopback port.
    pub async fn start() -> Result<DynamoDbLocal, LocalError> {
        let dir = engine_dir();
        if !dir.join("DynamoDBLocal.jar").exists() {
            install(&dir).await?;
        }
        let launcher = dir.join("DynamoDbLoopback.java");
        if std::fs::read_to_string(&launcher).ok().as_deref() != Some(LAUNCHER) {
            std::fs::write(&launcher, LAUNCHER).map_err(|e| LocalError::DynamoDbMissing {
                dir: dir.clone(),
                detail: e.to_string(),
            })?;
        }
        let classpath = format!(
            "{}:{}/*",
            dir.join("DynamoDBLocal.jar").display(),
            dir.join("DynamoDBLocal_lib").display()
        );
        let mut cmd = Command::new("java");
        cmd.arg(format!(
            "-Djava.library.path={}",
            dir.join("DynamoDBLocal_lib").display()
        ))
        .args(["-Xss1m", "-XX:+UseSerialGC", "-cp", &classpath])
        .arg(&launcher)
        .arg("0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        super::os::own_child(&mut cmd);
        let mut child = cmd.spawn().map_err(|e| LocalError::NoJava(e.to_string()))?;
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let started = Instant::now();
        let port = loop {
            let line = tokio::time::timeout(START_LIMIT, lines.next_line()).await;
            match line {
                Ok(Ok(Some(line))) => {
                    if let Some(port) = line.strip_prefix("listening on 127.0.0.1:") {
                        break port.trim().to_string();
                    }
                }
                Ok(_) => {
                    let status = child.try_wait().ok().flatten();
                    return Err(LocalError::NoJava(format!(
                        "DynamoDB Local exited at start ({}); it needs Java 17 or later with its compiler (a JDK)",
                        status.map_or("no status".into(), |s| s.to_string())
                    )));
                }
                Err(_) => {
                    return Err(LocalError::DynamoDbSlow {
                        seconds: started.elapsed().as_secs(),
                    });
                }
            }
        };
        // Its log lines are not ours to show; keep the pipe drained.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(DynamoDbLocal {
            url: format!("http://127.0.0.1:{port}"),
            child,
        })
    }

    /// Kills the engine and reaps it.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// Creates each table as the control plane has it (keys, indexes); a table already there is
/// kept with its items, so a restart of the gateway alone loses nothing.
pub async fn mirror(
    client: &aws_sdk_dynamodb::Client,
    tables: &[TableSpec],
) -> Result<(), LocalError> {
    let existing: Vec<String> = client
        .list_tables()
        .into_paginator()
        .items()
        .send()
        .collect::<Result<_, _>>()
        .await
        .map_err(|e| LocalError::Incomplete(format!("DynamoDB Local: ListTables: {e}")))?;
    for table in tables {
        if existing.contains(&table.name) {
            continue;
        }
        let mut attributes: Vec<(String, String)> = Vec::new();
        let mut define = |(name, kind): &(String, String)| {
            if !attributes.iter().any(|(n, _)| n == name) {
                attributes.push((name.clone(), kind.clone()));
            }
        };
        let key = |k: &KeyAttr| (k.name.clone(), k.kind.clone());
        let pk = key(&table.partition_key);
        define(&pk);
        let sk = table.sort_key.as_ref().map(key);
        if let Some(sk) = &sk {
            define(sk);
        }
        let schema = |pk: &(String, String), sk: &Option<(String, String)>| {
            let mut s = vec![
                KeySchemaElement::builder()
                    .attribute_name(&pk.0)
                    .key_type(KeyType::Hash)
                    .build()
                    .expect("set"),
            ];
            if let Some(sk) = sk {
                s.push(
                    KeySchemaElement::builder()
                        .attribute_name(&sk.0)
                        .key_type(KeyType::Range)
                        .build()
                        .expect("set"),
                );
            }
            s
        };
        let mut indexes = Vec::new();
        for (
            name,
            IndexSpec {
                partition_key,
                sort_key,
            },
        ) in &table.indexes
        {
            let ipk = key(partition_key);
            let isk = sort_key.as_ref().map(key);
            define(&ipk);
            if let Some(isk) = &isk {
                define(isk);
            }
            indexes.push(
                GlobalSecondaryIndex::builder()
                    .index_name(name)
                    .set_key_schema(Some(schema(&ipk, &isk)))
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build()
                    .expect("set"),
            );
        }
        client
            .create_table()
            .table_name(&table.name)
            .billing_mode(BillingMode::PayPerRequest)
            .set_attribute_definitions(Some(
                attributes
                    .iter()
                    .map(|(name, kind)| {
                        AttributeDefinition::builder()
                            .attribute_name(name)
                            .attribute_type(ScalarAttributeType::from(kind.as_str()))
                            .build()
                            .expect("set")
                    })
                    .collect(),
            ))
            .set_key_schema(Some(schema(&pk, &sk)))
            .set_global_secondary_indexes((!indexes.is_empty()).then_some(indexes))
            .send()
            .await
            .map_err(|e| {
                LocalError::Incomplete(format!(
                    "DynamoDB Local: CreateTable {}: {}",
                    table.name,
                    aws_smithy_types::error::display::DisplayErrorContext(&e)
                ))
            })?;
    }
    Ok(())
}

/// Deletes the items whose TTL attribute holds a time (epoch seconds, a number) in the past,
/// as DynamoDB's TTL does: items without the attribute, or with a non-number, never expire.
/// DynamoDB deletes them in the background, typically within a few days of expiry ("Working
/// with Time to Live"), so readers must not rely on when; `wsctl dev` sweeps every few seconds
/// so that expiry paths show up while one works. Returns how many went.
pub async fn sweep(
    client: &aws_sdk_dynamodb::Client,
    tables: &[TableSpec],
) -> Result<usize, aws_sdk_dynamodb::Error> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let mut deleted = 0;
    for table in tables {
        let Some(ttl) = &table.ttl_attribute else {
            continue;
        };
        let keys: Vec<String> = std::iter::once(&table.partition_key)
            .chain(table.sort_key.as_ref())
            .map(|k| k.name.clone())
            .collect();
        let mut start = None;
        loop {
            let page = client
                .scan()
                .table_name(&table.name)
                .filter_expression("#t < :now")
                .expression_attribute_names("#t", ttl)
                .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
                .set_exclusive_start_key(start)
                .send()
                .await?;
            for item in page.items.unwrap_or_default() {
                let key = keys
                    .iter()
                    .filter_map(|k| item.get(k).map(|v| (k.clone(), v.clone())))
                    .collect();
                let sent = client
                    .delete_item()
                    .table_name(&table.name)
                    .set_key(Some(key))
                    // Not if it was renewed since the scan.
                    .condition_expression("#t < :now")
                    .expression_attribute_names("#t", ttl)
                    .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
                    .send()
                    .await;
                match sent {
                    Ok(_) => deleted += 1,
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|s| s.is_conditional_check_failed_exception()) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
    }
    Ok(deleted)
}
