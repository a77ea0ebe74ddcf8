//! `wsctl dev` under load: connections accepted per second (through the authorizer and the
//! `$connect` function), memory with 10,000 idle connections, and the time for one publish to
//! reach 1,000 subscribers — next to a bare tokio broadcast server on the same machine.
//!
//! `cargo bench -p wsctl-tests --bench dev` (release wsctl, the repository's wsctl.yaml, its own
//! moto), once per data plane: `--dynamodb moto`, then `--dynamodb local` (`BENCH_DYNAMODB`,
//! default `moto,local`). Sizes: `BENCH_IDLE` (10000), `BENCH_SUBSCRIBERS` (1000),
//! `BENCH_ROUNDS` (5).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite::Message;
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

fn raise_fd_limit() {
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
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

/// Spawns a reader per subscriber that reports when each frame satisfying `is_hit` arrives.
fn readers(
    subscribers: Vec<Ws>,
    is_hit: fn(&str) -> Option<u64>,
) -> mpsc::UnboundedReceiver<(u64, Instant)> {
    let (tx, rx) = mpsc::unbounded_channel();
    for mut ws in subscribers {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(Ok(m)) = ws.next().await {
                if let Message::Text(t) = m
                    && let Some(round) = is_hit(t.as_str())
                {
                    let _ = tx.send((round, Instant::now()));
                }
            }
        });
    }
    rx
}

/// Publish → the last of `n` subscribers has it, per round.
async fn fanout_rounds(
    publisher: &mut Ws,
    frame: impl Fn(u64) -> String,
    arrivals: &mut mpsc::UnboundedReceiver<(u64, Instant)>,
    n: usize,
    rounds: usize,
) -> Vec<Duration> {
    let mut out = Vec::new();
    for round in 1..=rounds as u64 {
        let t0 = Instant::now();
        publisher
            .send(Message::text(frame(round)))
            .await
            .expect("publish");
        let mut got = 0;
        let mut last = t0;
        while got < n {
            let (r, at) = tokio::time::timeout(Duration::from_secs(30), arrivals.recv())
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
    out
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

async fn run() {
    let idle_n = env("BENCH_IDLE", 10_000);
    let subs_n = env("BENCH_SUBSCRIBERS", 1_000);
    let rounds = env("BENCH_ROUNDS", 5);
    let stores = std::env::var("BENCH_DYNAMODB").unwrap_or_else(|_| "moto,local".into());
    for store in stores.split(',') {
        println!("== wsctl dev --dynamodb {store}");
        measure(store, idle_n, subs_n, rounds).await;
    }

    // Baseline in the same run.
    let bare = broadcast_server().await;
    let (subs, _) = open(&bare, subs_n, 64).await;
    let mut arrivals = readers(subs, |t| {
        serde_json::from_str::<Value>(t).ok()?["round"].as_u64()
    });
    let mut publisher = connect(&bare).await;
    let times = fanout_rounds(
        &mut publisher,
        |round| json!({ "round": round }).to_string(),
        &mut arrivals,
        subs_n,
        rounds,
    )
    .await;
    println!(
        "publish → all {subs_n} subscribers (bare tokio broadcast server): median {} of {}",
        ms(median(times.clone())),
        times.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", ")
    );
}

async fn measure(store: &str, idle_n: usize, subs_n: usize, rounds: usize) {
    let dev = Dev::start(&root().join("wsctl.yaml"), &["--dynamodb", store]);
    let pid = dev.pid();
    let url = format!("{}?token={}", dev.field("url"), dev.token("bench").await);
    let base_rss = rss_mb(pid);
    println!(
        "wsctl dev up in {:.1} s; gateway RSS at rest {base_rss:.1} MB",
        dev.info["seconds"].as_f64().unwrap_or(0.0)
    );

    // 1. Handshakes per second, each through the authorizer and $connect (moto behind both).
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

    // 3. One publish to `subs_n` subscribers of a channel.
    let mut subscribers: Vec<Ws> = conns.drain(..subs_n).collect();
    let subscribed =
        futures::stream::iter(subscribers.iter_mut()).for_each_concurrent(32, |ws| async move {
            ws.send(Message::text(
                json!({"action": "subscribe", "channel": "bench"}).to_string(),
            ))
            .await
            .unwrap();
            while recv_json(ws).await["type"] != "subscribed" {}
        });
    subscribed.await;
    let mut arrivals = readers(subscribers, |t| {
        let v: Value = serde_json::from_str(t).ok()?;
        (v["type"] == "message")
            .then(|| v["data"]["round"].as_u64())
            .flatten()
    });
    let mut publisher = connect(&url).await;
    let publish = |round: u64| {
        json!({"action": "publish", "channel": "bench", "data": {"round": round}}).to_string()
    };
    let times = fanout_rounds(&mut publisher, publish, &mut arrivals, subs_n, rounds).await;
    println!(
        "publish → all {subs_n} subscribers (wsctl dev): median {} of {}",
        ms(median(times.clone())),
        times.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", ")
    );
    drop(conns);
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
