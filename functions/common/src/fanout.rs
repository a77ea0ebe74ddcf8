//! Fan-out: one `@connections` POST per subscriber (API Gateway has no broadcast), page by
//! page, with bounded concurrency. A 410 Gone removes *that* connection and its subscriptions.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use futures::channel::mpsc::UnboundedSender;
use futures::stream::{self, FuturesUnordered, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::connections::{ATTEMPTS, Connections, Failure, Frame, PostError, retry_delay};
use crate::protocol::{Member, PresenceEvent, ServerFrame};
use crate::store::{Key, Store, StoreError, Subscriber};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub delivered: u64,
    pub gone: u64,
    pub failed: u64,
}

impl std::ops::AddAssign for Report {
    fn add_assign(&mut self, o: Report) {
        self.delivered += o.delivered;
        self.gone += o.gone;
        self.failed += o.failed;
    }
}

/// A subscriptions-table key as plain strings, so it can travel in an invocation payload.
pub fn key_to_json(key: &Key) -> HashMap<String, String> {
    key.iter()
        .filter_map(|(k, v)| v.as_s().ok().map(|s| (k.clone(), s.clone())))
        .collect()
}

pub fn key_from_json(key: &HashMap<String, String>) -> Key {
    key.iter()
        .map(|(k, v)| (k.clone(), AttributeValue::S(v.clone())))
        .collect()
}

/// Subscribers per Query page after the first.
pub const PAGE: usize = 1000;
/// The first page is small, so the first posts go out after one short read while the rest
/// of the channel is still being read.
pub const FIRST_PAGE: usize = 100;

/// Reads up to `budget` listening subscribers of `channel` from `start`, page by page, and
/// sends each to `out` as its page arrives; returns where the next invocation should continue,
/// if anything is left. Reading ahead of the posts lets the caller hand the rest of a large
/// channel on before its own posts are done, so invocations work in parallel.
pub async fn read(
    store: &Store,
    channel: &str,
    mut start: Option<Key>,
    budget: usize,
    out: UnboundedSender<String>,
) -> Result<Option<Key>, StoreError> {
    let mut sent = 0;
    let mut page_size = FIRST_PAGE.min(budget).max(1);
    loop {
        let (subscribers, next) = store
            .subscribers(channel, start.take(), page_size as i32)
            .await?;
        // A member that is present without being subscribed gets none of the channel's traffic.
        for s in subscribers.into_iter().filter(|s| s.listening) {
            sent += 1;
            // The posting side only stops early if it is gone, and then nothing is to be sent.
            let _ = out.unbounded_send(s.connection);
        }
        match next {
            Some(key) if sent < budget => {
                start = Some(key);
                page_size = (budget - sent).clamp(1, PAGE);
            }
            Some(key) => {
                // A page that ends exactly at the budget still carries a LastEvaluatedKey: look
                // one item ahead rather than start an invocation that would find nothing.
                let (ahead, more) = store.subscribers(channel, Some(key.clone()), 1).await?;
                return Ok((!ahead.is_empty() || more.is_some()).then_some(key));
            }
            None => return Ok(None),
        }
    }
}

/// Connections found gone and removed, each with the channels it was present in (as
/// `Store::remove_connection` returns them), so their presence `leave` can be announced.
pub type Removed = Vec<(String, Vec<(String, Subscriber)>)>;

/// What one invocation's posting came to.
#[derive(Default)]
pub struct Posted {
    pub report: Report,
    /// Connections found gone and removed, with the channels they were present in.
    pub removed: Removed,
    /// Connections not yet posted to when the cutoff came (throttled ones among them), for
    /// another invocation to finish.
    pub left: Vec<String>,
    /// Attempts the account's throttle refused (each retried, none lost).
    pub throttled: u64,
    /// The lowest pace throttling brought this invocation to, posts a second.
    pub slowest: f64,
}

/// How fast one invocation posts: `rate` a second, up to `burst` at once.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub rate: f64,
    pub burst: f64,
}

/// The first wait after a 429, doubled for each further one of the same post (with jitter),
/// up to [`MAX_THROTTLE_WAIT`].
const THROTTLE_WAIT: Duration = Duration::from_millis(100);
const MAX_THROTTLE_WAIT: Duration = Duration::from_secs(2);
/// A 429 halves the pace at most once in this long: the posts already in flight were sent at
/// the old pace, and their 429s say nothing new.
const CUT_EVERY: Duration = Duration::from_millis(100);
/// The slowest pace a 429 brings an invocation to, posts a second.
const MIN_RATE: f64 = 5.0;

/// A connection still to be posted to, with its history.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    connection: String,
    /// Failed attempts other than throttling.
    failures: u32,
    /// Throttled attempts.
    throttles: u32,
}

/// Posts `frame` to each connection as it arrives, at `pace`, at most `concurrency` at once.
///
/// The account's API Gateway throttle is shared by every API and fan-out of the account, so a
/// 429 is expected under load and never loses a post: the post waits (100 ms doubling, up to
/// 2 s, jittered) and goes again, and the pace halves, growing back by a hundredth of the
/// set rate with each success (additive increase, multiplicative decrease). Other failures get
/// [`ATTEMPTS`] attempts with the SDK's backoff, then count as `failed`. At `cutoff` nothing new
/// is sent: what is left comes back in [`Posted::left`].
pub async fn post_until(
    store: &Store,
    connections: &Connections,
    targets: impl Stream<Item = String>,
    frame: &str,
    concurrency: usize,
    pace: Pace,
    cutoff: Instant,
) -> Posted {
    let frame = Frame::new(frame.to_string());
    let concurrency = concurrency.max(1);
    let ceiling = pace.rate.max(MIN_RATE);
    let mut rate = ceiling;
    // Sending is allowed from `next`; it may lag the clock by at most a burst.
    let burst = Duration::from_secs_f64(pace.burst.max(1.0) / ceiling);
    let mut next = lag(burst);
    let mut last_cut: Option<Instant> = None;
    let mut inflight = FuturesUnordered::new();
    let mut waiting: BinaryHeap<Reverse<(Instant, Pending)>> = BinaryHeap::new();
    let mut targets = std::pin::pin!(targets.fuse());
    let mut drained = false;
    let mut out = Posted {
        slowest: rate,
        ..Default::default()
    };
    let mut gone: Vec<String> = Vec::new();
    let launch = |p: Pending| {
        let frame = frame.clone();
        async move {
            let outcome = connections.post_once(&p.connection, &frame).await;
            (p, outcome)
        }
    };
    loop {
        let now = Instant::now();
        let open = now < cutoff;
        if (drained && inflight.is_empty() && waiting.is_empty()) || (!open && inflight.is_empty())
        {
            break;
        }
        let free = open && inflight.len() < concurrency;
        let due = waiting.peek().map(|Reverse((at, _))| *at);
        let work = due.is_some_and(|at| at <= now) || !drained;
        // Ready to send but ahead of the pace: wait for it.
        let paced = free && work && next > now;
        let room = free && next <= now;
        tokio::select! {
            biased;
            Some((p, outcome)) = inflight.next(), if !inflight.is_empty() => {
                let (p, outcome): (Pending, Result<(), Failure>) = (p, outcome);
                match outcome {
                    Ok(()) => {
                        out.report.delivered += 1;
                        rate = (rate + ceiling / 100.0).min(ceiling);
                    }
                    Err(Failure::Final(PostError::Gone)) => {
                        out.report.gone += 1;
                        gone.push(p.connection);
                    }
                    Err(Failure::Throttled(_)) => {
                        out.throttled += 1;
                        let now = Instant::now();
                        if last_cut.is_none_or(|at| now.duration_since(at) >= CUT_EVERY) {
                            rate = (rate / 2.0).max(MIN_RATE);
                            out.slowest = out.slowest.min(rate);
                            last_cut = Some(now);
                        }
                        let cap = THROTTLE_WAIT
                            .saturating_mul(1 << p.throttles.min(10))
                            .min(MAX_THROTTLE_WAIT);
                        let wait = cap.mul_f64(0.5 + fastrand::f64() / 2.0);
                        let p = Pending { throttles: p.throttles + 1, ..p };
                        waiting.push(Reverse((now + wait, p)));
                    }
                    Err(Failure::Transient(e)) if p.failures + 1 < ATTEMPTS => {
                        let wait = retry_delay(p.failures);
                        tracing::debug!(connection = p.connection, error = %e, "post failed; retrying");
                        let p = Pending { failures: p.failures + 1, ..p };
                        waiting.push(Reverse((Instant::now() + wait, p)));
                    }
                    Err(Failure::Transient(e) | Failure::Final(PostError::Other(e))) => {
                        out.report.failed += 1;
                        tracing::warn!(connection = p.connection, error = %e, "post to connection failed");
                    }
                }
            }
            _ = tokio::time::sleep_until(next), if paced => {}
            _ = tokio::time::sleep_until(due.unwrap_or(cutoff)), if room && due.is_some() => {
                if let Some(Reverse((_, p))) = waiting.pop() {
                    next = next.max(lag(burst)) + Duration::from_secs_f64(1.0 / rate);
                    inflight.push(launch(p));
                }
            }
            found = targets.next(), if room && !drained => match found {
                Some(connection) => {
                    next = next.max(lag(burst)) + Duration::from_secs_f64(1.0 / rate);
                    inflight.push(launch(Pending { connection, failures: 0, throttles: 0 }));
                }
                None => drained = true,
            },
            // Nothing can move until the cutoff or a wait is over.
            _ = tokio::time::sleep_until(due.unwrap_or(cutoff).min(cutoff)), if !room && !paced && inflight.is_empty() => {}
        }
    }
    out.left = waiting
        .into_sorted_vec()
        .into_iter()
        .map(|Reverse((_, p))| p.connection)
        .collect();
    if !drained {
        out.left.extend(targets.collect::<Vec<_>>().await);
    }
    out.removed = remove_gone(store, gone, concurrency).await;
    out
}

/// `burst` ago, or the clock's start.
fn lag(burst: Duration) -> Instant {
    let now = Instant::now();
    now.checked_sub(burst).unwrap_or(now)
}

/// Only the connections that answered 410 go, never the sender or others; a page full of
/// them is removed in parallel, so it cannot outlast the invocation.
async fn remove_gone(store: &Store, gone: Vec<String>, concurrency: usize) -> Removed {
    stream::iter(gone)
        .map(|connection| async move {
            match store.remove_connection(&connection).await {
                Ok(present) if !present.is_empty() => Some((connection, present)),
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(connection, error = %e, "could not remove a gone connection");
                    None
                }
            }
        })
        .buffer_unordered(concurrency.clamp(1, 16))
        .filter_map(|r| async move { r })
        .collect()
        .await
}

/// The fan-out's share of the account's API Gateway throttle, spent chunk by chunk: a token
/// bucket of `rate` posts a second holding at most `burst`. The invocation that reads a channel
/// takes a chunk's posts from it before handing the chunk to another invocation, so however
/// many invocations post at once, together they stay within the rate.
pub struct Budget {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Budget {
    pub fn new(rate: f64, burst: f64) -> Budget {
        let burst = burst.max(1.0);
        Budget {
            rate: rate.max(1.0),
            burst,
            tokens: burst,
            at: Instant::now(),
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.burst);
        self.at = now;
    }

    /// Spends `posts` now, into debt if need be (the next chunk waits for it).
    pub fn spend(&mut self, posts: usize) {
        self.refill();
        self.tokens -= posts as f64;
    }

    /// Waits until `posts` can be spent, then spends them.
    pub async fn take(&mut self, posts: usize) {
        self.refill();
        let short = posts as f64 - self.tokens;
        if short > 0.0 {
            // The wait earns exactly what is short, even past the burst (a chunk larger than
            // the burst still goes, at the rate).
            tokio::time::sleep(Duration::from_secs_f64(short / self.rate)).await;
            self.tokens = posts as f64;
            self.at = Instant::now();
        }
        self.tokens -= posts as f64;
    }
}

/// For each channel `connection` was present in (as `Store::remove_connection` returns them),
/// the channel and the presence `leave` frame its subscribers get.
pub fn leave_frames(
    connection: &str,
    present: Vec<(String, Subscriber)>,
) -> impl Iterator<Item = (String, String)> + '_ {
    present.into_iter().map(move |(channel, sub)| {
        let frame = ServerFrame::Presence {
            channel: channel.clone(),
            event: PresenceEvent::Leave,
            member: Member {
                user: sub.user,
                connection: connection.to_string(),
                data: sub.member,
            },
        };
        (channel, frame.to_json())
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use aws_credential_types::Credentials;
    use aws_credential_types::provider::SharedCredentialsProvider;
    use aws_smithy_runtime_api::client::http::{
        HttpConnector, HttpConnectorFuture, SharedHttpConnector,
    };
    use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
    use aws_smithy_types::body::SdkBody;

    use super::*;
    use crate::store::Tables;

    /// An account throttle: answers 429 `LimitExceededException` to every request past the
    /// first `burst` until `refused` have been refused, and records who got a 200.
    #[derive(Clone, Debug, Default)]
    struct Throttled {
        burst: usize,
        refused: usize,
        calls: Arc<AtomicUsize>,
        refusals: Arc<AtomicUsize>,
        in_flight: Arc<AtomicUsize>,
        widest: Arc<AtomicUsize>,
        delivered: Arc<Mutex<Vec<String>>>,
    }

    impl HttpConnector for Throttled {
        fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
            let me = self.clone();
            let id = request
                .uri()
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string();
            HttpConnectorFuture::new(async move {
                let now = me.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                me.widest.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                me.in_flight.fetch_sub(1, Ordering::SeqCst);
                let n = me.calls.fetch_add(1, Ordering::SeqCst);
                let refuse = n >= me.burst && me.refusals.load(Ordering::SeqCst) < me.refused;
                let status = if refuse {
                    me.refusals.fetch_add(1, Ordering::SeqCst);
                    429
                } else {
                    me.delivered.lock().unwrap().push(id);
                    200
                };
                let mut r = HttpResponse::new(status.try_into().unwrap(), SdkBody::from("{}"));
                if refuse {
                    r.headers_mut()
                        .insert("x-amzn-errortype", "LimitExceededException");
                }
                Ok(r)
            })
        }
    }

    fn connections(http: &Throttled) -> Connections {
        Connections::with_connector(
            "https://a.execute-api.us-east-1.amazonaws.com/dev",
            "us-east-1".into(),
            Some(SharedCredentialsProvider::new(Credentials::new(
                "AKID", "s", None, None, "test",
            ))),
            SharedHttpConnector::new(http.clone()),
            std::time::SystemTime::now,
        )
    }

    /// No test here finds a connection gone, so the store is never called.
    fn store() -> Store {
        let conf = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .build();
        Store {
            db: aws_sdk_dynamodb::Client::from_conf(conf),
            tables: Tables::named(|t| t.name.to_string(), |_| "ttl".into()),
            history_ttl: Duration::from_secs(60),
        }
    }

    const FAST: Pace = Pace {
        rate: 100_000.0,
        burst: 1_000.0,
    };

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_post_waits_and_goes_again_and_the_pace_slows() {
        let http = Throttled {
            burst: 50,
            refused: 120,
            ..Default::default()
        };
        let far = Instant::now() + Duration::from_secs(600);
        let posted = post_until(
            &store(),
            &connections(&http),
            stream::iter(ids(400)),
            "{}",
            32,
            FAST,
            far,
        )
        .await;
        assert_eq!(
            posted.report,
            Report {
                delivered: 400,
                gone: 0,
                failed: 0
            }
        );
        assert_eq!(posted.throttled, 120, "every refusal was sent again");
        assert!(posted.left.is_empty());
        let mut got = http.delivered.lock().unwrap().clone();
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 400, "each connection got the frame exactly once");
        assert!(
            posted.slowest < FAST.rate,
            "the pace halved: {}",
            posted.slowest
        );
    }

    #[tokio::test(start_paused = true)]
    async fn posts_keep_to_the_pace_after_its_burst() {
        let http = Throttled::default();
        let t0 = Instant::now();
        let pace = Pace {
            rate: 100.0,
            burst: 10.0,
        };
        let far = t0 + Duration::from_secs(600);
        let posted = post_until(
            &store(),
            &connections(&http),
            stream::iter(ids(210)),
            "{}",
            64,
            pace,
            far,
        )
        .await;
        assert_eq!(posted.report.delivered, 210);
        let took = t0.elapsed().as_secs_f64();
        assert!(
            (1.95..2.1).contains(&took),
            "10 at once, then 200 at 100/s: {took} s"
        );
        // The burst, and the one the pace allows at its start.
        assert!(http.widest.load(Ordering::SeqCst) <= 11);
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_cutoff_what_is_not_posted_is_handed_back() {
        // Refused for ever: nothing goes through, nothing is lost.
        let http = Throttled {
            burst: 10,
            refused: usize::MAX,
            ..Default::default()
        };
        let cutoff = Instant::now() + Duration::from_secs(3);
        let posted = post_until(
            &store(),
            &connections(&http),
            stream::iter(ids(300)),
            "{}",
            16,
            FAST,
            cutoff,
        )
        .await;
        assert_eq!(posted.report.delivered, 10);
        assert_eq!(posted.report.failed, 0, "a throttled post is never failed");
        let mut left = posted.left.clone();
        left.extend(http.delivered.lock().unwrap().iter().cloned());
        left.sort();
        assert_eq!(left, {
            let mut all = ids(300);
            all.sort();
            all
        });
        assert!(Instant::now() >= cutoff);
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_gives_its_burst_then_its_rate() {
        let mut budget = Budget::new(1000.0, 500.0);
        let t0 = Instant::now();
        budget.spend(500);
        budget.take(1000).await;
        assert_eq!(
            t0.elapsed(),
            Duration::from_secs(1),
            "1,000 more at 1,000/s"
        );
        budget.take(250).await;
        assert_eq!(t0.elapsed(), Duration::from_millis(1250));
    }
}
