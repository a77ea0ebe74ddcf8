//! DynamoDB's table life cycle where moto makes every change at once: a deleted table's name
//! stays taken for a while, TTL changes once an hour and takes a while to settle, and a global
//! secondary index is built (or removed) one at a time. A tag written twice holds one value.
//!
//! AWS's own waits are seconds to an hour; here they last [`SETTLE`], except the TTL hour,
//! which is real: a test moves past it with [`Tables::age`], never by waiting.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::proxy::{Behaviour, Call, Exchange, Reply};

/// How long a deleted table stays DELETING, a TTL change ENABLING/DISABLING and a new index
/// CREATING (or a deleted one DELETING).
pub const SETTLE: Duration = Duration::from_secs(2);
/// UpdateTimeToLive: "It can take up to one hour for the change to fully process. Any
/// additional UpdateTimeToLive calls for the same table during this one hour duration result
/// in a ValidationException." (DynamoDB API Reference, UpdateTimeToLive.)
pub const TTL_WINDOW: Duration = Duration::from_secs(3600);

#[derive(Default)]
struct State {
    /// Tables deleted in moto whose names AWS would still hold: their description, and until
    /// when.
    deleting: HashMap<String, (Value, Instant)>,
    /// Per table: when its TTL was last changed, to which attribute, and whether on or off.
    ttl: HashMap<String, (Instant, String, bool)>,
    /// Per table and index: the index's description, DELETING or CREATING until when.
    indexes: HashMap<String, BTreeMap<String, IndexChange>>,
    /// The last description of each index seen, so a deleted one can still be described.
    seen: HashMap<String, BTreeMap<String, Value>>,
    /// How far the clock has been moved on by [`Tables::age`].
    aged: Duration,
    /// How long a new index is built, when not [`SETTLE`].
    build: Option<Duration>,
}

struct IndexChange {
    deleted: Option<Value>,
    until: Instant,
}

impl State {
    fn now(&self) -> Instant {
        Instant::now() + self.aged
    }

    fn deleting(&mut self, table: &str) -> Option<Value> {
        let now = self.now();
        self.deleting.retain(|_, (_, until)| *until > now);
        self.deleting.get(table).map(|(d, _)| d.clone())
    }

    fn index_changes(&mut self, table: &str) -> &mut BTreeMap<String, IndexChange> {
        let now = self.now();
        let changes = self.indexes.entry(table.to_string()).or_default();
        changes.retain(|_, c| c.until > now);
        changes
    }
}

/// The DynamoDB behaviours, as one value a test can hold to move its clock.
#[derive(Default)]
pub struct Tables {
    state: Mutex<State>,
}

impl Tables {
    /// New indexes take `build` to be built (and backfilled) instead of [`SETTLE`]: a large
    /// table's index takes minutes to hours on AWS.
    pub fn building_indexes_for(build: Duration) -> Tables {
        let tables = Tables::default();
        tables.state.lock().unwrap().build = Some(build);
        tables
    }

    /// Moves the clock on by `by`: TTL changes made before look that much older. The table's
    /// own record of its last change (wsctl's tag) is the test's to age alike.
    pub fn age(&self, by: Duration) {
        self.state.lock().unwrap().aged += by;
    }
}

fn table_name(req: &Exchange) -> String {
    req.json()["TableName"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn in_use(table: &str) -> Reply {
    Reply::error(
        400,
        "ResourceInUseException",
        &format!(
            "Attempt to change a resource which is still in use: Table is being deleted: {table}"
        ),
    )
}

impl Behaviour for Tables {
    fn answer(&self, call: &Call, req: &Exchange) -> Option<Reply> {
        if call.service != "dynamodb" {
            return None;
        }
        let mut state = self.state.lock().unwrap();
        let table = table_name(req);
        match call.operation.as_str() {
            // DeleteTable: "the table is in the DELETING state until DynamoDB completes the
            // deletion"; meanwhile DescribeTable reports it so, and CreateTable of the name, or
            // another DeleteTable, is a ResourceInUseException ("Attempt to change a resource
            // which is still in use"). (API Reference, DeleteTable and CreateTable.)
            "DescribeTable" => state
                .deleting(&table)
                .map(|d| Reply::json(200, &json!({ "Table": d }))),
            "CreateTable" | "DeleteTable" | "UpdateTable" | "UpdateTimeToLive"
                if state.deleting(&table).is_some() =>
            {
                Some(in_use(&table))
            }
            // UpdateTimeToLive: one change per table per hour (API Reference,
            // UpdateTimeToLive); the message is the one AWS sends.
            "UpdateTimeToLive" => {
                let now = state.now();
                state
                    .ttl
                    .get(&table)
                    .filter(|(at, _, _)| now.duration_since(*at) < TTL_WINDOW)
                    .map(|_| {
                        Reply::error(
                            400,
                            "ValidationException",
                            "Time to live has been modified multiple times within a fixed interval",
                        )
                    })
            }
            // UpdateTable, GlobalSecondaryIndexUpdates: "You can create or delete only one
            // global secondary index per UpdateTable operation", and a table takes no other
            // index change while one is being created or deleted (API Reference, UpdateTable;
            // Developer Guide, "Managing Global Secondary Indexes").
            "UpdateTable" => {
                let updates = req.json()["GlobalSecondaryIndexUpdates"].clone();
                let structural = updates
                    .as_array()
                    .map(|u| {
                        u.iter()
                            .filter(|u| u.get("Create").is_some() || u.get("Delete").is_some())
                            .count()
                    })
                    .unwrap_or(0);
                if structural > 1 {
                    return Some(Reply::error(
                        400,
                        "ValidationException",
                        "One or more parameter values were invalid: only one global secondary index can be created or deleted per UpdateTable operation",
                    ));
                }
                if structural == 1 && !state.index_changes(&table).is_empty() {
                    return Some(Reply::error(
                        400,
                        "LimitExceededException",
                        "Subscriber limit exceeded: Only 1 online index can be created or deleted simultaneously per table",
                    ));
                }
                None
            }
            // "Cannot read from backfilling global secondary index" while an added index is
            // built (Developer Guide, "Adding a global secondary index to an existing table":
            // the index is not readable until backfilling completes).
            "Query" | "Scan" => {
                let index = req.json()["IndexName"].as_str()?.to_string();
                state
                    .index_changes(&table)
                    .get(&index)
                    .filter(|c| c.deleted.is_none())
                    .map(|_| {
                        Reply::error(
                            400,
                            "ValidationException",
                            &format!(
                                "Cannot read from backfilling global secondary index: {index}"
                            ),
                        )
                    })
            }
            _ => None,
        }
    }

    fn rewrite(&self, call: &Call, req: &Exchange, reply: &mut Reply) {
        if call.service != "dynamodb" || reply.status != 200 {
            return;
        }
        let mut state = self.state.lock().unwrap();
        let table = table_name(req);
        let mut body: Value = serde_json::from_slice(&reply.body).unwrap_or_default();
        let now = state.now();
        match call.operation.as_str() {
            "DeleteTable" => {
                let mut description = body["TableDescription"].clone();
                description["TableStatus"] = json!("DELETING");
                state
                    .deleting
                    .insert(table.clone(), (description.clone(), now + SETTLE));
                state.ttl.remove(&table);
                state.indexes.remove(&table);
                state.seen.remove(&table);
                body["TableDescription"] = description;
            }
            // "If you try to add an existing tag (same key), the existing tag value is updated
            // to the new value" (Developer Guide, Tagging restrictions); moto's TagResource
            // appends a second entry, so the listing keeps the last value of each key.
            "ListTagsOfResource" => {
                let tags = body["Tags"].as_array().cloned().unwrap_or_default();
                let mut kept: Vec<Value> = Vec::new();
                for tag in tags {
                    kept.retain(|t| t["Key"] != tag["Key"]);
                    kept.push(tag);
                }
                body["Tags"] = json!(kept);
            }
            // ListTables lists a table until it is gone.
            "ListTables" => {
                let _ = state.deleting("");
                let mut names: Vec<String> = body["TableNames"]
                    .as_array()
                    .map(|n| {
                        n.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                names.extend(state.deleting.keys().cloned());
                names.sort();
                names.dedup();
                body["TableNames"] = json!(names);
            }
            "UpdateTimeToLive" => {
                let spec = &req.json()["TimeToLiveSpecification"];
                let attribute = spec["AttributeName"].as_str().unwrap_or_default();
                let enabled = spec["Enabled"].as_bool().unwrap_or_default();
                state
                    .ttl
                    .insert(table, (now, attribute.to_string(), enabled));
                return;
            }
            // A TTL change is ENABLING or DISABLING before it is ENABLED or DISABLED
            // (API Reference, TimeToLiveDescription).
            "DescribeTimeToLive" => {
                let Some((at, attribute, enabled)) = state.ttl.get(&table) else {
                    return;
                };
                if now.duration_since(*at) >= SETTLE {
                    return;
                }
                body["TimeToLiveDescription"] = json!({
                    "AttributeName": attribute,
                    "TimeToLiveStatus": if *enabled { "ENABLING" } else { "DISABLING" },
                });
            }
            "UpdateTable" => {
                let updates = req.json()["GlobalSecondaryIndexUpdates"].clone();
                for update in updates.as_array().into_iter().flatten() {
                    if let Some(name) = update["Create"]["IndexName"].as_str() {
                        let change = IndexChange {
                            deleted: None,
                            until: now + state.build.unwrap_or(SETTLE),
                        };
                        state.index_changes(&table).insert(name.to_string(), change);
                    }
                    if let Some(name) = update["Delete"]["IndexName"].as_str() {
                        let last = state
                            .seen
                            .get(&table)
                            .and_then(|s| s.get(name))
                            .cloned()
                            .unwrap_or_else(|| json!({ "IndexName": name }));
                        let change = IndexChange {
                            deleted: Some(last),
                            until: now + SETTLE,
                        };
                        state.index_changes(&table).insert(name.to_string(), change);
                    }
                }
                return;
            }
            // DescribeTable: IndexStatus is CREATING while an added index is backfilled and
            // DELETING while a removed one goes (API Reference, GlobalSecondaryIndexDescription).
            "DescribeTable" => {
                let indexes = body["Table"]["GlobalSecondaryIndexes"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let seen = state.seen.entry(table.clone()).or_default();
                for index in &indexes {
                    if let Some(name) = index["IndexName"].as_str() {
                        seen.insert(name.to_string(), index.clone());
                    }
                }
                let changes = state.index_changes(&table);
                if changes.is_empty() {
                    return;
                }
                let mut described: Vec<Value> = indexes
                    .into_iter()
                    .map(|mut index| {
                        let name = index["IndexName"].as_str().unwrap_or_default();
                        if changes.get(name).is_some_and(|c| c.deleted.is_none()) {
                            index["IndexStatus"] = json!("CREATING");
                            index["Backfilling"] = json!(true);
                        }
                        index
                    })
                    .collect();
                for change in changes.values() {
                    if let Some(deleted) = &change.deleted {
                        let mut index = deleted.clone();
                        index["IndexStatus"] = json!("DELETING");
                        described.push(index);
                    }
                }
                body["Table"]["GlobalSecondaryIndexes"] = json!(described);
            }
            _ => return,
        }
        reply.body = bytes::Bytes::from(body.to_string());
        // The checksum moto computed was of its own body.
        reply
            .headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case("x-amz-crc32"));
    }

    fn reset(&self) {
        *self.state.lock().unwrap() = State::default();
    }
}

/// An account at its table quota: "There is a soft account quota of 2,500 tables" and "up to
/// 500 simultaneous table operations are allowed per account" (DynamoDB API Reference,
/// `LimitExceededException`). Every CreateTable is refused with it; waiting does not help.
#[derive(Default)]
pub struct TableQuota;

impl Behaviour for TableQuota {
    fn answer(&self, call: &Call, _req: &Exchange) -> Option<Reply> {
        (call.service == "dynamodb" && call.operation == "CreateTable").then(|| {
            Reply::error(
                400,
                "com.amazonaws.dynamodb.v20120810#LimitExceededException",
                "Subscriber limit exceeded: There is a limit of 2500 tables per subscriber",
            )
        })
    }
}
