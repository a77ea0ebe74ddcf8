//! The DynamoDB data model (documented in `docs/src/reference/data-model.md`). Hot paths are single-item
//! writes and Queries; only `wsctl gc`'s removal of many stale connections at once Scans.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;

use crate::auth::Capabilities;
use crate::layout::{CONNECTIONS, COUNTERS, HISTORY, SUBSCRIPTIONS};
use crate::protocol::Message;

mod connections;
mod history;
mod order;
mod presence;
mod subscriptions;

// Key and index names come from the layout that wsctl checks wsctl.yaml's tables against.
const CONNECTION_ID: &str = CONNECTIONS.partition_key.name;
const SUB_CHANNEL: &str = SUBSCRIPTIONS.partition_key.name;
const SUB_CONNECTION: &str = SUBSCRIPTIONS.sort_key_name();
const HISTORY_CHANNEL: &str = HISTORY.partition_key.name;
const HISTORY_SERIAL: &str = HISTORY.sort_key_name();
const COUNTER_KEY: &str = COUNTERS.partition_key.name;

/// BatchWriteItem's limit of requests a call.
const BATCH: usize = 25;
/// BatchWriteItem calls in flight at once when deleting many keys.
const BATCHES_AT_ONCE: usize = 8;

/// How far ahead of the connection's last stored publish a numbered publish may be.
pub const SEQ_WINDOW: u64 = 64;
/// Numbered publishes of one connection that may wait for their predecessors at once.
pub const MAX_WAITING: u64 = 8;

/// When a numbered publish may be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Its predecessors are stored, or its wait is over.
    Go,
    /// More than [`SEQ_WINDOW`] ahead of `last`, the connection's last stored number.
    TooFar { last: u64 },
    /// [`MAX_WAITING`] of the connection's publishes are waiting already.
    Busy,
}

/// API Gateway closes a connection after 2 h; an item outlives that by an hour, so a
/// connection whose `$disconnect` never ran expires on its own.
pub const CONNECTION_TTL_SECS: u64 = 3 * 3600;

pub type Key = HashMap<String, AttributeValue>;

#[derive(Debug, thiserror::Error)]
#[error("{op} on {table}: {message}")]
pub struct StoreError {
    pub op: &'static str,
    pub table: String,
    pub message: String,
    /// DynamoDB refused for throughput, after the SDK's own retries: a key (a channel's
    /// counter or history, above all) is hotter than its partition serves, 1,000 write and
    /// 3,000 read units a second ("Partitions and data distribution", DynamoDB Developer
    /// Guide), so a retry some time later can succeed.
    pub throttled: bool,
}

/// The error codes DynamoDB answers a call over its throughput with ("Error handling with
/// DynamoDB", DynamoDB Developer Guide).
pub(crate) fn is_throttling(code: &str) -> bool {
    matches!(
        code,
        "ThrottlingException" | "ProvisionedThroughputExceededException" | "RequestLimitExceeded"
    )
}

pub(crate) fn err<'a, E: ProvideErrorMetadata + std::fmt::Debug>(
    op: &'static str,
    table: &'a str,
) -> impl FnOnce(
    aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> StoreError
+ 'a {
    move |e| StoreError {
        op,
        table: table.to_string(),
        throttled: e
            .as_service_error()
            .and_then(|s| s.code())
            .is_some_and(is_throttling),
        message: match e.as_service_error() {
            Some(s) => format!(
                "{}: {}",
                s.code().unwrap_or("error"),
                s.message().unwrap_or_default()
            ),
            None => format!("{e:?}").chars().take(300).collect(),
        },
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}
fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}
fn get_s(item: &Key, k: &str) -> Option<String> {
    item.get(k).and_then(|v| v.as_s().ok()).cloned()
}
pub(crate) fn get_n(item: &Key, k: &str) -> Option<u64> {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}

/// Table names and their TTL attributes, from the function's environment.
#[derive(Debug, Clone)]
pub struct Tables {
    pub connections: String,
    pub subscriptions: String,
    pub history: String,
    pub counters: String,
    pub ttl: TtlAttributes,
}

impl Tables {
    /// Each table of the layout named by `name`, its TTL attribute by `ttl`.
    pub fn named(
        name: impl Fn(&crate::layout::Table) -> String,
        ttl: impl Fn(&crate::layout::Table) -> String,
    ) -> Tables {
        use crate::layout::{CONNECTIONS, COUNTERS, HISTORY, SUBSCRIPTIONS};
        Tables {
            connections: name(&CONNECTIONS),
            subscriptions: name(&SUBSCRIPTIONS),
            history: name(&HISTORY),
            counters: name(&COUNTERS),
            ttl: TtlAttributes {
                connections: ttl(&CONNECTIONS),
                subscriptions: ttl(&SUBSCRIPTIONS),
                history: ttl(&HISTORY),
                counters: ttl(&COUNTERS),
            },
        }
    }
}

/// The attribute each table's TTL reads (`ttl_attribute` in wsctl.yaml): an item's expiry
/// goes there, or DynamoDB never deletes it ("Time to Live", DynamoDB Developer Guide: TTL
/// deletes an item whose TTL attribute holds an epoch-seconds Number in the past, and ignores
/// items without it).
#[derive(Debug, Clone, PartialEq)]
pub struct TtlAttributes {
    pub connections: String,
    pub subscriptions: String,
    pub history: String,
    pub counters: String,
}

impl Default for TtlAttributes {
    fn default() -> Self {
        let ttl = || crate::layout::DEFAULT_TTL_ATTRIBUTE.to_string();
        TtlAttributes {
            connections: ttl(),
            subscriptions: ttl(),
            history: ttl(),
            counters: ttl(),
        }
    }
}

/// A live connection as `$connect` stored it.
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    pub id: String,
    pub user: String,
    pub capabilities: Capabilities,
    pub connected_at: u64,
}

/// One subscriber of a channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscriber {
    pub connection: String,
    pub user: String,
    /// Receives the channel's messages and events (subscribed, not only present).
    pub listening: bool,
    pub present: bool,
    pub member: Value,
}

/// One bounded read of a channel's history.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryPage {
    pub messages: Vec<Message>,
    /// The read stopped at its count or size limit with more messages left.
    pub more: bool,
    /// Read capacity the read consumed, as DynamoDB reports it.
    pub read_units: f64,
}

#[derive(Clone)]
pub struct Store {
    pub db: Client,
    pub tables: Tables,
    /// How long published messages stay in history.
    pub history_ttl: Duration,
}

/// The counters-table item that orders a connection's numbered publishes. Channel names
/// cannot contain `#`, so no channel's counter has this key.
fn seq_key(connection: &str) -> String {
    format!("#seq:{connection}")
}

/// Why each item of a cancelled transaction failed (`ConditionalCheckFailed`, `TransactionConflict`, `None`, ...).
fn cancellation_codes(
    e: &aws_sdk_dynamodb::error::SdkError<
        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
        aws_sdk_dynamodb::config::http::HttpResponse,
    >,
) -> Vec<String> {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    match e.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(t)) => t
            .cancellation_reasons()
            .iter()
            .filter_map(|r| r.code().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// The partition of the subscriptions table that holds `channel`'s presence members: no
/// channel name contains `#`, so it is no channel's own partition.
pub fn presence_partition(channel: &str) -> String {
    format!("{channel}#presence")
}

/// The channel a partition of the subscriptions table belongs to.
pub fn channel_of(partition: &str) -> &str {
    partition.strip_suffix("#presence").unwrap_or(partition)
}

/// A subscription item and a member item of one channel, as one holding.
fn merged(held: Option<Subscriber>, member: Option<Subscriber>) -> Option<Subscriber> {
    match (held, member) {
        (held, None) => held,
        (None, Some(member)) => Some(member),
        (Some(held), Some(member)) => Some(Subscriber {
            present: true,
            member: member.member,
            ..held
        }),
    }
}

/// Items by partition, as holdings by channel, in channel order.
fn by_channel(items: Vec<(String, Subscriber)>) -> Vec<(String, Subscriber)> {
    let mut out: std::collections::BTreeMap<String, Subscriber> = Default::default();
    for (partition, item) in items {
        let channel = channel_of(&partition).to_string();
        let is_member = channel.len() < partition.len();
        let held = out.remove(&channel);
        let joined = if is_member {
            merged(held, Some(item))
        } else {
            merged(Some(item), held)
        };
        out.insert(channel, joined.expect("one side is there"));
    }
    out.into_iter().collect()
}

fn subscription_key(channel: &str, connection: &str) -> Key {
    HashMap::from([
        (SUB_CHANNEL.to_string(), s(channel)),
        (SUB_CONNECTION.to_string(), s(connection)),
    ])
}

fn subscriber(item: &Key) -> Subscriber {
    Subscriber {
        connection: get_s(item, SUB_CONNECTION).unwrap_or_default(),
        user: get_s(item, "user").unwrap_or_default(),
        // Items written before presence and subscription were told apart are subscriptions.
        listening: item
            .get("listening")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(true),
        present: item
            .get("present")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false),
        member: get_s(item, "member")
            .and_then(|m| serde_json::from_str(&m).ok())
            .unwrap_or(Value::Null),
    }
}

fn message(channel: &str, item: &Key) -> Message {
    Message {
        channel: channel.to_string(),
        serial: get_n(item, HISTORY_SERIAL).unwrap_or_default(),
        id: get_s(item, "id").unwrap_or_default(),
        from: get_s(item, "from").unwrap_or_default(),
        data: get_s(item, "data")
            .and_then(|d| serde_json::from_str(&d).ok())
            .unwrap_or(Value::Null),
        ts: get_n(item, "ts").unwrap_or_default(),
    }
}

/// The message of a duplicate publish whose history item has already expired.
fn placeholder(channel: &str, serial: u64, id: Option<&str>, from: &str, data: &Value) -> Message {
    Message {
        channel: channel.into(),
        serial,
        id: id.unwrap_or_default().into(),
        from: from.into(),
        data: data.clone(),
        ts: 0,
    }
}
