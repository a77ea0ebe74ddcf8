//! DynamoDB under `--like-aws`: what each call costs and what one partition key can take.
//!
//! - **Request units.** Every data call is sent to the engine with `ReturnConsumedCapacity`
//!   (and the answer's `ConsumedCapacity` removed again unless the caller asked for it), so the
//!   units are DynamoDB Local's own count of item sizes: a read unit per 4 KB strongly
//!   consistent (half eventually consistent), a write unit per 1 KB, a Query summing its items
//!   before rounding ("Read consumption for on-demand / Query", DynamoDB developer guide). A
//!   write refused by its condition still costs a write unit, as on DynamoDB ("Condition
//!   expressions: ... still consumes write capacity units").
//! - **Per-partition throughput.** One partition serves at most 3,000 read units and 1,000
//!   write units a second, on-demand tables included ("Service, account, and table quotas in
//!   Amazon DynamoDB: per-partition throughput"). A partition key value is the smallest thing
//!   DynamoDB cannot split (its items share one partition), so each table's (or index's)
//!   partition key value gets a one-second bucket of each; a call to a key whose bucket is
//!   spent is answered as DynamoDB answers it, before it runs. Units of a call over several keys
//!   (batches, transactions) are shared evenly between them; a write's index units are billed
//!   but not charged to the index's partitions.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use hyper::{Response, StatusCode};
use serde_json::{Map, Value, json};

use super::http::{Body, json_response};

/// DynamoDB's per-partition limits, in units a second.
pub const PARTITION_READS: u32 = 3_000;
pub const PARTITION_WRITES: u32 = 1_000;

/// Buckets kept before the full ones (as good as new) are dropped: one per key ever called
/// would grow with every connection id.
const BUCKETS_KEPT: usize = 4096;

/// What an on-demand table answers a call to a key over its partition's throughput (HTTP 400;
/// the SDKs retry it as a throttle), with the reason DynamoDB gives, `TableReadKeyRangeThroughputExceeded`
/// and the like ("ThrottlingReason", DynamoDB API reference).
const THROTTLED: &str = "ThrottlingException";
const THROTTLED_MESSAGE: &str = "Throughput exceeds the current capacity of your table or index. DynamoDB is automatically scaling your table or index so please try again shortly. If exceptions persist, check if you have a hot key: https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Read,
    Write,
}

/// A table's partition key, and each of its indexes' (by index name).
#[derive(Debug, Clone, Default)]
pub struct TableKeys {
    pub partition_key: String,
    pub indexes: HashMap<String, String>,
}

/// One partition key value of a table or of one of its indexes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition {
    pub table: String,
    pub index: Option<String>,
    value: String,
}

impl Partition {
    /// DynamoDB's reason for refusing a `kind` call to it.
    pub fn reason(&self, kind: Kind) -> String {
        let resource = if self.index.is_some() {
            "Index"
        } else {
            "Table"
        };
        let op = match kind {
            Kind::Read => "Read",
            Kind::Write => "Write",
        };
        format!("{resource}{op}KeyRangeThroughputExceeded")
    }
}

/// One data call on its way to the engine.
#[derive(Debug)]
pub struct Call {
    pub kind: Kind,
    /// The partition key values it touches; none for a Scan or a statement, which are
    /// metered only.
    partitions: Vec<Partition>,
    /// The caller asked for `ConsumedCapacity` itself.
    asked: bool,
    /// What goes to the engine.
    pub body: Bytes,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    read: f64,
    write: f64,
    at: Instant,
}

impl Bucket {
    fn left(&self, kind: Kind) -> f64 {
        match kind {
            Kind::Read => self.read,
            Kind::Write => self.write,
        }
    }

    fn take(&mut self, kind: Kind, units: f64) {
        match kind {
            Kind::Read => self.read -= units,
            Kind::Write => self.write -= units,
        }
    }
}

impl Call {
    /// The least a call costs each partition it touches: half a read unit (an eventually
    /// consistent read), one write unit.
    fn held(&self) -> f64 {
        match self.kind {
            Kind::Read => 0.5,
            Kind::Write => 1.0,
        }
    }
}

pub struct Partitions {
    reads: f64,
    writes: f64,
    keys: OnceLock<HashMap<String, TableKeys>>,
    buckets: Mutex<HashMap<Partition, Bucket>>,
}

impl Partitions {
    pub fn new(reads: u32, writes: u32) -> Partitions {
        Partitions {
            reads: f64::from(reads.max(1)),
            writes: f64::from(writes.max(1)),
            keys: OnceLock::new(),
            buckets: Mutex::default(),
        }
    }

    /// The rates, for the startup line.
    pub fn rates(&self) -> (f64, f64) {
        (self.reads, self.writes)
    }

    /// The stack's tables (by their names), once they are known.
    pub fn know(&self, tables: HashMap<String, TableKeys>) {
        let _ = self.keys.set(tables);
    }

    /// `op` (from `X-Amz-Target`) with `body`, when it is a data call that consumes units.
    pub fn call(&self, op: &str, body: &[u8]) -> Option<Call> {
        let kind = match op {
            "GetItem" | "Query" | "Scan" | "BatchGetItem" | "TransactGetItems" => Kind::Read,
            "PutItem" | "UpdateItem" | "DeleteItem" | "BatchWriteItem" | "TransactWriteItems" => {
                Kind::Write
            }
            "ExecuteStatement" | "BatchExecuteStatement" | "ExecuteTransaction" => Kind::Read,
            _ => return None,
        };
        let Ok(Value::Object(mut request)) = serde_json::from_slice::<Value>(body) else {
            return None;
        };
        let asked = request
            .get("ReturnConsumedCapacity")
            .and_then(Value::as_str)
            .is_some_and(|v| v != "NONE");
        let partitions = self.touched(op, &request);
        if !asked {
            // Per table and index, so a partition is charged its own units, not its indexes'.
            request.insert("ReturnConsumedCapacity".into(), "INDEXES".into());
        }
        let body = serde_json::to_vec(&request).ok()?.into();
        Some(Call {
            kind,
            partitions,
            asked,
            body,
        })
    }

    /// The buckets, without the full ones once there are many.
    fn buckets(&self, now: Instant) -> std::sync::MutexGuard<'_, HashMap<Partition, Bucket>> {
        let mut buckets = self.buckets.lock().unwrap();
        if buckets.len() > BUCKETS_KEPT {
            buckets.retain(|_, b| {
                let b = self.refilled(Some(*b), now);
                b.read < self.reads || b.write < self.writes
            });
        }
        buckets
    }

    /// `Ok` when every partition `call` touches has throughput left, which it then holds
    /// (the least a call costs, until [`Partitions::settle`] knows the rest, so calls arriving
    /// together cannot all pass on one unit); else the first that has none.
    pub fn admit<'c>(&self, call: &'c Call) -> Result<(), &'c Partition> {
        let now = Instant::now();
        let mut buckets = self.buckets(now);
        for p in &call.partitions {
            let b = self.refilled(buckets.get(p).copied(), now);
            buckets.insert(p.clone(), b);
            if b.left(call.kind) <= 0.0 {
                return Err(p);
            }
        }
        for p in &call.partitions {
            if let Some(b) = buckets.get_mut(p) {
                b.take(call.kind, call.held());
            }
        }
        Ok(())
    }

    /// The units the engine says `call` consumed (its answer `status`, `response`), charged to
    /// its partitions; and the answer as the caller should see it, when it must change.
    pub fn settle(&self, call: &Call, status: u16, response: &[u8]) -> (f64, Option<Bytes>) {
        let parsed: Option<Map<String, Value>> = serde_json::from_slice(response).ok();
        let capacity = parsed.as_ref().and_then(|r| r.get("ConsumedCapacity"));
        let mut units = capacity.map_or(0.0, consumed);
        let index = call.partitions.first().and_then(|p| p.index.as_deref());
        let mut own = capacity.map_or(0.0, |c| own_units(c, index));
        let refused_by_condition = status == 400
            && parsed
                .as_ref()
                .and_then(|r| r.get("__type"))
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with("ConditionalCheckFailedException"));
        if refused_by_condition && call.kind == Kind::Write {
            units = units.max(1.0);
            own = own.max(1.0);
        }
        if !call.partitions.is_empty() {
            let share = own / call.partitions.len() as f64;
            let now = Instant::now();
            let mut buckets = self.buckets(now);
            for p in &call.partitions {
                let mut b = self.refilled(buckets.get(p).copied(), now);
                // What admit held is given back when the call cost less (or failed).
                b.take(call.kind, share - call.held());
                buckets.insert(p.clone(), b);
            }
        }
        let rewritten = match parsed {
            Some(mut r) if !call.asked => r
                .remove("ConsumedCapacity")
                .and_then(|_| serde_json::to_vec(&r).ok())
                .map(Bytes::from),
            _ => None,
        };
        (units, rewritten)
    }

    /// A bucket brought up to `now`: full (one second of each rate) when new; a bucket in
    /// debt refills from below zero, so a burst over the rate is paid back before the next.
    fn refilled(&self, b: Option<Bucket>, now: Instant) -> Bucket {
        match b {
            None => Bucket {
                read: self.reads,
                write: self.writes,
                at: now,
            },
            Some(b) => {
                let dt = now.duration_since(b.at).as_secs_f64();
                Bucket {
                    read: (b.read + dt * self.reads).min(self.reads),
                    write: (b.write + dt * self.writes).min(self.writes),
                    at: now,
                }
            }
        }
    }

    fn touched(&self, op: &str, r: &Map<String, Value>) -> Vec<Partition> {
        let Some(keys) = self.keys.get() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut add = |table: Option<&str>, index: Option<&str>, value: Option<&Value>| {
            let (Some(table), Some(value)) = (table, value) else {
                return;
            };
            out.push(Partition {
                table: table.to_string(),
                index: index.map(str::to_string),
                value: value.to_string(),
            });
        };
        let key_in = |table: Option<&str>, item: Option<&Value>| {
            let pk = &keys.get(table?)?.partition_key;
            item?.get(pk).cloned()
        };
        match op {
            "GetItem" | "UpdateItem" | "DeleteItem" => add(
                table_of(r),
                None,
                key_in(table_of(r), r.get("Key")).as_ref(),
            ),
            "PutItem" => add(
                table_of(r),
                None,
                key_in(table_of(r), r.get("Item")).as_ref(),
            ),
            "Query" => {
                let table = table_of(r);
                let index = r.get("IndexName").and_then(Value::as_str);
                let pk = table.and_then(|t| keys.get(t)).and_then(|k| match index {
                    Some(i) => k.indexes.get(i),
                    None => Some(&k.partition_key),
                });
                let value = pk.and_then(|pk| query_value(r, pk));
                add(table, index, value);
            }
            "BatchGetItem" | "BatchWriteItem" => {
                let Some(Value::Object(tables)) = r.get("RequestItems") else {
                    return out;
                };
                for (table, wanted) in tables {
                    let items: Vec<&Value> = match wanted {
                        Value::Object(get) => get
                            .get("Keys")
                            .and_then(Value::as_array)
                            .map(|k| k.iter().collect())
                            .unwrap_or_default(),
                        Value::Array(writes) => writes
                            .iter()
                            .filter_map(|w| {
                                w.pointer("/PutRequest/Item")
                                    .or_else(|| w.pointer("/DeleteRequest/Key"))
                            })
                            .collect(),
                        _ => Vec::new(),
                    };
                    for item in items {
                        add(Some(table), None, key_in(Some(table), Some(item)).as_ref());
                    }
                }
            }
            "TransactGetItems" | "TransactWriteItems" => {
                for item in r
                    .get("TransactItems")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let Some(Value::Object(one)) = item.as_object().and_then(|o| o.values().next())
                    else {
                        continue;
                    };
                    let key = one.get("Key").or_else(|| one.get("Item"));
                    add(table_of(one), None, key_in(table_of(one), key).as_ref());
                }
            }
            _ => {}
        }
        out.sort();
        out.dedup();
        out
    }
}

/// DynamoDB's answer to a `kind` call to `hot`, a partition over its throughput, in `region`
/// and `account`.
pub fn throttled(hot: &Partition, kind: Kind, region: &str, account: &str) -> Response<Body> {
    let resource = match &hot.index {
        Some(i) => format!("{}/index/{i}", hot.table),
        None => hot.table.clone(),
    };
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({
            "__type": format!("com.amazonaws.dynamodb.v20120810#{THROTTLED}"),
            "message": THROTTLED_MESSAGE,
            "ThrottlingReasons": [{
                "reason": hot.reason(kind),
                "resource": format!("arn:aws:dynamodb:{region}:{account}:table/{resource}"),
            }],
        }),
    )
}

fn table_of(call: &Map<String, Value>) -> Option<&str> {
    call.get("TableName").and_then(Value::as_str)
}

/// The units a table's partitions (or, with `index`, that index's) consumed: a
/// `ConsumedCapacity` asked for with `INDEXES` splits its total by table and index.
fn own_units(c: &Value, index: Option<&str>) -> f64 {
    match c {
        Value::Array(all) => all.iter().map(|c| own_units(c, None)).sum(),
        Value::Object(one) => {
            let part = match index {
                Some(i) => ["GlobalSecondaryIndexes", "LocalSecondaryIndexes"]
                    .iter()
                    .find_map(|kind| one.get(*kind)?.get(i)?.get("CapacityUnits")),
                None => one.get("Table").and_then(|t| t.get("CapacityUnits")),
            };
            part.and_then(Value::as_f64).unwrap_or_else(|| consumed(c))
        }
        _ => 0.0,
    }
}

/// The units in a `ConsumedCapacity` (one object, or a list for batches and transactions).
fn consumed(c: &Value) -> f64 {
    match c {
        Value::Array(all) => all.iter().map(consumed).sum(),
        Value::Object(one) => one
            .get("CapacityUnits")
            .and_then(Value::as_f64)
            .unwrap_or_default(),
        _ => 0.0,
    }
}

/// The value a Query's key condition gives the partition key `pk`: the `=` whose left side is
/// `pk` or an `#name` standing for it.
fn query_value<'a>(r: &'a Map<String, Value>, pk: &str) -> Option<&'a Value> {
    let condition = r.get("KeyConditionExpression")?.as_str()?;
    let names = r.get("ExpressionAttributeNames");
    let values = r.get("ExpressionAttributeValues")?;
    condition
        .split(" AND ")
        .flat_map(|part| part.split(" and "))
        .find_map(|part| {
            let (left, right) = part.split_once('=')?;
            let left = left.trim().trim_start_matches('(');
            if left.ends_with(['<', '>', '!']) {
                return None;
            }
            let name = match left.strip_prefix('#') {
                Some(_) => names?.get(left)?.as_str()?,
                None => left,
            };
            (name == pk).then(|| values.get(right.trim().trim_end_matches(')')))?
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partitions() -> Partitions {
        let p = Partitions::new(PARTITION_READS, PARTITION_WRITES);
        let subscriptions = TableKeys {
            partition_key: "channel".into(),
            indexes: [("by-connection".to_string(), "connection".to_string())].into(),
        };
        p.know([("subs".to_string(), subscriptions)].into());
        p
    }

    #[test]
    fn each_call_names_the_partition_keys_it_touches() {
        let p = partitions();
        let q = json!({"TableName": "subs", "KeyConditionExpression": "#c = :c AND begins_with(#k, :p)",
            "ExpressionAttributeNames": {"#c": "channel", "#k": "connection"},
            "ExpressionAttributeValues": {":c": {"S": "room"}, ":p": {"S": "a"}}});
        let call = p.call("Query", q.to_string().as_bytes()).unwrap();
        assert_eq!(call.partitions[0].table, "subs");
        assert_eq!(call.partitions[0].value, r#"{"S":"room"}"#);
        assert_eq!(call.partitions.len(), 1);
        assert_eq!(call.kind, Kind::Read);
        let sent: Value = serde_json::from_slice(&call.body).unwrap();
        assert_eq!(sent["ReturnConsumedCapacity"], "INDEXES");

        let by_index = json!({"TableName": "subs", "IndexName": "by-connection",
            "KeyConditionExpression": "connection = :x", "ExpressionAttributeValues": {":x": {"S": "id1"}}});
        let call = p.call("Query", by_index.to_string().as_bytes()).unwrap();
        let index = &call.partitions[0];
        assert_eq!(index.index.as_deref(), Some("by-connection"));
        assert_eq!(index.value, r#"{"S":"id1"}"#);
        assert_eq!(
            index.reason(Kind::Read),
            "IndexReadKeyRangeThroughputExceeded"
        );

        let batch = json!({"RequestItems": {"subs": [
            {"PutRequest": {"Item": {"channel": {"S": "a"}, "connection": {"S": "1"}}}},
            {"DeleteRequest": {"Key": {"channel": {"S": "b"}, "connection": {"S": "1"}}}},
            {"PutRequest": {"Item": {"channel": {"S": "a"}, "connection": {"S": "2"}}}}]}});
        let call = p
            .call("BatchWriteItem", batch.to_string().as_bytes())
            .unwrap();
        assert_eq!(call.partitions.len(), 2, "{:?}", call.partitions);
        assert_eq!(call.kind, Kind::Write);

        // Another table's calls are metered, not held to a partition; control calls neither.
        let other = json!({"TableName": "users", "Key": {"id": {"S": "1"}}});
        assert!(
            p.call("GetItem", other.to_string().as_bytes())
                .unwrap()
                .partitions
                .is_empty()
        );
        assert!(p.call("DescribeTable", b"{}").is_none());
    }

    #[test]
    fn a_hot_key_is_refused_once_its_second_is_spent_and_others_are_not() {
        let p = partitions();
        let put = |channel: &str| {
            let item = json!({"TableName": "subs", "Item": {"channel": {"S": channel}, "connection": {"S": "x"}}});
            p.call("PutItem", item.to_string().as_bytes()).unwrap()
        };
        let hot = put("hot");
        let answer = json!({"ConsumedCapacity": {"TableName": "subs", "CapacityUnits": 1.0}});
        let answer = answer.to_string();
        let mut admitted = 0;
        while p.admit(&hot).is_ok() && admitted < 5_000 {
            let (units, rewritten) = p.settle(&hot, 200, answer.as_bytes());
            assert_eq!(units, 1.0);
            assert_eq!(rewritten.as_deref(), Some(&b"{}"[..]), "not asked, removed");
            admitted += 1;
        }
        // A second's worth, plus what refilled while the loop ran.
        assert!((1_000..1_100).contains(&admitted), "{admitted}");
        let refused = p.admit(&hot).unwrap_err();
        assert_eq!(
            refused.reason(Kind::Write),
            "TableWriteKeyRangeThroughputExceeded"
        );
        assert!(
            p.admit(&put("cold")).is_ok(),
            "another key has its own partition"
        );
        // Many keys, each called once: only those not yet refilled are kept.
        for n in 0..BUCKETS_KEPT + 10 {
            let _ = p.admit(&put(&format!("k{n}")));
        }
        assert!(p.buckets.lock().unwrap().len() <= BUCKETS_KEPT + 1);
        // A write its condition refused still costs a unit.
        let refused =
            json!({"__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException"});
        assert_eq!(
            p.settle(&put("c2"), 400, refused.to_string().as_bytes()).0,
            1.0
        );
        // Calls arriving together, none answered yet, pass on what each holds, not on one unit.
        let together = partitions();
        let item = json!({"TableName": "subs", "Item": {"channel": {"S": "hot"}, "connection": {"S": "x"}}});
        let call = together
            .call("PutItem", item.to_string().as_bytes())
            .unwrap();
        let held = (0..1_500).filter(|_| together.admit(&call).is_ok()).count();
        assert!((1_000..1_010).contains(&held), "{held}");
        let batch = json!({"ConsumedCapacity": [{"CapacityUnits": 2.0}, {"CapacityUnits": 0.5}]});
        assert_eq!(consumed(&batch["ConsumedCapacity"]), 2.5);
        // A write to a table with an index: billed both, its partition charged its own.
        let indexed = json!({"CapacityUnits": 2.0, "Table": {"CapacityUnits": 1.0},
            "GlobalSecondaryIndexes": {"by-connection": {"CapacityUnits": 1.0}}});
        assert_eq!((consumed(&indexed), own_units(&indexed, None)), (2.0, 1.0));
        assert_eq!(own_units(&indexed, Some("by-connection")), 1.0);
    }
}
