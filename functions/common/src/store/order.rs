//! The counters table's orderings: a connection's numbered publishes in turn, and claims that
//! run a job once.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::auth::now;

use super::*;

impl Store {
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
    pub(super) async fn start_waiting(
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

    pub(super) async fn stop_waiting(&self, connection: &str) {
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
