//! `wsctl dev` under load: connections accepted per second (through the authorizer and the
//! `$connect` function), memory with 10,000 idle connections, the time for one publish to reach
//! 1,000, 5,000 and 10,000 subscribers (and where the publish function spent it), and how long
//! `$disconnect` takes for 5,000 clients cut at once — next to a bare tokio broadcast server on
//! the same machine.
//!
//! `cargo bench -p wsctl-tests --bench dev` (release wsctl, the repository's wsctl.yaml, its own
//! moto), once per data plane: `--dynamodb moto`, then `--dynamodb local` (`BENCH_DYNAMODB`,
//! default `moto,local`). Sizes: `BENCH_IDLE` (10000), `BENCH_SUBSCRIBERS` (`1000,5000,10000`),
//! `BENCH_ROUNDS` (5), `BENCH_CUT` (5000); `BENCH_DEV_ARGS` adds flags to `wsctl dev`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite::Message;
use wsctl_tests::count_items;
use wsctl_tests::dev::Dev;
use wsctl_tests::root;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Raises the soft limit on open files to the hard one; the new limit.
fn raise_fd_limit() -> usize {
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
        lim.rlim_cur as usize
    }
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

async fn connect(url: &str) -> Ws {
    let mut tries = 0;
    loop {
        match tokio_tungstenite::connect_async(url).await {
            Ok((ws, _)) => return ws,
            Err(e) if tries < 3 => {
                tries += 1;
                eprintln!("connect failed ({e}); retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("connect: {e}"),
        }
    }
}

/// Opens `n` connections, `parallel` handshakes at a time; the connections and the elapsed time.
async fn open(url: &str, n: usize, parallel: usize) -> (Vec<Ws>, Duration) {
    let started = Instant::now();
    let url = Arc::new(url.to_string());
    let all: Vec<Ws> = futures::stream::iter(0..n)
        .map(|_| {
            let url = url.clone();
            async move { connect(&url).await }
        })
        .buffer_unordered(parallel)
        .collect()
        .await;
    (all, started.elapsed())
}

async fn recv_json(ws: &mut Ws) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("a frame in time")
        {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(t.as_str()).expect("JSON"),
            Some(Ok(_)) => continue,
            other => panic!("connection ended: {other:?}"),
        }
    }
}

/// One reader task per subscriber, reporting to `tx`; aborting a task drops its socket without
/// a close frame.
fn spawn_readers(
    subscribers: Vec<Ws>,
    is_hit: fn(&str) -> Option<u64>,
    tx: &mpsc::UnboundedSender<(u64, Instant)>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for mut ws in subscribers {
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(m)) = ws.next().await {
                if let Message::Text(t) = m
                    && let Some(round) = is_hit(t.as_str())
                {
                    let _ = tx.send((round, Instant::now()));
                }
            }
        }));
    }
    tasks
}

/// Rounds `first..first + rounds`: publish → the last of `n` subscribers has it, and, when the
/// server acknowledges a publish (`wsctl dev`'s message function does), publish → the ack.
async fn fanout_rounds(
    publisher: &mut Ws,
    frame: impl Fn(u64) -> String,
    arrivals: &mut mpsc::UnboundedReceiver<(u64, Instant)>,
    n: usize,
    rounds: std::ops::Range<u64>,
    acked: bool,
) -> (Vec<Duration>, Vec<Duration>) {
    let (mut out, mut acks) = (Vec::new(), Vec::new());
    for round in rounds {
        let t0 = Instant::now();
        publisher
            .send(Message::text(frame(round)))
            .await
            .expect("publish");
        if acked {
            while recv_json(publisher).await["type"] != "ack" {}
            acks.push(t0.elapsed());
        }
        let mut got = 0;
        let mut last = t0;
        while got < n {
            let (r, at) = tokio::time::timeout(Duration::from_secs(60), arrivals.recv())
                .await
                .expect("every subscriber in time")
                .expect("readers alive");
            if r == round {
                got += 1;
                last = at;
            }
        }
        out.push(last - t0);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    (out, acks)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// The baseline: a bare tokio-tungstenite server that broadcasts every text frame to everyone.
async fn broadcast_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, _) = broadcast::channel::<String>(1024);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let (mut sink, mut stream) = ws.split();
                let mut rx = tx.subscribe();
                tokio::spawn(async move {
                    while let Ok(m) = rx.recv().await {
                        if sink.send(Message::text(m)).await.is_err() {
                            break;
                        }
                    }
                });
                while let Some(Ok(m)) = stream.next().await {
                    if let Message::Text(t) = m {
                        let _ = tx.send(t.as_str().to_string());
                    }
                }
            });
        }
    });
    format!("ws://{addr}/")
}

fn sizes(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}

fn summary(times: &[Duration]) -> String {
    format!(
        "median {} of {}",
        ms(median(times.to_vec())),
        times.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", ")
    )
}

async fn run() {
    let idle_n = env("BENCH_IDLE", 10_000);
    let subs = sizes("BENCH_SUBSCRIBERS", "1000,5000,10000");
    let rounds = env("BENCH_ROUNDS", 5) as u64;
    let cut = env("BENCH_CUT", 5_000);
    let stores = std::env::var("BENCH_DYNAMODB").unwrap_or_else(|_| "moto,local".into());
    for store in stores.split(',').filter(|s| !s.is_empty()) {
        println!("== wsctl dev --dynamodb {store}");
        measure(store, idle_n, &subs, rounds, cut).await;
    }

    // Baseline in the same run.
    println!("== bare tokio broadcast server");
    let bare = broadcast_server().await;
    let (tx, mut arrivals) = mpsc::unbounded_channel();
    let mut publisher = connect(&bare).await;
    let (mut open_n, mut round) = (0, 1);
    let fds = raise_fd_limit();
    for &n in &subs {
        // Server and clients share this process: two descriptors per connection.
        if 2 * n + 256 > fds {
            println!(
                "publish → all {n} subscribers: not measured (needs {} open files in one process; the limit is {fds})",
                2 * n + 256
            );
            continue;
        }
        let (more, _) = open(&bare, n - open_n, 64).await;
        spawn_readers(
            more,
            |t| serde_json::from_str::<Value>(t).ok()?["round"].as_u64(),
            &tx,
        );
        open_n = n;
        let (times, _) = fanout_rounds(
            &mut publisher,
            |round| json!({ "round": round }).to_string(),
            &mut arrivals,
            n,
            round..round + rounds,
            false,
        )
        .await;
        round += rounds;
        println!("publish → all {n} subscribers: {}", summary(&times));
    }
}

/// RSS of `pid` and everything below it (functions, moto, DynamoDB Local), in MB.
fn tree_rss(pid: u32) -> f64 {
    rss_mb(pid)
        + descendants_matching(pid, "")
            .into_iter()
            .map(rss_mb)
            .sum::<f64>()
}

async fn measure(store: &str, idle_n: usize, subs: &[usize], rounds: u64, cut: usize) {
    // `BENCH_DEV_ARGS`: more flags for `wsctl dev` (`--no-iam` to see the IAM check's share).
    let extra = std::env::var("BENCH_DEV_ARGS").unwrap_or_default();
    let mut args = vec!["--dynamodb", store];
    args.extend(extra.split_whitespace());
    let dev = Dev::start(&root().join("wsctl.yaml"), &args);
    let pid = dev.pid();
    let url = format!("{}?token={}", dev.field("url"), dev.token("bench").await);
    let base_rss = rss_mb(pid);
    println!(
        "wsctl dev up in {:.1} s; gateway RSS at rest {base_rss:.1} MB",
        dev.info["seconds"].as_f64().unwrap_or(0.0)
    );

    // 1. Handshakes per second, each through the authorizer and $connect.
    let warm = 200.min(idle_n);
    let (mut conns, _) = open(&url, warm, 32).await;
    let measured = 2_000.min(idle_n.saturating_sub(warm));
    let (more, took) = open(&url, measured, 64).await;
    conns.extend(more);
    let rate = measured as f64 / took.as_secs_f64();
    println!(
        "connections accepted: {measured} in {:.2} s = {rate:.0}/s (64 handshakes in flight)",
        took.as_secs_f64()
    );

    // 2. Memory with `idle_n` idle connections.
    let (more, took) = open(&url, idle_n - conns.len(), 64).await;
    conns.extend(more);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let gateway = rss_mb(pid);
    let functions: Vec<u32> = descendants_matching(pid, "bootstrap");
    let functions_rss: f64 = functions.iter().map(|p| rss_mb(*p)).sum();
    println!(
        "{} idle connections (last {} opened in {:.1} s): gateway RSS {gateway:.1} MB ({:.1} KB per connection over rest); {} function processes {functions_rss:.1} MB",
        conns.len(),
        idle_n.saturating_sub(warm + measured),
        took.as_secs_f64(),
        (gateway - base_rss) * 1024.0 / conns.len() as f64,
        functions.len()
    );

    // 3. One publish to each size of channel: more of the idle connections subscribe each time.
    let (tx, mut arrivals) = mpsc::unbounded_channel();
    let mut readers = Vec::new();
    let mut publisher = connect(&url).await;
    let (mut subscribed, mut round) = (0, 1);
    let total = conns.len();
    for &n in subs.iter().filter(|&&n| n <= total) {
        let started = Instant::now();
        let mut batch: Vec<Ws> = conns.drain(..n - subscribed).collect();
        futures::stream::iter(batch.iter_mut())
            .for_each_concurrent(64, |ws| async move {
                ws.send(Message::text(
                    json!({"action": "subscribe", "channel": "bench"}).to_string(),
                ))
                .await
                .unwrap();
                while recv_json(ws).await["type"] != "subscribed" {}
            })
            .await;
        println!(
            "{} more subscribed in {:.1} s",
            n - subscribed,
            started.elapsed().as_secs_f64()
        );
        subscribed = n;
        readers.extend(spawn_readers(
            batch,
            |t| {
                let v: Value = serde_json::from_str(t).ok()?;
                (v["type"] == "message")
                    .then(|| v["data"]["round"].as_u64())
                    .flatten()
            },
            &tx,
        ));
        let logged = dev.logs.lock().unwrap().len();
        let (times, acks) = fanout_rounds(
            &mut publisher,
            |round| {
                json!({"action": "publish", "channel": "bench", "data": {"round": round}})
                    .to_string()
            },
            &mut arrivals,
            n,
            round..round + rounds,
            true,
        )
        .await;
        round += rounds;
        println!("publish → all {n} subscribers: {}", summary(&times));
        println!(
            "  publish → its ack (message function: store, hand-off): {}",
            summary(&acks)
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
    }

    // 4. `cut` clients vanish at once (no close frame): how long until every `$disconnect` has
    // run (its row gone from the connections table), and the peak RSS of everything wsctl dev
    // runs meanwhile.
    let db = dev.dynamodb();
    let table = format!("{}-{}-connections", dev.field("stack"), dev.field("stage"));
    let before = count_items(&db, &table).await as usize;
    let cut = cut.min(readers.len() + conns.len());
    let from_readers = cut.min(readers.len());
    let started = Instant::now();
    for task in readers.drain(..from_readers) {
        task.abort();
    }
    conns.drain(..cut - from_readers);
    let mut peak = tree_rss(pid);
    let mut left = before;
    while started.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        peak = peak.max(tree_rss(pid));
        left = (count_items(&db, &table).await as usize).saturating_sub(before - cut);
        if left == 0 {
            break;
        }
    }
    println!(
        "{cut} clients cut at once: {} in {:.1} s; peak RSS of wsctl dev and all it runs {peak:.0} MB",
        if left == 0 {
            "every $disconnect done".to_string()
        } else {
            format!("{left} rows still there")
        },
        started.elapsed().as_secs_f64()
    );
    drop(conns);
    // The rest go too, so the next run has the file descriptors.
    for task in readers {
        task.abort();
    }
    // The engines' own memory: moto's and DynamoDB Local's processes.
    let engines: f64 = descendants_matching(pid, "moto_server")
        .into_iter()
        .chain(descendants_matching(pid, "DynamoDbLoopback"))
        .map(rss_mb)
        .sum();
    println!("emulators' RSS at the end: {engines:.0} MB");
}

fn main() {
    raise_fd_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}
