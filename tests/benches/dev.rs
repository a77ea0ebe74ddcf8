//! `wsctl dev` under load, measured with `wsctl bench` (the command users run) next to a bare
//! tokio server speaking the same protocol on the same machine: connections accepted per second
//! (through the authorizer and the `$connect` function), memory with 10,000 idle connections,
//! the time for one publish to reach 1,000, 5,000 and 10,000 subscribers (and where the publish
//! function spent it), and how long `$disconnect` takes for 5,000 clients cut at once.
//!
//! `cargo bench -p wsctl-tests --bench dev` (release wsctl, the repository's wsctl.yaml, its own
//! moto), once per data plane: `--dynamodb moto`, then `--dynamodb local` (`BENCH_DYNAMODB`,
//! default `moto,local`). Sizes: `BENCH_IDLE` (10000), `BENCH_SUBSCRIBERS` (`1000,5000,10000`),
//! `BENCH_ROUNDS` (5), `BENCH_CUT` (5000); `BENCH_DEV_ARGS` adds flags to `wsctl dev`.
//! Each `wsctl bench` run's HTML report is kept under `target/bench-dev/` (in the target
//! directory).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use wsctl_tests::dev::Dev;
use wsctl_tests::pubsub::{Faults, pubsub_server};
use wsctl_tests::{count_items, isolate, root, wsctl_bin};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn sizes(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}

/// Resident memory of a process, in MB.
fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

/// Processes below `pid` whose command line contains `needle`.
fn descendants_matching(pid: u32, needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for task in std::fs::read_dir(format!("/proc/{p}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for c in children
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok())
            {
                frontier.push(c);
                let cmd = std::fs::read_to_string(format!("/proc/{c}/cmdline")).unwrap_or_default();
                if cmd.contains(needle) {
                    found.push(c);
                }
            }
        }
    }
    found
}

/// RSS of `pid` and everything below it (functions, moto, DynamoDB Local), in MB.
fn tree_rss(pid: u32) -> f64 {
    rss_mb(pid)
        + descendants_matching(pid, "")
            .into_iter()
            .map(rss_mb)
            .sum::<f64>()
}

/// Waits (at most 90 s) until the connections table is back to `rows`: the `$disconnect`s of
/// the last run done, so they do not slow the next measure. Says when they were not.
async fn settle(db: &aws_sdk_dynamodb::Client, table: &str, rows: u64) {
    let started = Instant::now();
    let mut left = count_items(db, table).await.saturating_sub(rows);
    while left > 0 && started.elapsed() < Duration::from_secs(90) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        left = count_items(db, table).await.saturating_sub(rows);
    }
    if left > 0 {
        println!(
            "  ({left} $disconnects of the last run still pending after 90 s; measuring anyway)"
        );
    }
}

/// A running `wsctl bench`: its progress lines as they come, its JSON report at the end.
struct Bench {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
    name: String,
}

/// Starts `wsctl --output json bench ARGS` (against `endpoint`, `wsctl dev`'s AWS endpoint,
/// when given), writing its HTML report as `target/bench-dev/NAME.html`.
fn bench(name: &str, endpoint: Option<&str>, args: &[&str]) -> Bench {
    let dir = wsctl_tests::target_dir().join("bench-dev");
    std::fs::create_dir_all(&dir).expect("report dir");
    let mut cmd = Command::new(wsctl_bin());
    cmd.arg("--config").arg(root().join("wsctl.yaml"));
    if let Some(endpoint) = endpoint {
        cmd.args(["--endpoint-url", endpoint]);
    }
    cmd.args(["--output", "json", "--no-progress", "bench"])
        .args(args)
        .arg("--report")
        .arg(dir.join(format!("{name}.html")));
    isolate(&mut cmd);
    cmd.env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_REGION", "us-east-1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start wsctl bench");
    let (tx, lines) = mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    Bench {
        child,
        lines,
        name: name.into(),
    }
}

impl Bench {
    /// Waits for a progress line that starts with `phase` (e.g. `hold:`).
    fn wait_phase(&self, phase: &str) {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(600))
                .unwrap_or_else(|_| panic!("{}: never reached {phase}", self.name));
            if line.split_whitespace().nth(2) == Some(phase) {
                return;
            }
        }
    }

    /// Its JSON report. Exit 10 (not clean) still reports: the report says what went wrong.
    fn report(mut self) -> Value {
        let mut out = String::new();
        std::io::Read::read_to_string(self.child.stdout.as_mut().unwrap(), &mut out)
            .expect("read the report");
        let status = self.child.wait().expect("wsctl bench ends");
        let rest: Vec<String> = self.lines.try_iter().collect();
        let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| {
            panic!(
                "{}: no report ({e}; {status}):\n{}",
                self.name,
                rest.join("\n")
            )
        });
        if report["clean"] != true {
            println!(
                "  ({}: not clean: failures {}, errors {}, closes {}, lost {})",
                self.name,
                report["connections"]["failures"],
                report["errors"],
                report["closes"],
                report["delivery"]["lost"]
            );
        }
        report
    }
}

/// `wsctl bench`'s fan-out: `n` subscribers of one channel, as fast as they come, `rounds`
/// publishes.
fn fan_out(n: usize, rounds: usize) -> [String; 6] {
    [
        "-n",
        &n.to_string(),
        "--rate",
        "10000",
        "--rounds",
        &rounds.to_string(),
    ]
    .map(String::from)
}

fn ms(v: &Value) -> String {
    format!("{:.1} ms", v.as_f64().unwrap_or(f64::NAN))
}

/// `median M of a, b, c` over a report's fan-out rounds.
fn rounds_line(report: &Value) -> String {
    let mut times: Vec<f64> = report["rounds"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["all_ms"].as_f64())
        .collect();
    let all = times
        .iter()
        .map(|t| format!("{t:.1} ms"))
        .collect::<Vec<_>>()
        .join(", ");
    times.sort_by(f64::total_cmp);
    match times.get(times.len() / 2) {
        Some(m) => format!("median {m:.1} ms of {all}"),
        None => "no round reached every subscriber".into(),
    }
}

fn delivery_line(report: &Value) -> String {
    let d = &report["delivery"];
    format!(
        "delivery p50 {}, p99 {}; {} of {} delivered, {} lost, {} duplicated, {} out of order",
        ms(&d["latency"]["p50_ms"]),
        ms(&d["latency"]["p99_ms"]),
        d["delivered"],
        d["expected"],
        d["lost"],
        d["duplicated"],
        d["out_of_order"]
    )
}

fn main() {
    let idle_n = env("BENCH_IDLE", 10_000);
    let subs = sizes("BENCH_SUBSCRIBERS", "1000,5000,10000");
    let rounds = env("BENCH_ROUNDS", 5);
    let cut = env("BENCH_CUT", 5_000);
    let stores = std::env::var("BENCH_DYNAMODB").unwrap_or_else(|_| "moto,local".into());
    // Builds the release wsctl before anything is timed.
    wsctl_bin();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for store in stores.split(',').filter(|s| !s.is_empty()) {
        println!("== wsctl dev --dynamodb {store}");
        runtime.block_on(measure(store, idle_n, &subs, rounds, cut));
    }

    // The baseline, in the same run: a bare tokio server speaking the same protocol, loaded by
    // the same command.
    println!("== bare tokio server (same protocol, no Lambda, no DynamoDB)");
    let url = runtime.block_on(pubsub_server(Faults::default()));
    for &n in &subs {
        let report = bench(
            &format!("bare-{n}"),
            None,
            &[
                &["--url", &url, "--token", "none"][..],
                &fan_out(n, rounds).each_ref().map(String::as_str),
            ]
            .concat(),
        )
        .report();
        println!(
            "publish → all {n} subscribers: {}; {}",
            rounds_line(&report),
            delivery_line(&report)
        );
    }
}

async fn measure(store: &str, idle_n: usize, subs: &[usize], rounds: usize, cut: usize) {
    let extra = std::env::var("BENCH_DEV_ARGS").unwrap_or_default();
    let mut args = vec!["--dynamodb", store];
    args.extend(extra.split_whitespace());
    let dev = Dev::start(&root().join("wsctl.yaml"), &args);
    let endpoint = dev.base();
    let endpoint = Some(endpoint.as_str());
    let pid = dev.pid();
    let base_rss = rss_mb(pid);
    println!(
        "wsctl dev up in {:.1} s; gateway RSS at rest {base_rss:.1} MB",
        dev.info["seconds"].as_f64().unwrap_or(0.0)
    );

    let db = dev.dynamodb();
    let table = format!("{}-{}-connections", dev.field("stack"), dev.field("stage"));
    let rows = count_items(&db, &table).await;

    // Warm-up: every function's processes started once.
    bench(
        &format!("{store}-warm"),
        endpoint,
        &["-n", "200", "--rate", "10000", "--rounds", "2"],
    )
    .report();
    settle(&db, &table, rows).await;

    // 1 and 2. Handshakes a second, each through the authorizer and $connect, and the
    // gateway's memory once `idle_n` connections are open and idle.
    let hold = bench(
        &format!("{store}-idle"),
        endpoint,
        &[
            "-n",
            &idle_n.to_string(),
            "--rate",
            "10000",
            "--channels",
            "0",
            "--hold",
            "6s",
        ],
    );
    hold.wait_phase("hold:");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let gateway = rss_mb(pid);
    let functions: Vec<u32> = descendants_matching(pid, "bootstrap");
    let functions_rss: f64 = functions.iter().map(|p| rss_mb(*p)).sum();
    let report = hold.report();
    let c = &report["connections"];
    println!(
        "connections accepted: {} in {:.2} s = {:.0}/s ({} handshakes in flight); handshake p50 {}, p99 {}",
        c["opened"],
        c["ramp_seconds"].as_f64().unwrap_or(0.0),
        c["rate"].as_f64().unwrap_or(0.0),
        report["plan"]["in_flight"],
        ms(&c["handshake"]["p50_ms"]),
        ms(&c["handshake"]["p99_ms"])
    );
    println!(
        "{} idle connections: gateway RSS {gateway:.1} MB ({:.1} KB per connection over rest); {} function processes {functions_rss:.1} MB",
        c["opened"],
        (gateway - base_rss) * 1024.0 / c["opened"].as_f64().unwrap_or(1.0),
        functions.len()
    );

    settle(&db, &table, rows).await;

    // 3. One publish to each size of channel.
    for &n in subs {
        let logged = dev.logs.lock().unwrap().len();
        let report = bench(
            &format!("{store}-fanout-{n}"),
            endpoint,
            &fan_out(n, rounds).each_ref().map(String::as_str),
        )
        .report();
        println!(
            "publish → all {n} subscribers: {} ({} subscribed in {:.1} s)",
            rounds_line(&report),
            report["connections"]["opened"],
            report["connections"]["ramp_seconds"]
                .as_f64()
                .unwrap_or(0.0)
        );
        println!(
            "  publish → its ack (message function: store, hand-off): p50 {}; {}",
            ms(&report["publishes"]["ack"]["p50_ms"]),
            delivery_line(&report)
        );
        // Where the publish function's time went, as it logs each fan-out.
        let lines: Vec<String> = dev.logs.lock().unwrap()[logged..]
            .iter()
            .filter(|l| l.contains("fan-out") && l.contains("collect_ms"))
            .cloned()
            .collect();
        let field = |l: &str, k: &str| -> u64 {
            l.split(&format!("\"{k}\":"))
                .nth(1)
                .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let invocations: Vec<String> = lines
            .iter()
            .map(|l| {
                format!(
                    "{} posts: all read at {} ms, all posted at {} ms",
                    field(l, "delivered"),
                    field(l, "collect_ms"),
                    field(l, "done_ms")
                )
            })
            .collect();
        println!(
            "  publish function, {} invocations: {}",
            invocations.len(),
            invocations.join("; ")
        );
        settle(&db, &table, rows).await;
    }

    // 4. `cut` subscribers vanish at once (no close frame): how long until every `$disconnect`
    // has run (its row gone from the connections table), and the peak RSS of everything wsctl
    // dev runs meanwhile.
    let before = count_items(&db, &table).await as usize;
    let run = bench(
        &format!("{store}-cut"),
        endpoint,
        &[
            "-n",
            &cut.to_string(),
            "--rate",
            "10000",
            "--rounds",
            "0",
            "--end",
            "drop",
        ],
    );
    run.wait_phase("end:");
    let started = Instant::now();
    let report = run.report();
    let opened = report["connections"]["opened"].as_u64().unwrap_or(0) as usize;
    let mut peak = tree_rss(pid);
    let mut left = opened;
    while started.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        peak = peak.max(tree_rss(pid));
        left = (count_items(&db, &table).await as usize).saturating_sub(before);
        if left == 0 {
            break;
        }
    }
    println!(
        "{opened} clients cut at once: {} in {:.1} s; peak RSS of wsctl dev and all it runs {peak:.0} MB",
        if left == 0 {
            "every $disconnect done".to_string()
        } else {
            format!("{left} rows still there")
        },
        started.elapsed().as_secs_f64()
    );
    let engines: f64 = descendants_matching(pid, "moto_server")
        .into_iter()
        .chain(descendants_matching(pid, "DynamoDbLoopback"))
        .map(rss_mb)
        .sum();
    println!("emulators' RSS at the end: {engines:.0} MB");
}
