//! `wsctl gc`: sweeps connection ids whose `$disconnect` never ran. Built for cron: a parallel
//! scan of the connections table, one `GetConnection` per id (bounded concurrency), and for
//! every id that answers 410 the connection and all its subscriptions and presence are
//! deleted in batches, and its presence `leave` is announced. An id that answers 200 is never
//! touched; deletes are idempotent, so two sweeps at once are safe.
//!
//! A stale id's subscriptions are found with the by-connection index, one Query each, as the
//! id is found. When a sweep finds many (a stage that lost its `$disconnect`s for a while),
//! the rest are kept and removed together after the checks, with one Scan of the
//! subscriptions table: cheaper in read units and calls than a Query per id once they are a
//! fair share of the table (see `--lookup`).
//!
//! `@connections` also answers 410 for a connection whose `$connect` is still running, so rows
//! younger than `--older-than` (default a minute, above API Gateway's 29 s integration
//! timeout) are left alone.

use std::collections::HashSet;
use std::fmt::Display;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use aws_sdk_apigatewaymanagement as mgmt;
use futures::future;
use futures::stream::StreamExt;
use serde::Serialize;
use wsctl_functions::Invoker;
use wsctl_functions::auth::now;
use wsctl_functions::fanout::leave_frames;
use wsctl_functions::handlers::publish::fan_out_later;
use wsctl_functions::store::{Store, Subscriber};

use crate::args::{GcArgs, GcLookup};
use crate::aws::AwsArgs;
use crate::config::Config;
use crate::error::Error;
use crate::output::Printer;
use crate::stack::{Stack, rows};

/// With `--lookup auto`: stale ids removed one by one as they are found, before the rest are
/// kept for one scan of the subscriptions table.
const REMOVE_AS_FOUND: u64 = 1_000;
/// With `--lookup auto`: a scan reads every subscription, so it is chosen when at least one
/// row checked in this many is stale. Read units: a Query costs at least 0.5, a Scan 0.5 per
/// 4 KB, about 25 subscription items.
const SCAN_SHARE: u64 = 20;
/// Stale ids kept for the scan at most (about 60 bytes each); past this many, the rest are
/// removed as found, so memory stays bounded however many are stale.
const MAX_PENDING: usize = 1_000_000;
/// Scan segments of the subscriptions table read at once.
const SCAN_SEGMENTS: u32 = 4;

#[derive(Default)]
struct Tally {
    scanned: AtomicU64,
    live: AtomicU64,
    stale: AtomicU64,
    deleted: AtomicU64,
    errors: AtomicU64,
}

pub async fn run(
    config: &Config,
    aws: &AwsArgs,
    args: &GcArgs,
    printer: &Printer,
) -> Result<(), Error> {
    let started = Instant::now();
    let stack = Stack::open(config, aws).await?;
    let store = stack.store();
    let api = stack.connections().await?;
    let publish = stack.publish();
    let deadline = args.max_duration.map(|d| started + d);
    let cutoff = now().saturating_sub(args.older_than.as_secs());

    let tally = Tally::default();
    let cut_short = AtomicBool::new(false);
    // Stale ids left for one scan of the subscriptions table (see `--lookup`).
    let pending: Mutex<HashSet<String>> = Mutex::default();
    // The first failed Scan page; that segment stops, the others go on.
    let scan_error = Mutex::new(None);
    let bar = printer.counter("checked");
    // Above the counter while it runs, so the two do not tear each other's lines.
    let say = |text: String| match &bar {
        Some(bar) => bar.println(text),
        None => printer.note(text),
    };
    // Rows are checked while the scan goes on, so memory stays flat however big the table
    // is (but for the stale ids kept for one scan, at most MAX_PENDING), and --max-duration
    // stops the reading too. What was found stale by then is still removed.
    rows(&store)
        .filter_map(|row| {
            future::ready(match row {
                Ok(row) => (row.connected_at <= cutoff).then_some(row),
                Err(e) => {
                    scan_error.lock().expect("scan error lock").get_or_insert(e);
                    None
                }
            })
        })
        .take_while(|_| {
            let over = deadline.is_some_and(|d| Instant::now() >= d);
            cut_short.fetch_or(over, Ordering::Relaxed);
            future::ready(!over)
        })
        .for_each_concurrent(args.concurrency as usize, |row| {
            let (store, api, publish, tally, bar, say, pending) =
                (&store, &api, &publish, &tally, &bar, &say, &pending);
            async move {
                tally.scanned.fetch_add(1, Ordering::Relaxed);
                if let Some(bar) = bar {
                    bar.inc(1);
                    bar.set_message(format!("{} stale", tally.stale.load(Ordering::Relaxed)));
                }
                // Past its TTL or not, only API Gateway's 410 makes a row stale: an item's TTL
                // is a backstop, and a connection that outlived it is still a connection.
                let stale = match check(api, &row.id).await {
                    Ok(live) => !live,
                    Err(e) => {
                        tally.errors.fetch_add(1, Ordering::Relaxed);
                        say(format!("GetConnection {}: {e}", row.id));
                        return;
                    }
                };
                if !stale {
                    tally.live.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let nth = tally.stale.fetch_add(1, Ordering::Relaxed) + 1;
                if args.dry_run {
                    return;
                }
                let keep = match args.lookup {
                    GcLookup::Index => false,
                    GcLookup::Scan => true,
                    GcLookup::Auto => nth > REMOVE_AS_FOUND,
                };
                if keep {
                    let mut pending = pending.lock().expect("pending lock");
                    if pending.len() < MAX_PENDING {
                        pending.insert(row.id);
                        return;
                    }
                }
                remove_one(store, publish, tally, say, &row.id).await;
            }
        })
        .await;

    let pending = pending.into_inner().expect("pending lock");
    let scanned = tally.scanned.load(Ordering::Relaxed);
    let concurrency = args.concurrency as usize;
    if cut_short.load(Ordering::Relaxed) {
        // The time budget is spent, and how large the table is beyond the rows checked is
        // unknown: the next run finds these again.
        if !pending.is_empty() {
            say(format!(
                "{} stale ids found are left for the next run (--max-duration)",
                pending.len()
            ));
        }
    } else if args.lookup == GcLookup::Scan || pending.len() as u64 * SCAN_SHARE >= scanned {
        if !pending.is_empty() {
            if let Some(bar) = &bar {
                bar.set_message(format!("removing {} stale in one scan", pending.len()));
            }
            remove_many(&store, &publish, &tally, &say, &pending, concurrency).await;
        }
    } else {
        futures::stream::iter(&pending)
            .for_each_concurrent(concurrency, |id| {
                remove_one(&store, &publish, &tally, &say, id)
            })
            .await;
    }

    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let swept = Swept {
        stack: config.stack.clone(),
        stage: config.stage.clone(),
        scanned: get(&tally.scanned),
        live: get(&tally.live),
        stale: get(&tally.stale),
        deleted: get(&tally.deleted),
        errors: get(&tally.errors),
        seconds: started.elapsed().as_secs_f64(),
        dry_run: args.dry_run,
        complete: !cut_short.load(Ordering::Relaxed),
    };
    // Printed before any error: cron's log keeps the counts of a sweep that failed part-way.
    printer.line(&swept);
    let Swept {
        errors, complete, ..
    } = swept;
    // A Scan that failed is an AWS error of its own kind (access denied is not "run it again").
    if let Some(e) = scan_error.into_inner().expect("scan error lock") {
        return Err(e);
    }
    if errors > 0 || !complete {
        return Err(Error::Unfinished(format!(
            "gc did not finish: {errors} error(s){}\nhint: run it again; every step is idempotent",
            if !complete {
                ", stopped at --max-duration"
            } else {
                ""
            }
        )));
    }
    Ok(())
}

/// What a sweep did: one line for cron's log.
#[derive(Debug, Serialize)]
struct Swept {
    #[serde(skip)]
    stack: String,
    #[serde(skip)]
    stage: String,
    scanned: u64,
    live: u64,
    stale: u64,
    deleted: u64,
    errors: u64,
    seconds: f64,
    dry_run: bool,
    /// False when `--max-duration` stopped the sweep.
    complete: bool,
}

impl Display for Swept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Swept {
            stack,
            stage,
            scanned,
            live,
            stale,
            deleted,
            errors,
            seconds,
            ..
        } = self;
        let (action, count) = if self.dry_run {
            ("would delete", stale)
        } else {
            ("deleted", deleted)
        };
        let partial = if self.complete {
            ""
        } else {
            " (stopped at --max-duration)"
        };
        write!(
            f,
            "gc {stack}/{stage}: scanned {scanned}, live {live}, stale {stale}, {action} {count}, errors {errors} in {seconds:.1} s{partial}"
        )
    }
}

/// Removes one stale connection (its subscriptions found by index) and announces its leaves.
async fn remove_one(
    store: &Store,
    publish: &Invoker,
    tally: &Tally,
    say: &(impl Fn(String) + Sync),
    id: &str,
) {
    match store.remove_connection(id).await {
        Ok(present) => {
            tally.deleted.fetch_add(1, Ordering::Relaxed);
            announce(publish, tally, say, id, present).await;
        }
        Err(e) => {
            say(format!("deleting {id}: {e}"));
            tally.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Removes many stale connections with one scan of the subscriptions table, then announces
/// their leaves.
async fn remove_many(
    store: &Store,
    publish: &Invoker,
    tally: &Tally,
    say: &(impl Fn(String) + Sync),
    ids: &HashSet<String>,
    concurrency: usize,
) {
    let (mut present, outcome) = store.remove_connections(ids, SCAN_SEGMENTS).await;
    // Members found present are gone either way: their leaves are announced whatever
    // happened next.
    futures::stream::iter(ids)
        .for_each_concurrent(concurrency, |id| {
            let channels = present.remove(id).unwrap_or_default();
            announce(publish, tally, say, id, channels)
        })
        .await;
    match outcome {
        Ok(()) => {
            tally.deleted.fetch_add(ids.len() as u64, Ordering::Relaxed);
        }
        // A Scan or a BatchWriteItem the identity may not make, say: every connection item
        // is still there, so each is finished the way the first ones were. A member whose
        // subscription the scan had not deleted yet may hear its leave twice.
        Err(e) => {
            say(format!(
                "removing {} stale connections with one scan failed ({e}); removing them one by one",
                ids.len()
            ));
            futures::stream::iter(ids)
                .for_each_concurrent(concurrency, |id| remove_one(store, publish, tally, say, id))
                .await;
        }
    }
}

/// As `$disconnect` would have: whoever watches a channel sees the member go.
async fn announce(
    publish: &Invoker,
    tally: &Tally,
    say: &(impl Fn(String) + Sync),
    id: &str,
    present: Vec<(String, Subscriber)>,
) {
    for (channel, frame) in leave_frames(id, present) {
        if let Err(e) = fan_out_later(publish, &channel, &frame, None, Some(id)).await {
            say(format!("announcing {id} left {channel}: {e}"));
            tally.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Whether API Gateway still knows the connection: 200 yes, 410 no, anything else an error.
async fn check(api: &mgmt::Client, id: &str) -> Result<bool, String> {
    match api.get_connection().connection_id(id).send().await {
        Ok(_) => Ok(true),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_gone_exception()) => Ok(false),
        Err(e) => Err(crate::aws::classify(e, "GetConnection", id).to_string()),
    }
}

#[cfg(test)]
mod pinned {
    use super::*;

    /// cron's log line, as log readers parse it.
    #[test]
    fn both_forms_are_pinned() {
        let swept = Swept {
            stack: "chat".into(),
            stage: "dev".into(),
            scanned: 10,
            live: 7,
            stale: 3,
            deleted: 3,
            errors: 0,
            seconds: 1.5,
            dry_run: false,
            complete: true,
        };
        assert_eq!(
            crate::output::line_forms(&swept),
            (
                r#"{"complete":true,"deleted":3,"dry_run":false,"errors":0,"live":7,"scanned":10,"seconds":1.5,"stale":3}"#.into(),
                "gc chat/dev: scanned 10, live 7, stale 3, deleted 3, errors 0 in 1.5 s".into()
            )
        );
    }
}
