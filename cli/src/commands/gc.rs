//! `wsctl gc`: sweeps connection ids whose `$disconnect` never ran. Built for cron: a parallel
//! scan of the connections table, one `GetConnection` per id (bounded concurrency), and for
//! every id that answers 410 the connection and all its subscriptions and presence are
//! deleted in batches, and its presence `leave` is announced. An id that answers 200 is never
//! touched; deletes are idempotent, so two sweeps at once are safe.
//!
//! `@connections` also answers 410 for a connection whose `$connect` is still running, so rows
//! younger than `--older-than` (default a minute, above API Gateway's 29 s integration
//! timeout) are left alone.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use aws_sdk_apigatewaymanagement as mgmt;
use futures::future;
use futures::stream::StreamExt;
use serde_json::json;
use wsctl_functions::auth::now;
use wsctl_functions::fanout::leave_frames;
use wsctl_functions::handlers::publish::fan_out_later;

use crate::args::GcArgs;
use crate::aws::AwsArgs;
use crate::config::Config;
use crate::error::Error;
use crate::output::Printer;
use crate::stack::{Stack, rows};

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
    // The first failed Scan page; that segment stops, the others go on.
    let scan_error = Mutex::new(None);
    let bar = printer.counter("checked");
    // Above the counter while it runs, so the two do not tear each other's lines.
    let say = |text: String| match &bar {
        Some(bar) => bar.println(text),
        None => printer.note(text),
    };
    // Rows are checked while the scan goes on, so memory stays flat however big the table
    // is, and --max-duration stops the reading too.
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
            let (store, api, publish, tally, bar, say) =
                (&store, &api, &publish, &tally, &bar, &say);
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
                tally.stale.fetch_add(1, Ordering::Relaxed);
                if args.dry_run {
                    return;
                }
                let present = match store.remove_connection(&row.id).await {
                    Ok(present) => present,
                    Err(e) => {
                        say(format!("deleting {}: {e}", row.id));
                        tally.errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                };
                tally.deleted.fetch_add(1, Ordering::Relaxed);
                // As `$disconnect` would have: whoever watches the channel sees the member go.
                for (channel, frame) in leave_frames(&row.id, present) {
                    if let Err(e) = fan_out_later(publish, &channel, &frame, None).await {
                        say(format!("announcing {} left {channel}: {e}", row.id));
                        tally.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
        .await;

    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let (scanned, live, stale, deleted, errors) = (
        get(&tally.scanned),
        get(&tally.live),
        get(&tally.stale),
        get(&tally.deleted),
        get(&tally.errors),
    );
    let seconds = started.elapsed().as_secs_f64();
    let cut_short = cut_short.load(Ordering::Relaxed);
    if printer.json() {
        println!(
            "{}",
            json!({"scanned": scanned, "live": live, "stale": stale, "deleted": deleted, "errors": errors, "seconds": seconds, "dry_run": args.dry_run, "complete": !cut_short})
        );
    } else {
        let action = if args.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        let count = if args.dry_run { stale } else { deleted };
        let partial = if cut_short {
            " (stopped at --max-duration)"
        } else {
            ""
        };
        printer.result(format!("gc {}/{}: scanned {scanned}, live {live}, stale {stale}, {action} {count}, errors {errors} in {seconds:.1} s{partial}", config.stack, config.stage));
    }
    // A Scan that failed is an AWS error of its own kind (access denied is not "run it again").
    if let Some(e) = scan_error.into_inner().expect("scan error lock") {
        return Err(e);
    }
    if errors > 0 || cut_short {
        return Err(Error::Unfinished(format!(
            "gc did not finish: {errors} error(s){}\nhint: run it again; every step is idempotent",
            if cut_short {
                ", stopped at --max-duration"
            } else {
                ""
            }
        )));
    }
    Ok(())
}

/// Whether API Gateway still knows the connection: 200 yes, 410 no, anything else an error.
async fn check(api: &mgmt::Client, id: &str) -> Result<bool, String> {
    match api.get_connection().connection_id(id).send().await {
        Ok(_) => Ok(true),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_gone_exception()) => Ok(false),
        Err(e) => Err(crate::aws::classify(e, "GetConnection", id).to_string()),
    }
}
