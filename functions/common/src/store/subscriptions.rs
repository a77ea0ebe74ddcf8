//! The subscriptions table: a channel's subscribers, a connection's channels, and batched
//! deletes.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, ReturnValue, WriteRequest};
use futures::stream::{self, StreamExt, TryStreamExt};

use crate::auth::now;
use crate::layout::BY_CONNECTION;

use super::*;

impl Store {
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

    /// Where a read of `channel` that stopped after `connection` goes on from: the key
    /// DynamoDB would have given as `LastEvaluatedKey` there.
    pub fn after(&self, channel: &str, connection: &str) -> Key {
        Key::from([
            (SUB_CHANNEL.to_string(), s(channel)),
            (SUB_CONNECTION.to_string(), s(connection)),
        ])
    }

    /// A connection's items of the subscriptions table, by partition (a channel, or a
    /// channel's presence partition), through the [`BY_CONNECTION`] index.
    pub(super) async fn items_of(
        &self,
        connection: &str,
    ) -> Result<Vec<(String, Subscriber)>, StoreError> {
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
    pub(super) async fn delete_holdings(
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

    /// One segment of [`Store::remove_connections`]'s scan: deletes the subscriptions of
    /// `connections` it meets; returns those with presence, and whether it got to the end.
    pub(super) async fn remove_subscriptions(
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
    pub(super) async fn delete_keys(
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
    pub(super) async fn delete_batch(
        &self,
        table: &str,
        chunk: Vec<Key>,
    ) -> Result<(), StoreError> {
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
}
