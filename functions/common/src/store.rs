//! The DynamoDB data model (documented in `functions/DATA-MODEL.md`). Hot paths are single-item
//! writes and Queries; only `wsctl gc`'s removal of many stale connections at once Scans.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeValue, DeleteRequest, Put, ReturnValue, TransactWriteItem, WriteRequest,
};
use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::Value;

use crate::auth::{Capabilities, now};
use crate::layout::{BY_CONNECTION, CONNECTIONS, COUNTERS, HISTORY, SUBSCRIPTIONS};
use crate::protocol::{Member, Message};

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

impl Store {
    pub async fn put_connection(&self, c: &Connection) -> Result<(), StoreError> {
        let t = &self.tables.connections;
        self.db
            .put_item()
            .table_name(t)
            .item(CONNECTION_ID, s(&c.id))
            .item("user", s(&c.user))
            .item(
                "cap",
                s(serde_json::to_string(&c.capabilities).unwrap_or_default()),
            )
            .item("connected_at", n(c.connected_at))
            .item(&self.tables.ttl.connections, n(now() + CONNECTION_TTL_SECS))
            .send()
            .await
            .map_err(err("PutItem", t))?;
        Ok(())
    }

    pub async fn get_connection(&self, id: &str) -> Result<Option<Connection>, StoreError> {
        let t = &self.tables.connections;
        let got = self
            .db
            .get_item()
            .table_name(t)
            .key(CONNECTION_ID, s(id))
            .send()
            .await
            .map_err(err("GetItem", t))?;
        Ok(got.item.map(|item| Connection {
            id: id.to_string(),
            user: get_s(&item, "user").unwrap_or_default(),
            capabilities: get_s(&item, "cap")
                .and_then(|c| serde_json::from_str(&c).ok())
                .unwrap_or_default(),
            connected_at: get_n(&item, "connected_at").unwrap_or_default(),
        }))
    }

    /// Subscribes a connection to a channel (it then receives the channel's messages): one item.
    pub async fn subscribe(
        &self,
        channel: &str,
        connection: &str,
        user: &str,
    ) -> Result<(), StoreError> {
        let t = &self.tables.subscriptions;
        self.db
            .update_item()
            .table_name(t)
            .key(SUB_CHANNEL, s(channel))
            .key(SUB_CONNECTION, s(connection))
            .update_expression("SET #u = :u, #t = :t, #l = :l")
            .expression_attribute_names("#u", "user")
            .expression_attribute_names("#t", &self.tables.ttl.subscriptions)
            .expression_attribute_names("#l", "listening")
            .expression_attribute_values(":u", s(user))
            .expression_attribute_values(":t", n(now() + CONNECTION_TTL_SECS))
            .expression_attribute_values(":l", AttributeValue::Bool(true))
            .send()
            .await
            .map_err(err("UpdateItem", t))?;
        Ok(())
    }

    /// Enters a channel's presence set with `member` data. The member's item lives in the
    /// channel's presence partition ([`presence_partition`]), apart from its subscribers: a
    /// fan-out reads none of it, and presence alone never receives the channel's messages.
    /// False when the connection was present with the same data already: nothing to announce.
    pub async fn enter_presence(
        &self,
        channel: &str,
        connection: &str,
        user: &str,
        member: &Value,
    ) -> Result<bool, StoreError> {
        let t = &self.tables.subscriptions;
        let member_json = member.to_string();
        let out = self
            .db
            .update_item()
            .table_name(t)
            .key(SUB_CHANNEL, s(presence_partition(channel)))
            .key(SUB_CONNECTION, s(connection))
            .update_expression("SET #u = :u, #t = :t, present = :p, #l = :f, #m = :m")
            .expression_attribute_names("#u", "user")
            .expression_attribute_names("#t", &self.tables.ttl.subscriptions)
            .expression_attribute_names("#l", "listening")
            .expression_attribute_names("#m", "member")
            .expression_attribute_values(":u", s(user))
            .expression_attribute_values(":t", n(now() + CONNECTION_TTL_SECS))
            .expression_attribute_values(":p", AttributeValue::Bool(true))
            .expression_attribute_values(":f", AttributeValue::Bool(false))
            .expression_attribute_values(":m", s(&member_json))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(err("UpdateItem", t))?;
        let old = out.attributes.unwrap_or_default();
        Ok(get_s(&old, "member").as_deref() != Some(member_json.as_str()))
    }

    /// Leaves the presence set; true when the connection was present.
    pub async fn leave_presence(
        &self,
        channel: &str,
        connection: &str,
    ) -> Result<bool, StoreError> {
        if self.delete_member(channel, connection).await?.is_some() {
            return Ok(true);
        }
        self.leave_legacy_presence(channel, connection).await
    }

    /// Deletes the connection's member item of `channel`; returns it as it was.
    async fn delete_member(
        &self,
        channel: &str,
        connection: &str,
    ) -> Result<Option<Subscriber>, StoreError> {
        let t = &self.tables.subscriptions;
        let old = self
            .db
            .delete_item()
            .table_name(t)
            .key(SUB_CHANNEL, s(presence_partition(channel)))
            .key(SUB_CONNECTION, s(connection))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(err("DeleteItem", t))?;
        Ok(old.attributes.map(|item| subscriber(&item)))
    }

    /// Presence entered before member data had items of its own was a flag on the
    /// subscription item (a connection lives two hours at most, so such items are gone two
    /// hours after an upgrade). The item of a connection that was present without being
    /// subscribed goes entirely.
    async fn leave_legacy_presence(
        &self,
        channel: &str,
        connection: &str,
    ) -> Result<bool, StoreError> {
        let t = &self.tables.subscriptions;
        let result = self
            .db
            .update_item()
            .table_name(t)
            .key(SUB_CHANNEL, s(channel))
            .key(SUB_CONNECTION, s(connection))
            .update_expression("REMOVE present, #m")
            .condition_expression("attribute_exists(present)")
            .expression_attribute_names("#m", "member")
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => {
                if out
                    .attributes
                    .as_ref()
                    .is_some_and(|item| !subscriber(item).listening)
                {
                    let deleted = self
                        .db
                        .delete_item()
                        .table_name(t)
                        .key(SUB_CHANNEL, s(channel))
                        .key(SUB_CONNECTION, s(connection))
                        // A subscribe that slipped in between keeps its item.
                        .condition_expression("listening = :f AND attribute_not_exists(present)")
                        .expression_attribute_values(":f", AttributeValue::Bool(false))
                        .send()
                        .await;
                    match deleted {
                        Err(e)
                            if !e
                                .as_service_error()
                                .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                        {
                            return Err(err("DeleteItem", t)(e));
                        }
                        _ => {}
                    }
                }
                Ok(true)
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(err("UpdateItem", t)(e)),
        }
    }

    /// Removes one subscription and the connection's presence in the channel; returns what
    /// it held there, `None` when nothing (to announce a presence leave).
    pub async fn unsubscribe(
        &self,
        channel: &str,
        connection: &str,
    ) -> Result<Option<Subscriber>, StoreError> {
        let t = &self.tables.subscriptions;
        let old = self
            .db
            .delete_item()
            .table_name(t)
            .key(SUB_CHANNEL, s(channel))
            .key(SUB_CONNECTION, s(connection))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(err("DeleteItem", t))?;
        let held = old.attributes.map(|item| subscriber(&item));
        let member = self.delete_member(channel, connection).await?;
        Ok(merged(held, member))
    }

    /// One page of a channel's subscribers, in connection-id order.
    pub async fn subscribers(
        &self,
        channel: &str,
        start: Option<Key>,
        limit: i32,
    ) -> Result<(Vec<Subscriber>, Option<Key>), StoreError> {
        let t = &self.tables.subscriptions;
        let page = self
            .db
            .query()
            .table_name(t)
            .key_condition_expression("#c = :c")
            .expression_attribute_names("#c", SUB_CHANNEL)
            .expression_attribute_values(":c", s(channel))
            .set_exclusive_start_key(start)
            .limit(limit)
            .send()
            .await
            .map_err(err("Query", t))?;
        let subs = page
            .items
            .unwrap_or_default()
            .iter()
            .map(subscriber)
            .collect();
        Ok((subs, page.last_evaluated_key.filter(|k| !k.is_empty())))
    }

    /// Present members of a channel, in connection-id order after `after`: at most `max`, in
    /// at most two pages read, and no more than fit one frame. The second value is where the
    /// next call continues.
    pub async fn members(
        &self,
        channel: &str,
        after: Option<&str>,
        max: usize,
    ) -> Result<(Vec<Member>, Option<String>), StoreError> {
        // Bounded work per call whatever the channel's size: a query reads at most two pages
        // of subscribers and says where to go on.
        const PAGES: usize = 2;
        let budget = crate::protocol::MAX_FRAME_BYTES - 4096;
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut start = after.map(|a| {
            Key::from([
                (SUB_CHANNEL.to_string(), s(channel)),
                (SUB_CONNECTION.to_string(), s(a)),
            ])
        });
        let partition = presence_partition(channel);
        if let Some(k) = start.as_mut() {
            k.insert(SUB_CHANNEL.to_string(), s(&partition));
        }
        for _ in 0..PAGES {
            let (page, next) = self.subscribers(&partition, start.take(), 1000).await?;
            for sub in page {
                if !sub.present {
                    continue;
                }
                let member = Member {
                    user: sub.user,
                    connection: sub.connection,
                    data: sub.member,
                };
                bytes += serde_json::to_string(&member)
                    .map(|m| m.len() + 1)
                    .unwrap_or_default();
                if out.len() == max || bytes > budget {
                    let last = out.last().map(|m: &Member| m.connection.clone());
                    return Ok((out, last));
                }
                out.push(member);
            }
            match next {
                Some(k) => start = Some(k),
                None => return Ok((out, None)),
            }
        }
        Ok((out, start.and_then(|k| get_s(&k, SUB_CONNECTION))))
    }

    /// A connection's items of the subscriptions table, by partition (a channel, or a
    /// channel's presence partition), through the [`BY_CONNECTION`] index.
    async fn items_of(&self, connection: &str) -> Result<Vec<(String, Subscriber)>, StoreError> {
        let t = &self.tables.subscriptions;
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .db
                .query()
                .table_name(t)
                .index_name(BY_CONNECTION.name)
                .key_condition_expression("#c = :c")
                .expression_attribute_names("#c", BY_CONNECTION.partition_key.name)
                .expression_attribute_values(":c", s(connection))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(err("Query", t))?;
            for item in page.items.unwrap_or_default() {
                out.push((
                    get_s(&item, SUB_CHANNEL).unwrap_or_default(),
                    subscriber(&item),
                ));
            }
            match page.last_evaluated_key.filter(|k| !k.is_empty()) {
                Some(k) => start = Some(k),
                None => return Ok(out),
            }
        }
    }

    /// What `connection` holds in each channel: its subscription and its presence, merged.
    pub async fn subscriptions_of(
        &self,
        connection: &str,
    ) -> Result<Vec<(String, Subscriber)>, StoreError> {
        Ok(by_channel(self.items_of(connection).await?))
    }

    /// Removes a connection and every subscription it holds (batched deletes). Returns the
    /// channels where it was present, so a `leave` can be announced there.
    pub async fn remove_connection(
        &self,
        connection: &str,
    ) -> Result<Vec<(String, Subscriber)>, StoreError> {
        let present = self.delete_holdings(connection, true).await?;
        self.delete_connection_item(connection).await?;
        Ok(present)
    }

    /// The first half of a `$disconnect`: deletes the connection's subscriptions, so that no
    /// fan-out posts to it any more, and returns the channels where it is present, whose
    /// member items stay until [`Store::remove_presence`] (after their `leave` went out).
    pub async fn drop_subscriptions(
        &self,
        connection: &str,
    ) -> Result<Vec<(String, Subscriber)>, StoreError> {
        self.delete_holdings(connection, false).await
    }

    /// Deletes the connection's subscription items, and its member items too if `members`;
    /// returns the channels where it was present.
    async fn delete_holdings(
        &self,
        connection: &str,
        members: bool,
    ) -> Result<Vec<(String, Subscriber)>, StoreError> {
        let items = self.items_of(connection).await?;
        let keys = items
            .iter()
            .filter(|(partition, _)| members || channel_of(partition).len() == partition.len())
            .map(|(partition, _)| subscription_key(partition, connection))
            .collect();
        self.delete_keys(&self.tables.subscriptions, keys).await?;
        Ok(by_channel(items)
            .into_iter()
            .filter(|(_, held)| held.present)
            .collect())
    }

    /// The second half: deletes the connection's member items of `channels`, and then, if
    /// `last`, the connection's item. Until that item is gone, `wsctl gc` finds the connection
    /// and finishes what a `$disconnect` left.
    pub async fn remove_presence(
        &self,
        connection: &str,
        channels: impl IntoIterator<Item = &str>,
        last: bool,
    ) -> Result<(), StoreError> {
        let keys = channels
            .into_iter()
            .map(|c| subscription_key(&presence_partition(c), connection))
            .collect();
        self.delete_keys(&self.tables.subscriptions, keys).await?;
        if last {
            self.delete_connection_item(connection).await?;
        }
        Ok(())
    }

    async fn delete_connection_item(&self, connection: &str) -> Result<(), StoreError> {
        // The connection item goes last and on its own: until it is gone, a run cut short
        // half-way leaves the id findable by the next sweep instead of orphaning subscriptions.
        let c = &self.tables.connections;
        self.db
            .delete_item()
            .table_name(c)
            .key(CONNECTION_ID, s(connection))
            .send()
            .await
            .map_err(err("DeleteItem", c))?;
        Ok(())
    }

    /// Removes many connections at once, as [`Store::remove_connection`] does one: their
    /// subscriptions are found by one Scan of the subscriptions table, in `segments` parallel
    /// segments, instead of one index Query per connection, and deleted in batches as the scan
    /// goes; the connection items follow, also in batches, once every subscription is gone.
    /// Reading a table once is cheaper than querying the index for each of many connections
    /// (a Query costs at least 0.5 read unit, a Scan 0.5 per 4 KB read), and it is a handful of
    /// calls instead of one per connection.
    ///
    /// Returns, per connection, the channels where it was present, found so far even when the
    /// removal then failed: those members are gone either way, and their `leave` is due. After
    /// a failure the connection items are all still there (and some subscriptions may be), so
    /// [`Store::remove_connection`] can finish each one.
    pub async fn remove_connections(
        &self,
        connections: &HashSet<String>,
        segments: u32,
    ) -> (
        HashMap<String, Vec<(String, Subscriber)>>,
        Result<(), StoreError>,
    ) {
        let segments = segments.clamp(1, 64) as i32;
        let scans = futures::future::join_all(
            (0..segments).map(|segment| self.remove_subscriptions(connections, segment, segments)),
        )
        .await;
        let mut present: HashMap<String, Vec<(String, Subscriber)>> = HashMap::new();
        let mut failed = None;
        for (found, outcome) in scans {
            for (channel, subscriber) in found {
                present
                    .entry(subscriber.connection.clone())
                    .or_default()
                    .push((channel, subscriber));
            }
            if let Err(e) = outcome {
                failed.get_or_insert(e);
            }
        }
        if let Some(e) = failed {
            return (present, Err(e));
        }
        let keys: Vec<_> = connections
            .iter()
            .map(|id| HashMap::from([(CONNECTION_ID.to_string(), s(id))]))
            .collect();
        let c = &self.tables.connections;
        let deleted = stream::iter(
            keys.chunks(BATCH)
                .map(|chunk| self.delete_keys(c, chunk.to_vec())),
        )
        .buffer_unordered(segments as usize)
        .try_collect::<Vec<()>>()
        .await
        .map(|_| ());
        (present, deleted)
    }

    /// One segment of [`Store::remove_connections`]'s scan: deletes the subscriptions of
    /// `connections` it meets; returns those with presence, and whether it got to the end.
    async fn remove_subscriptions(
        &self,
        connections: &HashSet<String>,
        segment: i32,
        segments: i32,
    ) -> (Vec<(String, Subscriber)>, Result<(), StoreError>) {
        let t = &self.tables.subscriptions;
        let mut present = Vec::new();
        let mut doomed = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .db
                .scan()
                .table_name(t)
                .segment(segment)
                .total_segments(segments)
                // Pages of a thousand keep memory flat however large the table is.
                .limit(1000)
                // A subscription written just before the scan reaches it is read too.
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(err("Scan", t));
            let page = match page {
                Ok(page) => page,
                Err(e) => return (present, Err(e)),
            };
            for item in page.items.unwrap_or_default() {
                let sub = subscriber(&item);
                if !connections.contains(&sub.connection) {
                    continue;
                }
                let partition = get_s(&item, SUB_CHANNEL).unwrap_or_default();
                doomed.push(subscription_key(&partition, &sub.connection));
                if sub.present {
                    present.push((channel_of(&partition).to_string(), sub));
                }
            }
            // Deleting behind the scan does not disturb it: the next page starts after the
            // last key read, whether or not that item is still there.
            if doomed.len() >= BATCH
                && let Err(e) = self.delete_keys(t, std::mem::take(&mut doomed)).await
            {
                return (present, Err(e));
            }
            match page.last_evaluated_key.filter(|k| !k.is_empty()) {
                Some(k) => start = Some(k),
                None => break,
            }
        }
        let outcome = self.delete_keys(t, doomed).await;
        (present, outcome)
    }

    /// Deletes `keys` from `table`, 25 to a BatchWriteItem (its limit), sending again what
    /// DynamoDB returns unprocessed, with backoff.
    async fn delete_keys(
        &self,
        table: &str,
        keys: Vec<HashMap<String, AttributeValue>>,
    ) -> Result<(), StoreError> {
        // Owned batches: a closure over borrowed chunks is not `Send` for every lifetime.
        let batches: Vec<Vec<Key>> = keys.chunks(BATCH).map(<[Key]>::to_vec).collect();
        stream::iter(
            batches
                .into_iter()
                .map(|chunk| self.delete_batch(table, chunk)),
        )
        .buffer_unordered(BATCHES_AT_ONCE)
        .try_collect::<Vec<()>>()
        .await
        .map(drop)
    }

    /// One BatchWriteItem of at most 25 deletes, until DynamoDB has processed them all.
    async fn delete_batch(&self, table: &str, chunk: Vec<Key>) -> Result<(), StoreError> {
        let mut requests: Vec<WriteRequest> = chunk
            .iter()
            .map(|key| {
                WriteRequest::builder()
                    .delete_request(
                        DeleteRequest::builder()
                            .set_key(Some(key.clone()))
                            .build()
                            .expect("key set"),
                    )
                    .build()
            })
            .collect();
        let mut attempt = 0;
        while !requests.is_empty() {
            let out = self
                .db
                .batch_write_item()
                .request_items(table, requests)
                .send()
                .await
                .map_err(err("BatchWriteItem", table))?;
            requests = out
                .unprocessed_items
                .and_then(|mut u| u.remove(table))
                .unwrap_or_default();
            attempt += 1;
            if !requests.is_empty() {
                tokio::time::sleep(Duration::from_millis(20 << attempt.min(6))).await;
            }
        }
        Ok(())
    }

    /// The latest serial of a channel (0 before its first message).
    pub async fn latest_serial(&self, channel: &str) -> Result<u64, StoreError> {
        let t = &self.tables.counters;
        let got = self
            .db
            .get_item()
            .table_name(t)
            .key(COUNTER_KEY, s(channel))
            .consistent_read(true)
            .send()
            .await
            .map_err(err("GetItem", t))?;
        Ok(got.item.and_then(|i| get_n(&i, "serial")).unwrap_or(0))
    }

    /// Stores a message under the next serial of its channel. With a client id, a repeat by
    /// the same publisher returns the first serial and `true` (already published) instead of
    /// storing again. Ids are the publisher's own: another user's publish with the same id is
    /// a different message.
    pub async fn append(
        &self,
        channel: &str,
        id: Option<&str>,
        from: &str,
        data: &Value,
    ) -> Result<(Message, bool), StoreError> {
        let t = &self.tables.counters;
        // Length-prefixed, so no user and id pair can spell another pair's key.
        let dedupe_key = id.map(|id| format!("{channel}#id:{}:{from}:{id}", from.len()));
        if let Some(key) = &dedupe_key
            && let Some(first) = self.first_serial(key).await?
        {
            return Ok((
                self.message(channel, first)
                    .await?
                    .unwrap_or_else(|| placeholder(channel, first, id, from, data)),
                true,
            ));
        }
        let counter = self
            .db
            .update_item()
            .table_name(t)
            .key(COUNTER_KEY, s(channel))
            .update_expression("ADD serial :one")
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(err("UpdateItem", t))?;
        let serial = counter
            .attributes
            .as_ref()
            .and_then(|a| get_n(a, "serial"))
            .unwrap_or(1);
        let ts = now_ms();
        let message = Message {
            channel: channel.to_string(),
            serial,
            id: id
                .map(str::to_string)
                .unwrap_or_else(|| format!("{serial}")),
            from: from.to_string(),
            data: data.clone(),
            ts,
        };
        let expires = now() + self.history_ttl.as_secs();
        let history = Put::builder()
            .table_name(&self.tables.history)
            .item(HISTORY_CHANNEL, s(channel))
            .item(HISTORY_SERIAL, n(serial))
            .item("id", s(&message.id))
            .item("from", s(from))
            .item("data", s(data.to_string()))
            .item("ts", n(ts))
            .item(&self.tables.ttl.history, n(expires))
            .build()
            .expect("table and item set");
        let mut items = vec![TransactWriteItem::builder().put(history).build()];
        if let Some(key) = &dedupe_key {
            let dedupe = Put::builder()
                .table_name(t)
                .item(COUNTER_KEY, s(key))
                .item("serial", n(serial))
                .item(&self.tables.ttl.counters, n(expires))
                .condition_expression("attribute_not_exists(#k)")
                .expression_attribute_names("#k", COUNTER_KEY)
                .build()
                .expect("table and item set");
            items.push(TransactWriteItem::builder().put(dedupe).build());
        }
        // Transactions on one channel conflict under concurrent publishes, DynamoDB throttles
        // a partition or table over its throughput (a `ThrottlingError` cancellation reason,
        // or a throttling error of the call: "TransactWriteItems", DynamoDB API Reference) and
        // may answer 5xx. All are safe to retry, the condition keeps a retry from duplicating,
        // and the serial this publish took is only kept if its message is written: so it is
        // retried, with jittered backoff up to about five seconds in all, rather than lost.
        let mut attempt = 0u32;
        let written = loop {
            let result = self
                .db
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let transient = match &result {
                Err(e) => {
                    let reasons = cancellation_codes(e);
                    let throttled = reasons
                        .iter()
                        .any(|c| c == "ThrottlingError" || c == "ProvisionedThroughputExceeded")
                        || e.as_service_error()
                            .and_then(|s| s.code())
                            .is_some_and(|c| {
                                matches!(
                                    c,
                                    "ThrottlingException"
                                        | "ProvisionedThroughputExceededException"
                                        | "RequestLimitExceeded"
                                )
                            });
                    !reasons.iter().any(|c| c == "ConditionalCheckFailed")
                        && (throttled
                            || reasons.iter().any(|c| c == "TransactionConflict")
                            || e.raw_response()
                                .is_some_and(|r| r.status().is_server_error()))
                }
                Ok(_) => false,
            };
            if !transient || attempt >= 10 {
                break result;
            }
            attempt += 1;
            let ceiling = Duration::from_millis((10u64 << attempt).min(1000));
            tokio::time::sleep(ceiling.mul_f64(0.5 + fastrand::f64() / 2.0)).await;
        };
        match written {
            Ok(_) => Ok((message, false)),
            // A concurrent publish of the same id won the race: its serial is the one.
            Err(e)
                if dedupe_key.is_some()
                    && cancellation_codes(&e)
                        .iter()
                        .any(|c| c == "ConditionalCheckFailed") =>
            {
                let first = self
                    .first_serial(dedupe_key.as_deref().unwrap_or_default())
                    .await?
                    .unwrap_or(serial);
                Ok((self.message(channel, first).await?.unwrap_or(message), true))
            }
            Err(e) => Err(err("TransactWriteItems", &self.tables.history)(e)),
        }
    }

    async fn first_serial(&self, dedupe_key: &str) -> Result<Option<u64>, StoreError> {
        let t = &self.tables.counters;
        let got = self
            .db
            .get_item()
            .table_name(t)
            .key(COUNTER_KEY, s(dedupe_key))
            .consistent_read(true)
            .send()
            .await
            .map_err(err("GetItem", t))?;
        Ok(got.item.and_then(|i| get_n(&i, "serial")))
    }

    async fn message(&self, channel: &str, serial: u64) -> Result<Option<Message>, StoreError> {
        let t = &self.tables.history;
        let got = self
            .db
            .get_item()
            .table_name(t)
            .key(HISTORY_CHANNEL, s(channel))
            .key(HISTORY_SERIAL, n(serial))
            .send()
            .await
            .map_err(err("GetItem", t))?;
        Ok(got.item.map(|i| message(channel, &i)))
    }

    /// Messages after `since`, oldest first, at most `limit` and about `max_bytes` of frame;
    /// or, with `rewind`, the last N within the same bounds.
    ///
    /// Reads are sized by bytes, not only by count: a query reads whole items (a strongly
    /// consistent read costs one unit per 4 KB of them, "Read consumption for Query",
    /// DynamoDB Developer Guide), so it asks for about as many as the bytes still free in the
    /// frame hold at the sizes seen so far, starting from one. A frame of large messages then
    /// reads at most one message it cannot send, not a page of a hundred.
    pub async fn history(
        &self,
        channel: &str,
        since: Option<u64>,
        rewind: Option<u32>,
        limit: u32,
        max_bytes: usize,
    ) -> Result<HistoryPage, StoreError> {
        let t = &self.tables.history;
        let mut out = HistoryPage::default();
        let mut start = None;
        let newest_first = rewind.is_some() && since.is_none();
        let want = if newest_first {
            rewind.unwrap_or(0).min(limit)
        } else {
            limit
        } as usize;
        // Room for the frame's own envelope.
        let mut bytes = 256;
        let (mut seen, mut seen_bytes) = (0usize, 0usize);
        'pages: loop {
            let remaining = want - out.messages.len();
            if remaining == 0 {
                break;
            }
            let fits = match seen {
                0 => 1,
                _ => max_bytes.saturating_sub(bytes) / seen_bytes.div_ceil(seen).max(1),
            };
            let page = self
                .db
                .query()
                .table_name(t)
                .key_condition_expression("#c = :c AND #s > :s")
                .expression_attribute_names("#c", HISTORY_CHANNEL)
                .expression_attribute_names("#s", HISTORY_SERIAL)
                .expression_attribute_values(":c", s(channel))
                .expression_attribute_values(
                    ":s",
                    n(if newest_first { 0 } else { since.unwrap_or(0) }),
                )
                .scan_index_forward(!newest_first)
                .consistent_read(true)
                .limit(remaining.min(fits.clamp(1, 100)) as i32)
                .return_consumed_capacity(aws_sdk_dynamodb::types::ReturnConsumedCapacity::Total)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(err("Query", t))?;
            out.read_units += page
                .consumed_capacity
                .as_ref()
                .and_then(|c| c.capacity_units)
                .unwrap_or_default();
            let next = page.last_evaluated_key.filter(|k| !k.is_empty());
            let items = page.items.unwrap_or_default();
            let count = items.len();
            for (i, item) in items.iter().enumerate() {
                let m = message(channel, item);
                let size = serde_json::to_string(&m)
                    .map(|m| m.len() + 1)
                    .unwrap_or_default();
                (seen, seen_bytes) = (seen + 1, seen_bytes + size);
                bytes += size;
                if bytes > max_bytes {
                    out.more = true;
                    break 'pages;
                }
                out.messages.push(m);
                if out.messages.len() == want {
                    out.more = i + 1 < count || next.is_some();
                    break 'pages;
                }
            }
            match next {
                Some(k) => start = Some(k),
                None => break,
            }
        }
        if newest_first {
            out.messages.reverse();
        }
        Ok(out)
    }

    /// Waits until the connection's publishes numbered below `seq` are stored (its `#seq`
    /// item reached `seq - 1`), or until `deadline` (the frame's arrival plus the patience),
    /// whatever else the connection does meanwhile. A frame more than [`SEQ_WINDOW`] ahead is
    /// not waited for at all, and at most [`MAX_WAITING`] frames of a connection wait at once:
    /// a client cannot pin invocations by numbering far ahead or by sending many gaps.
    pub async fn wait_turn(
        &self,
        connection: &str,
        seq: u64,
        deadline: tokio::time::Instant,
    ) -> Result<Turn, StoreError> {
        let t = &self.tables.counters;
        let mut waiting = false;
        let mut looks = 0u32;
        let turn = loop {
            let got = self
                .db
                .get_item()
                .table_name(t)
                .key(COUNTER_KEY, s(seq_key(connection)))
                .consistent_read(true)
                .send()
                .await
                .map_err(err("GetItem", t));
            let last = match got {
                Ok(got) => got.item.and_then(|i| get_n(&i, "serial")).unwrap_or(0),
                Err(e) if waiting => {
                    self.stop_waiting(connection).await;
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
            if last + 1 >= seq {
                break Turn::Go;
            }
            if !waiting {
                if seq > last + SEQ_WINDOW {
                    return Ok(Turn::TooFar { last });
                }
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if !self.start_waiting(connection, left).await? {
                    return Ok(Turn::Busy);
                }
                waiting = true;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                break Turn::Go;
            }
            // Frames far down the line look much less often, and a long wait slows down: a
            // gap left on purpose costs a handful of reads, not hundreds.
            let gap = (seq - last - 1).min(14) as u32;
            let pause = Duration::from_millis(10) * gap * gap * (1 << looks.min(6));
            looks += 1;
            tokio::time::sleep(pause.min(Duration::from_millis(500)).min(deadline - now)).await;
        };
        if waiting {
            self.stop_waiting(connection).await;
        }
        Ok(turn)
    }

    /// Counts one more waiting frame of the connection, unless [`MAX_WAITING`] already wait.
    /// The count starts over once every earlier waiter's time is up, so a count left behind by
    /// an invocation that died mid-wait costs at most one patience.
    async fn start_waiting(
        &self,
        connection: &str,
        patience: Duration,
    ) -> Result<bool, StoreError> {
        let t = &self.tables.counters;
        let now = now_ms();
        let until = now + patience.as_millis() as u64;
        for fresh in [true, false] {
            let req = self
                .db
                .update_item()
                .table_name(t)
                .key(COUNTER_KEY, s(seq_key(connection)))
                .expression_attribute_names("#t", &self.tables.ttl.counters)
                .expression_attribute_values(":u", n(until))
                .expression_attribute_values(":now", n(now))
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":t", n(now / 1000 + CONNECTION_TTL_SECS));
            let req = if fresh {
                req.update_expression("SET waiting = :one, waiting_until = :u, #t = :t")
                    .condition_expression(
                        "attribute_not_exists(waiting_until) OR waiting_until < :now",
                    )
            } else {
                req.update_expression("ADD waiting :one SET waiting_until = :u, #t = :t")
                    .condition_expression("waiting < :max AND waiting_until >= :now")
                    .expression_attribute_values(":max", n(MAX_WAITING))
            };
            match req.send().await {
                Ok(_) => return Ok(true),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(err("UpdateItem", t)(e)),
            }
        }
        Ok(false)
    }

    async fn stop_waiting(&self, connection: &str) {
        let t = &self.tables.counters;
        let result = self
            .db
            .update_item()
            .table_name(t)
            .key(COUNTER_KEY, s(seq_key(connection)))
            .update_expression("ADD waiting :less")
            .condition_expression("waiting > :zero")
            .expression_attribute_values(":less", AttributeValue::N("-1".into()))
            .expression_attribute_values(":zero", n(0))
            .send()
            .await;
        if let Err(e) = result
            && !e
                .as_service_error()
                .is_some_and(|e| e.is_conditional_check_failed_exception())
        {
            tracing::warn!(error = %err("UpdateItem", t)(e), "could not count a waiter out");
        }
    }

    /// Records that the connection's publish `seq` is done; never moves backwards.
    pub async fn advance_seq(&self, connection: &str, seq: u64) -> Result<(), StoreError> {
        let t = &self.tables.counters;
        let result = self
            .db
            .update_item()
            .table_name(t)
            .key(COUNTER_KEY, s(seq_key(connection)))
            .update_expression("SET serial = :q, #t = :t")
            .condition_expression("attribute_not_exists(serial) OR serial < :q")
            .expression_attribute_names("#t", &self.tables.ttl.counters)
            .expression_attribute_values(":q", n(seq))
            .expression_attribute_values(":t", n(now() + CONNECTION_TTL_SECS))
            .send()
            .await;
        match result {
            Err(e)
                if !e
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(err("UpdateItem", t)(e))
            }
            _ => Ok(()),
        }
    }

    /// Claims fan-out job `job` for the invocation `request`. False when another invocation
    /// holds it: a duplicate hand-off, which must not deliver (or hand on) a second time. A
    /// retry of the same asynchronous event keeps its request id and gets the claim again.
    pub async fn claim_job(&self, job: &str, request: &str) -> Result<bool, StoreError> {
        let t = &self.tables.counters;
        let result = self
            .db
            .put_item()
            .table_name(t)
            .item(COUNTER_KEY, s(format!("#fanout:{job}")))
            .item("request", s(request))
            .item(&self.tables.ttl.counters, n(now() + 3600))
            .condition_expression("attribute_not_exists(#k) OR #r = :r")
            .expression_attribute_names("#k", COUNTER_KEY)
            .expression_attribute_names("#r", "request")
            .expression_attribute_values(":r", s(request))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(err("PutItem", t)(e)),
        }
    }
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
