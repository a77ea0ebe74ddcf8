//! Per-client limits (`limits:` in wsctl.yaml): what one connection or one user may use, so that
//! one client using its grant too much cannot take the stage's throttle, the account's Lambda
//! concurrency or a table partition from everyone else.
//!
//! Rates are token buckets kept as a GCRA "theoretical arrival time" per bucket: one number,
//! the time at which the bucket would be full again. API Gateway hands a connection's frames to
//! any warm instance, so the state lives in the counters table, one small item per connection
//! and per user. Checking reads it (strongly consistent, one read unit) and a frame that passes
//! writes it back conditionally on the version it read: one write unit per limited frame, none
//! for a refused one, which therefore has no effect at all.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use crate::store::{Key, Store, StoreError, err, get_n};

/// A sustained rate with a burst.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Sustained, per second.
    pub per_second: f64,
    /// How many at once after a quiet spell.
    pub burst: u64,
}

impl Rate {
    pub const fn new(per_second: f64, burst: u64) -> Rate {
        Rate { per_second, burst }
    }
}

/// The stage's per-client limits. Every function that enforces them reads the same values
/// (`WSCTL_LIMITS`), and all their instances share the state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Frames one connection may send, of every action (`ping`, malformed and refused frames
    /// too): each is a Lambda invocation and counts against the stage's throttle.
    pub frames: Rate,
    /// Publishes one user may make, over all of their connections.
    pub publishes: Rate,
    /// Bytes of `data` one user may publish, over all of their connections. The burst must
    /// hold one publish of the largest size (122,880 bytes).
    pub publish_bytes: Rate,
    /// Presence `enter`s and `leave`s one connection may send.
    pub presence: Rate,
    /// Open connections one user may hold; the next handshake is refused with 429.
    pub connections_per_user: u32,
    /// Channels one connection may be subscribed (or present) in at once.
    pub subscriptions_per_connection: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            frames: Rate::new(10.0, 20),
            publishes: Rate::new(20.0, 40),
            publish_bytes: Rate::new(65_536.0, 262_144),
            presence: Rate::new(1.0, 5),
            connections_per_user: 50,
            subscriptions_per_connection: 100,
        }
    }
}

/// The environment variable carrying the limits (compact JSON) to the functions.
pub const LIMITS_ENV: &str = "WSCTL_LIMITS";

/// The largest `connections_per_user`: the user's connections are one item of at most 400 KB.
pub const MAX_CONNECTIONS_PER_USER: u32 = 1000;
/// The largest `subscriptions_per_connection`: `$disconnect` removes them all in one run.
pub const MAX_SUBSCRIPTIONS_PER_CONNECTION: u32 = 1000;

impl Limits {
    /// Each value outside what the functions can honour: `(field under limits, problem)`.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (name, rate) in [
            ("frames", self.frames),
            ("publishes", self.publishes),
            ("publish_bytes", self.publish_bytes),
            ("presence", self.presence),
        ] {
            if !(rate.per_second.is_finite() && rate.per_second > 0.0) {
                out.push((
                    format!("{name}.per_second"),
                    format!("is {}; use a positive number", rate.per_second),
                ));
            }
            if rate.burst == 0 {
                out.push((
                    format!("{name}.burst"),
                    "is 0, which refuses everything; use 1 or more".into(),
                ));
            }
        }
        let largest = crate::protocol::MAX_DATA_BYTES as u64;
        if self.publish_bytes.burst < largest {
            out.push((
                "publish_bytes.burst".into(),
                format!(
                    "is {}, less than the largest publish ({largest} bytes), which could then never be sent; use {largest} or more",
                    self.publish_bytes.burst
                ),
            ));
        }
        for (name, value, max) in [
            (
                "connections_per_user",
                self.connections_per_user,
                MAX_CONNECTIONS_PER_USER,
            ),
            (
                "subscriptions_per_connection",
                self.subscriptions_per_connection,
                MAX_SUBSCRIPTIONS_PER_CONNECTION,
            ),
        ] {
            if value == 0 || value > max {
                out.push((name.into(), format!("is {value}; use 1-{max}")));
            }
        }
        out
    }

    /// From `WSCTL_LIMITS`; the defaults when it is unset (a stack deployed before limits
    /// existed) or unreadable (logged: the function keeps the safe defaults).
    pub fn from_var(value: Option<&str>) -> Limits {
        match value.map(serde_json::from_str::<Limits>) {
            None => Limits::default(),
            Some(Ok(limits)) => limits,
            Some(Err(e)) => {
                tracing::error!(error = %e, "{LIMITS_ENV} is unreadable; using the default limits");
                Limits::default()
            }
        }
    }
}

/// Admits `cost` units into a bucket whose theoretical arrival time is `tat` (µs since the
/// epoch), at `now`: the new arrival time, or how long (µs) until the cost would fit.
pub fn admit(tat: u64, now: u64, rate: Rate, cost: u64) -> Result<u64, u64> {
    let interval = 1e6 / rate.per_second;
    let tolerance = interval * rate.burst as f64;
    let next = tat.max(now) as f64 + interval * cost as f64;
    let over = next - now as f64 - tolerance;
    if over > 0.0 {
        Err(over.ceil() as u64)
    } else {
        Ok(next as u64)
    }
}

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The limit, as wsctl.yaml names it.
    pub limit: &'static str,
    pub retry_after_ms: u64,
}

/// Refused frames of one connection, as one instance saw them: a client that keeps sending
/// after `rate_limited` is closed rather than served refusals, since each refusal still costs
/// an invocation and a share of the stage's throttle that the other clients need.
#[derive(Default)]
pub struct FloodWatch {
    seen: std::sync::Mutex<HashMap<String, (u32, std::time::Instant)>>,
}

/// The window refusals are counted in.
pub const FLOOD_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);
/// Connections one instance keeps counts for.
const WATCHED: usize = 10_000;

impl FloodWatch {
    /// Counts one refused frame of `connection`: whether it has now been refused more than
    /// `max` times within [`FLOOD_WINDOW`].
    pub fn refused(&self, connection: &str, max: u32) -> bool {
        let mut seen = self.seen.lock().unwrap();
        if seen.len() >= WATCHED && !seen.contains_key(connection) {
            seen.retain(|_, (_, since)| since.elapsed() < FLOOD_WINDOW);
            if seen.len() >= WATCHED {
                seen.clear();
            }
        }
        let entry = seen
            .entry(connection.to_string())
            .or_insert((0, std::time::Instant::now()));
        if entry.1.elapsed() >= FLOOD_WINDOW {
            *entry = (0, std::time::Instant::now());
        }
        entry.0 += 1;
        entry.0 > max
    }
}

impl Limits {
    /// Refused frames within [`FLOOD_WINDOW`] past which a connection is closed: far more
    /// than a client waiting `retry_after_ms` with a few frames in flight is ever refused.
    pub fn flood_refusals(&self) -> u32 {
        (self.frames.burst.saturating_mul(5)).clamp(50, 10_000) as u32
    }
}

/// A limit item's attribute: the item is kept at least until then (epoch seconds).
pub const KEEP: &str = "keep";

/// How many times a check re-reads when another instance wrote the same item meanwhile.
const ATTEMPTS: u32 = 5;

fn micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}

fn num(item: &Key, k: &str) -> u64 {
    get_n(item, k).unwrap_or(0)
}

fn conditional_failed<E: ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("ConditionalCheckFailedException")
}

impl Store {
    /// Takes `cost` from each named bucket of the limit item `key` (`(bucket, rate, cost,
    /// limit name)`), all or nothing.
    pub async fn take(
        &self,
        key: &str,
        buckets: &[(&'static str, Rate, u64)],
    ) -> Result<Result<(), Refusal>, StoreError> {
        Ok(self.take_reading(key, buckets).await?.0)
    }

    /// As [`Store::take`], with the item as it was read: what else it holds (a connection's
    /// renewed token, [`crate::session`]) costs no read of its own. The item is kept at least
    /// until its `keep` attribute.
    pub async fn take_reading(
        &self,
        key: &str,
        buckets: &[(&'static str, Rate, u64)],
    ) -> Result<(Result<(), Refusal>, Key), StoreError> {
        let t = &self.tables.counters;
        let key_name = crate::layout::COUNTERS.partition_key.name;
        for _ in 0..ATTEMPTS {
            let item = self
                .db
                .get_item()
                .table_name(t)
                .key(key_name, AttributeValue::S(key.into()))
                .consistent_read(true)
                .send()
                .await
                .map_err(err("GetItem", t))?
                .item
                .unwrap_or_default();
            let now = micros();
            let mut next = Vec::with_capacity(buckets.len());
            let mut refused: Option<Refusal> = None;
            for (bucket, rate, cost) in buckets {
                match admit(num(&item, bucket), now, *rate, *cost) {
                    Ok(tat) => next.push((*bucket, tat)),
                    Err(wait) => {
                        let retry_after_ms = wait.div_ceil(1000);
                        if refused
                            .as_ref()
                            .is_none_or(|r| r.retry_after_ms < retry_after_ms)
                        {
                            refused = Some(Refusal {
                                limit: bucket,
                                retry_after_ms,
                            });
                        }
                    }
                }
            }
            if let Some(r) = refused {
                return Ok((Err(r), item));
            }
            let version = num(&item, "v");
            // The item is of no use once every bucket is full again, and what it keeps is
            // no longer needed.
            let idle = (next.iter().map(|(_, tat)| *tat).max().unwrap_or(now) / 1_000_000 + 60)
                .max(num(&item, KEEP));
            let mut update = "SET v = :v1, #t = :t".to_string();
            let mut values: HashMap<String, AttributeValue> = HashMap::from([
                (":v1".into(), AttributeValue::N((version + 1).to_string())),
                (":t".into(), AttributeValue::N(idle.to_string())),
            ]);
            let mut names = HashMap::from([("#t".to_string(), self.tables.ttl.counters.clone())]);
            for (i, (bucket, tat)) in next.iter().enumerate() {
                update.push_str(&format!(", #b{i} = :b{i}"));
                names.insert(format!("#b{i}"), bucket.to_string());
                values.insert(format!(":b{i}"), AttributeValue::N(tat.to_string()));
            }
            let condition = if item.is_empty() {
                "attribute_not_exists(v)".to_string()
            } else {
                values.insert(":v0".into(), AttributeValue::N(version.to_string()));
                "v = :v0".to_string()
            };
            let written = self
                .db
                .update_item()
                .table_name(t)
                .key(key_name, AttributeValue::S(key.into()))
                .update_expression(update)
                .condition_expression(condition)
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(Some(values))
                .send()
                .await;
            match written {
                Ok(_) => return Ok((Ok(()), item)),
                Err(e) if e.as_service_error().is_some_and(conditional_failed) => continue,
                Err(e) => return Err(err("UpdateItem", t)(e)),
            }
        }
        // Another instance won every race: this client is sending a great deal at once.
        let refusal = Refusal {
            limit: buckets.first().map_or("frames", |b| b.0),
            retry_after_ms: 100,
        };
        Ok((Err(refusal), Key::new()))
    }

    /// Records one more open connection of `user`, unless `max` are open. A connection's
    /// entry lapses at API Gateway's 2-hour limit even if its `$disconnect` never runs.
    pub async fn open_connection(
        &self,
        user: &str,
        connection: &str,
        max: u32,
    ) -> Result<bool, StoreError> {
        let t = &self.tables.counters;
        let key_name = crate::layout::COUNTERS.partition_key.name;
        let key = user_connections_key(user);
        for _ in 0..ATTEMPTS {
            let (item, open) = self.user_connections(user).await?;
            let now = crate::auth::now();
            let mut live: HashMap<String, AttributeValue> = open
                .iter()
                .filter(|(_, exp)| **exp > now)
                .map(|(id, exp)| (id.clone(), AttributeValue::N(exp.to_string())))
                .collect();
            if live.len() >= max as usize && !live.contains_key(connection) {
                return Ok(false);
            }
            live.insert(
                connection.into(),
                AttributeValue::N((now + CONNECTION_LIFETIME_SECS).to_string()),
            );
            let version = num(&item, "v");
            let mut put = self
                .db
                .put_item()
                .table_name(t)
                .item(key_name, AttributeValue::S(key.clone()))
                .item("c", AttributeValue::M(live))
                .item("v", AttributeValue::N((version + 1).to_string()))
                .item(
                    &self.tables.ttl.counters,
                    AttributeValue::N((now + CONNECTION_LIFETIME_SECS + 60).to_string()),
                );
            put = if item.is_empty() {
                put.condition_expression("attribute_not_exists(v)")
            } else {
                put.condition_expression("v = :v0")
                    .expression_attribute_values(":v0", AttributeValue::N(version.to_string()))
            };
            match put.send().await {
                Ok(_) => return Ok(true),
                Err(e) if e.as_service_error().is_some_and(conditional_failed) => continue,
                Err(e) => return Err(err("PutItem", t)(e)),
            }
        }
        Ok(false)
    }

    /// The connections `user` holds (opened through the authorizer, not yet closed or past
    /// API Gateway's 2-hour limit).
    pub async fn connections_of(&self, user: &str) -> Result<Vec<String>, StoreError> {
        let now = crate::auth::now();
        let (_, open) = self.user_connections(user).await?;
        let mut ids: Vec<String> = open
            .into_iter()
            .filter(|(_, exp)| *exp > now)
            .map(|(id, _)| id)
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// `user`'s connection list as stored (strongly consistent): the item, and each entry's
    /// connection id with the time it lapses.
    async fn user_connections(
        &self,
        user: &str,
    ) -> Result<(Key, HashMap<String, u64>), StoreError> {
        let t = &self.tables.counters;
        let item = self
            .db
            .get_item()
            .table_name(t)
            .key(
                crate::layout::COUNTERS.partition_key.name,
                AttributeValue::S(user_connections_key(user)),
            )
            .consistent_read(true)
            .send()
            .await
            .map_err(err("GetItem", t))?
            .item
            .unwrap_or_default();
        let open = item
            .get("c")
            .and_then(|c| c.as_m().ok())
            .map(|m| {
                m.iter()
                    .filter_map(|(id, exp)| Some((id.clone(), exp.as_n().ok()?.parse().ok()?)))
                    .collect()
            })
            .unwrap_or_default();
        Ok((item, open))
    }

    /// Forgets one of `user`'s open connections.
    pub async fn close_connection(&self, user: &str, connection: &str) -> Result<(), StoreError> {
        let t = &self.tables.counters;
        let result = self
            .db
            .update_item()
            .table_name(t)
            .key(
                crate::layout::COUNTERS.partition_key.name,
                AttributeValue::S(user_connections_key(user)),
            )
            .update_expression("REMOVE c.#id")
            .condition_expression("attribute_exists(c)")
            .expression_attribute_names("#id", connection)
            .send()
            .await;
        match result {
            Err(e) if !e.as_service_error().is_some_and(conditional_failed) => {
                Err(err("UpdateItem", t)(e))
            }
            _ => Ok(()),
        }
    }
}

impl Store {
    /// Whether `connection` may hold one more channel (subscribed or present) besides the ones
    /// it has: fewer than `max` so far, or `channel` is one of them already. Read through the
    /// by-connection index, which holds a subscription item and a member item per channel at
    /// most: `2 × max` keys are enough to answer, and only `subscribe` and presence `enter`
    /// pay for them.
    pub async fn may_hold_channel(
        &self,
        connection: &str,
        channel: &str,
        max: u32,
    ) -> Result<bool, StoreError> {
        use crate::layout::{BY_CONNECTION, SUBSCRIPTIONS};
        let t = &self.tables.subscriptions;
        let cap = 2 * max as usize;
        let mut held = std::collections::BTreeSet::new();
        let (mut read, mut start) = (0usize, None);
        loop {
            let page = self
                .db
                .query()
                .table_name(t)
                .index_name(BY_CONNECTION.name)
                .key_condition_expression("#c = :c")
                .expression_attribute_names("#c", BY_CONNECTION.partition_key.name)
                .expression_attribute_names("#ch", SUBSCRIPTIONS.partition_key.name)
                .expression_attribute_values(":c", AttributeValue::S(connection.into()))
                .projection_expression("#ch")
                .limit((cap - read).max(1) as i32)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(err("Query", t))?;
            for item in page.items.unwrap_or_default() {
                read += 1;
                if let Some(AttributeValue::S(partition)) =
                    item.get(SUBSCRIPTIONS.partition_key.name)
                {
                    held.insert(crate::store::channel_of(partition).to_string());
                }
            }
            match page.last_evaluated_key.filter(|k| !k.is_empty()) {
                Some(k) if read < cap => start = Some(k),
                _ => break,
            }
        }
        Ok(held.contains(channel) || held.len() < max as usize)
    }
}

/// API Gateway closes every connection after 2 hours ("Amazon API Gateway quotas": connection
/// duration for WebSocket APIs, not adjustable).
pub const CONNECTION_LIFETIME_SECS: u64 = 2 * 3600;

/// The limit item of one connection's frames and presence updates.
pub fn connection_key(connection: &str) -> String {
    format!("#limit:c:{connection}")
}

/// The limit item of one user's publishes.
pub fn user_key(user: &str) -> String {
    format!("#limit:u:{user}")
}

fn user_connections_key(user: &str) -> String {
    format!("#conns:{user}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000;

    #[test]
    fn a_bucket_lets_its_burst_through_then_its_rate() {
        let rate = Rate::new(10.0, 20);
        let now = 1_000 * SECOND;
        let mut tat = 0;
        for i in 0..20 {
            tat = admit(tat, now, rate, 1).unwrap_or_else(|_| panic!("burst frame {i}"));
        }
        let wait = admit(tat, now, rate, 1).unwrap_err();
        assert_eq!(wait, SECOND / 10, "the 21st waits one interval");
        // A tenth of a second later, one more fits, and only one.
        let later = now + SECOND / 10;
        let tat = admit(tat, later, rate, 1).unwrap();
        assert!(admit(tat, later, rate, 1).is_err());
        // After a quiet spell, the whole burst again, never more.
        let idle = later + 60 * SECOND;
        let mut tat2 = tat;
        for _ in 0..20 {
            tat2 = admit(tat2, idle, rate, 1).unwrap();
        }
        assert!(admit(tat2, idle, rate, 1).is_err());
    }

    #[test]
    fn a_cost_is_taken_whole_or_not_at_all() {
        let bytes = Limits::default().publish_bytes;
        let now = 1_000 * SECOND;
        let big = crate::protocol::MAX_DATA_BYTES as u64;
        let tat = admit(0, now, bytes, big).expect("one publish of the largest size");
        let tat = admit(tat, now, bytes, big).expect("and a second one, within the burst");
        let wait = admit(tat, now, bytes, big).unwrap_err();
        // The third needs the bytes the burst lacks, at 64 KiB a second.
        let lacking = 3 * big - bytes.burst;
        assert_eq!(
            wait,
            (lacking as f64 / bytes.per_second * 1e6).ceil() as u64
        );
        assert!(admit(0, now, bytes, bytes.burst + 1).is_err());
    }

    #[test]
    fn the_defaults_are_valid_and_nonsense_is_named() {
        assert_eq!(Limits::default().problems(), Vec::<(String, String)>::new());
        let bad = Limits {
            frames: Rate::new(0.0, 0),
            publish_bytes: Rate::new(1000.0, 1000),
            connections_per_user: 0,
            subscriptions_per_connection: 5000,
            ..Limits::default()
        };
        let fields: Vec<String> = bad.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "frames.per_second",
                "frames.burst",
                "publish_bytes.burst",
                "connections_per_user",
                "subscriptions_per_connection"
            ]
        );
        let partial: Limits =
            serde_json::from_str(r#"{"frames":{"per_second":5,"burst":5}}"#).unwrap();
        assert_eq!(partial.frames, Rate::new(5.0, 5));
        assert_eq!(
            partial.publishes,
            Limits::default().publishes,
            "the rest keep their defaults"
        );
        assert_eq!(Limits::from_var(None), Limits::default());
        assert_eq!(Limits::from_var(Some("{nonsense")), Limits::default());
    }
}
