//! The history table: each channel's messages under consecutive serials, and reading them
//! back.

use std::time::Duration;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{Put, ReturnValue, TransactWriteItem};
use serde_json::Value;

use crate::auth::now;
use crate::protocol::Message;

use super::*;

/// Retries of one message's write at most, however much time is left.
const MAX_RETRIES: u32 = 10;

/// A `ClientRequestToken` (1 to 36 characters) for one message's transaction.
fn request_token() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

impl Store {
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
    /// a different message. No retry of the write starts after `by`.
    pub async fn append(
        &self,
        channel: &str,
        id: Option<&str>,
        from: &str,
        data: &Value,
        by: tokio::time::Instant,
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
        // may answer 5xx or lose the connection. All are safe to retry: the serial this
        // publish took is only kept if its message is written, and one `ClientRequestToken`
        // for every attempt makes a repeat of a transaction that did commit succeed again
        // rather than fail ("Providing a ClientRequestToken makes the call to
        // TransactWriteItems idempotent", ibid.). The SDK's own retries are off for this call
        // (each `send` would otherwise back off for up to three seconds of its own, unseen by
        // the deadline), so every attempt is scheduled here, and none starts after `by`: a
        // hot key is answered in time to tell the publisher when to try again, where waiting
        // on would outlast the function and leave the frame with no answer at all.
        let token = request_token();
        let mut attempt = 0u32;
        let written = loop {
            let result = self
                .db
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .client_request_token(&token)
                .customize()
                .config_override(
                    aws_sdk_dynamodb::config::Builder::default()
                        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled()),
                )
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
                            .is_some_and(super::is_throttling);
                    let lost = matches!(
                        e,
                        SdkError::DispatchFailure(_)
                            | SdkError::TimeoutError(_)
                            | SdkError::ResponseError(_)
                    );
                    !reasons.iter().any(|c| c == "ConditionalCheckFailed")
                        && (throttled
                            || lost
                            || reasons.iter().any(|c| c == "TransactionConflict")
                            || e.raw_response()
                                .is_some_and(|r| r.status().is_server_error()))
                }
                Ok(_) => false,
            };
            if !transient || attempt >= MAX_RETRIES {
                break result;
            }
            attempt += 1;
            let ceiling = Duration::from_millis((10u64 << attempt).min(1000));
            let wait = ceiling.mul_f64(0.5 + fastrand::f64() / 2.0);
            if tokio::time::Instant::now() + wait >= by {
                break result;
            }
            tokio::time::sleep(wait).await;
        };
        match written {
            Ok(_) => Ok((message, false)),
            // A concurrent publish of the same id won the race: its serial is the one. Unless
            // the serial is this publish's own: an attempt whose answer was lost did commit
            // (where the store ignores the request token), and the message is new.
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
                if first == serial {
                    return Ok((message, false));
                }
                Ok((self.message(channel, first).await?.unwrap_or(message), true))
            }
            Err(e) => {
                let throttled = cancellation_codes(&e)
                    .iter()
                    .any(|c| c == "ThrottlingError" || c == "ProvisionedThroughputExceeded");
                let mut error = err("TransactWriteItems", &self.tables.history)(e);
                error.throttled |= throttled;
                Err(error)
            }
        }
    }

    pub(super) async fn first_serial(&self, dedupe_key: &str) -> Result<Option<u64>, StoreError> {
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

    pub(super) async fn message(
        &self,
        channel: &str,
        serial: u64,
    ) -> Result<Option<Message>, StoreError> {
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
}
