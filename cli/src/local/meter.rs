//! What the local stack would be billed for on AWS, and how much of Lambda's concurrency it
//! used, counted as it runs and served at `GET /_wsctl/stats` (`?reset=1` starts a new count).
//!
//! - Lambda: each function's requests and billed duration (its run rounded up to the
//!   millisecond, as Lambda bills it) times its memory, in GB-seconds; the invocations in flight
//!   (queued or running: on Lambda each would hold an execution environment) and their peak,
//!   which `--like-aws` bounds by `--lambda-concurrency`.
//! - API Gateway: WebSocket messages, each frame a client sends and each `@connections` post
//!   counted in 32 KB steps as API Gateway meters them, and connection-minutes.
//! - DynamoDB, under `--like-aws` (`partitions.rs`): read and write request units, and calls
//!   refused for a partition's throughput.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

/// API Gateway meters WebSocket messages in 32 KB increments ("Amazon API Gateway pricing").
const MESSAGE_STEP: usize = 32 * 1024;

#[derive(Default)]
struct Function {
    requests: u64,
    billed_ms: u64,
    memory_mb: u64,
}

#[derive(Default)]
pub struct Meter {
    running: AtomicU64,
    peak: AtomicU64,
    /// Synchronous invocations refused, and asynchronous ones that waited, for concurrency.
    throttled: AtomicU64,
    functions: Mutex<BTreeMap<String, Function>>,
    messages: AtomicU64,
    /// Connection time of connections already closed, in milliseconds.
    closed_ms: AtomicU64,
    /// Epoch ms of the last reset: connection time before it is not counted.
    since_ms: AtomicU64,
    /// DynamoDB's request units are counted (only the calls `--like-aws` sees are).
    dynamodb_metered: AtomicBool,
    /// Read and write request units.
    dynamodb_units: Mutex<(f64, f64)>,
    dynamodb_throttled: AtomicU64,
    /// What the emulator's CloudWatch has not been told yet (`cloudwatch.rs`); a reset of the
    /// stats leaves it.
    unreported: Mutex<Report>,
}

/// Counts since the last report to the emulator's CloudWatch.
#[derive(Default, Debug, PartialEq)]
pub struct Report {
    /// Connects sent to the `$connect` integration (API Gateway's `ConnectCount`).
    pub connects: u64,
    /// Messages either way (API Gateway's `MessageCount`).
    pub messages: u64,
    /// By function name.
    pub functions: BTreeMap<String, Invocations>,
}

#[derive(Default, Debug, PartialEq)]
pub struct Invocations {
    pub count: u64,
    /// Invocations that answered with an error.
    pub errors: u64,
    pub longest_ms: f64,
}

/// One invocation in flight, until dropped.
pub struct Running(Arc<Meter>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Meter {
    pub fn new(now_ms: u64) -> Meter {
        let m = Meter::default();
        m.since_ms.store(now_ms, Ordering::SeqCst);
        m
    }

    /// An invocation starts, when fewer than `limit` are in flight.
    pub fn enter(self: &Arc<Self>, limit: u64) -> Option<Running> {
        let now = self
            .running
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()?
            + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        Some(Running(self.clone()))
    }

    /// As [`Meter::enter`], waiting for room: an asynchronous invocation stays in Lambda's
    /// queue while the account has no concurrency left. Counted as throttled when it waited.
    pub async fn enter_when_free(self: &Arc<Self>, limit: u64) -> Running {
        if let Some(r) = self.enter(limit) {
            return r;
        }
        self.throttled.fetch_add(1, Ordering::SeqCst);
        loop {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if let Some(r) = self.enter(limit) {
                return r;
            }
        }
    }

    pub fn refused(&self) {
        self.throttled.fetch_add(1, Ordering::SeqCst);
    }

    /// One request of `function` ran for `ran`.
    pub fn bill(&self, function: &str, memory_mb: u64, ran: Duration) {
        let mut functions = self.functions.lock().unwrap();
        let f = functions.entry(function.to_string()).or_default();
        f.requests += 1;
        f.billed_ms += billed_ms(ran);
        f.memory_mb = memory_mb;
        let mut report = self.unreported.lock().unwrap();
        let i = report.functions.entry(function.to_string()).or_default();
        i.count += 1;
        i.longest_ms = i.longest_ms.max(ran.as_secs_f64() * 1000.0);
    }

    /// One request of `function` answered with an error.
    pub fn failed(&self, function: &str) {
        let mut report = self.unreported.lock().unwrap();
        report
            .functions
            .entry(function.to_string())
            .or_default()
            .errors += 1;
    }

    /// A connect went to the `$connect` integration.
    pub fn connect(&self) {
        self.unreported.lock().unwrap().connects += 1;
    }

    /// What happened since the last call.
    pub fn take_report(&self) -> Report {
        std::mem::take(&mut *self.unreported.lock().unwrap())
    }

    /// DynamoDB's request units will be counted.
    pub fn meter_dynamodb(&self) {
        self.dynamodb_metered.store(true, Ordering::SeqCst);
    }

    /// A DynamoDB call consumed `units` request units, read or write.
    pub fn dynamodb(&self, write: bool, units: f64) {
        let mut u = self.dynamodb_units.lock().unwrap();
        match write {
            false => u.0 += units,
            true => u.1 += units,
        }
    }

    /// A DynamoDB call was refused for a partition's throughput.
    pub fn dynamodb_throttled(&self) {
        self.dynamodb_throttled.fetch_add(1, Ordering::Relaxed);
    }

    /// A WebSocket message of `bytes` either way.
    pub fn message(&self, bytes: usize) {
        self.messages.fetch_add(
            bytes.div_ceil(MESSAGE_STEP).max(1) as u64,
            Ordering::Relaxed,
        );
        self.unreported.lock().unwrap().messages += 1;
    }

    /// A connection that was open from `from_ms` to `to_ms` closed.
    pub fn closed(&self, from_ms: u64, to_ms: u64) {
        let from = from_ms.max(self.since_ms.load(Ordering::SeqCst));
        self.closed_ms
            .fetch_add(to_ms.saturating_sub(from), Ordering::Relaxed);
    }

    /// The counts so far; `open_since` are the open connections' start times (epoch ms).
    pub fn stats(&self, limit: Option<u64>, open_since: &[u64], now_ms: u64) -> Value {
        let since = self.since_ms.load(Ordering::SeqCst);
        let open_ms: u64 = open_since
            .iter()
            .map(|&at| now_ms.saturating_sub(at.max(since)))
            .sum();
        let connection_ms = self.closed_ms.load(Ordering::Relaxed) + open_ms;
        let functions: BTreeMap<String, Value> = self
            .functions
            .lock()
            .unwrap()
            .iter()
            .map(|(name, f)| {
                let gb_seconds = f.billed_ms as f64 / 1000.0 * f.memory_mb as f64 / 1024.0;
                (
                    name.clone(),
                    json!({
                        "requests": f.requests,
                        "billed_ms": f.billed_ms,
                        "memory_mb": f.memory_mb,
                        "gb_seconds": gb_seconds,
                    }),
                )
            })
            .collect();
        let (read_units, write_units) = *self.dynamodb_units.lock().unwrap();
        let dynamodb = self.dynamodb_metered.load(Ordering::SeqCst).then(|| {
            json!({
                "read_units": read_units,
                "write_units": write_units,
                "throttled": self.dynamodb_throttled.load(Ordering::Relaxed),
            })
        });
        json!({
            "seconds": now_ms.saturating_sub(since) as f64 / 1000.0,
            "lambda": {
                "in_flight": self.running.load(Ordering::SeqCst),
                "peak_concurrency": self.peak.load(Ordering::SeqCst),
                "concurrency_limit": limit,
                "throttled": self.throttled.load(Ordering::SeqCst),
                "functions": functions,
            },
            "api_gateway": {
                "messages": self.messages.load(Ordering::Relaxed),
                "connection_minutes": connection_ms as f64 / 60_000.0,
            },
            "dynamodb": dynamodb,
        })
    }

    /// Starts a new count (the invocations in flight stay counted as in flight).
    pub fn reset(&self, now_ms: u64) {
        self.peak
            .store(self.running.load(Ordering::SeqCst), Ordering::SeqCst);
        self.throttled.store(0, Ordering::SeqCst);
        self.functions.lock().unwrap().clear();
        self.messages.store(0, Ordering::Relaxed);
        self.closed_ms.store(0, Ordering::Relaxed);
        *self.dynamodb_units.lock().unwrap() = (0.0, 0.0);
        self.dynamodb_throttled.store(0, Ordering::Relaxed);
        self.since_ms.store(now_ms, Ordering::SeqCst);
    }
}

/// Lambda bills duration rounded up to the nearest millisecond.
fn billed_ms(ran: Duration) -> u64 {
    let us = ran.as_micros() as u64;
    us.div_ceil(1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn billing_rounds_as_aws_does_and_concurrency_is_bounded() {
        let m = Arc::new(Meter::new(0));
        m.bill("publish", 512, Duration::from_micros(1_200));
        m.bill("publish", 512, Duration::from_micros(999_001));
        m.message(10);
        m.message(32 * 1024);
        m.message(32 * 1024 + 1);
        m.closed(0, 90_000);
        let a = m.enter(2).expect("room");
        let b = m.enter(2).expect("room");
        assert!(m.enter(2).is_none(), "the limit is reached");
        drop(a);
        let _c = m.enter(2).expect("room again");
        drop(b);
        let s = m.stats(Some(2), &[60_000], 120_000);
        let f = &s["lambda"]["functions"]["publish"];
        assert_eq!(f["requests"], 2);
        assert_eq!(f["billed_ms"], 2 + 1000);
        assert_eq!(f["gb_seconds"], 1.002 * 0.5);
        assert_eq!(s["lambda"]["peak_concurrency"], 2);
        assert_eq!(s["lambda"]["in_flight"], 1);
        assert_eq!(s["api_gateway"]["messages"], 1 + 1 + 2);
        assert_eq!(s["api_gateway"]["connection_minutes"], 2.5);
        assert!(s["dynamodb"].is_null(), "not metered unless asked");
        m.meter_dynamodb();
        m.dynamodb(false, 0.5);
        m.dynamodb(true, 2.0);
        m.dynamodb_throttled();
        let d = &m.stats(None, &[], 120_000)["dynamodb"];
        assert_eq!(
            (d["read_units"].clone(), d["write_units"].clone()),
            (json!(0.5), json!(2.0))
        );
        assert_eq!(d["throttled"], 1);
        m.reset(120_000);
        let s = m.stats(None, &[60_000], 180_000);
        assert_eq!(s["api_gateway"]["connection_minutes"], 1.0);
        assert_eq!(s["lambda"]["peak_concurrency"], 1);
    }
}
