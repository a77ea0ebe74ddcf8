//! `wsctl gc` over a large connections table, half of it stale, next to a one-at-a-time sweep
//! (`--concurrency 1 --lookup index`: each id checked, then its subscriptions found by index
//! and deleted, one after another) over the same store in the same run.
//!
//! `cargo bench -p wsctl-tests --bench gc` (release wsctl). A `wsctl dev` runs the stack, its
//! items in DynamoDB Local (the default data plane), and gc sweeps its tables. A stub in this
//! process answers `@connections` (200 for the live half, 410 for the rest) and passes every
//! other call on to `wsctl dev`'s AWS endpoint: 50,000 live WebSocket clients and their
//! gateway would need 100,000 open files on this machine, five times its limit. What is timed
//! is gc's own work: scan, checks, batched deletes.
//! Size: `BENCH_CONNECTIONS` (10000), each with one subscription. DynamoDB Local answers one
//! call at a time, and its index queries take longer as the table grows (33–50 ms each at
//! 100,000 rows), so the one-at-a-time sweep of 100,000 rows takes most of an hour:
//! `BENCH_BASELINE_BUDGET_S` stops it after that many seconds (gc's --max-duration), and its
//! rate so far is reported, with the time the whole sweep would take at that rate.
//! `BENCH_RTT_MS` (0) holds every answer that long, as the network round trip to AWS would.

use std::collections::HashSet;
use std::convert::Infallible;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use wsctl_tests::dev::Dev;
use wsctl_tests::{count_items, isolate, root, wsctl_bin};

const TABLES: [&str; 2] = ["chat-dev-connections", "chat-dev-subscriptions"];

/// Writes `ids` as connections with one subscription each, as `$connect` and `subscribe` would.
async fn populate(db: &aws_sdk_dynamodb::Client, ids: &[String]) {
    let now = wsctl_functions::auth::now();
    let s = |v: &str| AttributeValue::S(v.to_string());
    let n = |v: u64| AttributeValue::N(v.to_string());
    let batches: Vec<(String, Vec<WriteRequest>)> = ids
        .chunks(25)
        .flat_map(|chunk| {
            let conns = chunk
                .iter()
                .map(|id| {
                    let item = [
                        ("pk", s(id)),
                        ("user", s("bench")),
                        ("connected_at", n(now - 3600)),
                        ("ttl", n(now + 3 * 3600)),
                    ];
                    WriteRequest::builder()
                        .put_request(
                            PutRequest::builder()
                                .set_item(Some(
                                    item.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
                                ))
                                .build()
                                .unwrap(),
                        )
                        .build()
                })
                .collect();
            let subs = chunk
                .iter()
                .map(|id| {
                    let item = [
                        ("channel", s("bench")),
                        ("connection", s(id)),
                        ("user", s("bench")),
                    ];
                    WriteRequest::builder()
                        .put_request(
                            PutRequest::builder()
                                .set_item(Some(
                                    item.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
                                ))
                                .build()
                                .unwrap(),
                        )
                        .build()
                })
                .collect();
            [
                ("chat-dev-connections".to_string(), conns),
                ("chat-dev-subscriptions".to_string(), subs),
            ]
        })
        .collect();
    futures::stream::iter(batches)
        .for_each_concurrent(8, |(table, mut requests)| async move {
            while !requests.is_empty() {
                let out = db
                    .batch_write_item()
                    .request_items(&table, requests)
                    .send()
                    .await
                    .expect("batch write");
                requests = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(&table))
                    .unwrap_or_default();
            }
        })
        .await;
}

/// `@connections` GET for the live set, 200; any other id, 410; every other call to `upstream`.
async fn stub(upstream: String, live: Arc<HashSet<String>>, rtt: Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let (upstream, live, client) = (upstream.clone(), live.clone(), client.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: Request<hyper::body::Incoming>| {
                        let (upstream, live, client) =
                            (upstream.clone(), live.clone(), client.clone());
                        async move {
                            if !rtt.is_zero() {
                                tokio::time::sleep(rtt).await;
                            }
                            let path = req.uri().path().to_string();
                            if let Some(id) = path.strip_prefix("/dev/@connections/") {
                                let id = wsctl_tests::dev::percent_decode(id);
                                let mut r = if live.contains(&id) {
                                    Response::new(Full::new(Bytes::from(
                                        r#"{"connectedAt":"2026-11-25T00:00:00.000Z","identity":{"sourceIp":"127.0.0.1"},"lastActiveAt":"2026-11-25T00:00:00.000Z"}"#,
                                    )))
                                } else {
                                    let mut r = Response::new(Full::new(Bytes::from(
                                        r#"{"message":"gone"}"#,
                                    )));
                                    *r.status_mut() = hyper::StatusCode::GONE;
                                    r.headers_mut().insert(
                                        "x-amzn-errortype",
                                        "GoneException".parse().unwrap(),
                                    );
                                    r
                                };
                                r.headers_mut()
                                    .insert("content-type", "application/json".parse().unwrap());
                                return Ok::<_, Infallible>(r);
                            }
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let uri = format!(
                                "{upstream}{}",
                                parts
                                    .uri
                                    .path_and_query()
                                    .map(|p| p.as_str())
                                    .unwrap_or("/")
                            );
                            let mut out = Request::builder().method(parts.method).uri(uri);
                            for (k, v) in &parts.headers {
                                out = out.header(k, v);
                            }
                            let resp = client
                                .request(out.body(Full::new(body)).unwrap())
                                .await
                                .expect("upstream answers");
                            let (parts, body) = resp.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            Ok(Response::from_parts(parts, Full::new(body)))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

/// After a sweep, exactly the live half is left, in both tables.
async fn assert_swept(db: &aws_sdk_dynamodb::Client, summary: &Value, stale: usize, live: usize) {
    assert_eq!(
        summary["deleted"].as_u64(),
        Some(stale as u64),
        "every stale id deleted: {summary}"
    );
    for table in TABLES {
        assert_eq!(
            count_items(db, table).await,
            live as u64,
            "{table} holds exactly the live connections"
        );
    }
}

/// One gc run: its JSON summary, wall seconds and peak RSS in MB.
fn gc(endpoint: &str, extra: &[&str]) -> (Value, f64, f64) {
    use std::io::Read;
    let mut cmd = Command::new(wsctl_bin());
    cmd.arg("--config").arg(root().join("wsctl.yaml")).args([
        "--endpoint-url",
        endpoint,
        // The stub serves `@connections` too; moto's API reports AWS's address.
        "--gateway-url",
        endpoint,
        "--output",
        "json",
        "gc",
    ]);
    cmd.args(extra);
    isolate(&mut cmd);
    cmd.env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_REGION", "us-east-1");
    cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let started = Instant::now();
    let mut child = cmd.spawn().expect("run gc");
    // The kernel's high-water mark of the running process. (A child's rusage would not do: it
    // carries the RSS of the forking bench process from before exec.)
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0u64;
    let status = loop {
        if let Some(kb) = std::fs::read_to_string(&status_file).ok().and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmHWM:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
        }) {
            peak_kb = peak_kb.max(kb);
        }
        if let Some(status) = child.try_wait().expect("wait for gc") {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let seconds = started.elapsed().as_secs_f64();
    // 9: stopped at --max-duration, as asked.
    assert!(
        status.success() || status.code() == Some(9),
        "gc failed: {status}"
    );
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read gc output");
    (
        serde_json::from_str(&out).expect("gc JSON"),
        seconds,
        peak_kb as f64 / 1024.0,
    )
}

async fn run() {
    let total: usize = std::env::var("BENCH_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let rtt = Duration::from_millis(
        std::env::var("BENCH_RTT_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    );
    // On AWS an item past its TTL stays until DynamoDB gets to it; gc meets such rows.
    let dev = Dev::start(&root().join("wsctl.yaml"), &["--ttl-sweep", "0"]);
    let db = dev.dynamodb();
    let ids: Vec<String> = (0..total).map(|i| format!("bench{i:010}=")).collect();
    let live: Arc<HashSet<String>> = Arc::new(ids.iter().step_by(2).cloned().collect());
    let stale: Vec<String> = ids.iter().filter(|i| !live.contains(*i)).cloned().collect();
    let started = Instant::now();
    populate(&db, &ids).await;
    println!("round trip to every call: {} ms", rtt.as_millis());
    println!(
        "populated {total} connections + {total} subscriptions in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let endpoint = stub(dev.base(), live.clone(), rtt).await;

    let endpoint2 = endpoint.clone();
    let (parallel, p_secs, p_rss) = tokio::task::spawn_blocking(move || gc(&endpoint2, &[]))
        .await
        .unwrap();
    println!(
        "gc (defaults: 4 scan segments, 32 checks in flight, --lookup auto): {parallel} — {p_secs:.1} s wall, peak RSS {p_rss:.0} MB"
    );
    assert_eq!(parallel["stale"].as_u64(), Some(stale.len() as u64));
    assert_swept(&db, &parallel, stale.len(), live.len()).await;

    populate(&db, &stale).await;
    let mut args: Vec<String> = ["--concurrency", "1", "--lookup", "index"]
        .map(String::from)
        .to_vec();
    if let Ok(seconds) = std::env::var("BENCH_BASELINE_BUDGET_S") {
        args.extend(["--max-duration".into(), format!("{seconds}s")]);
    }
    let (sequential, s_secs, s_rss) = tokio::task::spawn_blocking(move || {
        gc(
            &endpoint,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    })
    .await
    .unwrap();
    println!(
        "one at a time (--concurrency 1 --lookup index): {sequential} — {s_secs:.1} s wall, peak RSS {s_rss:.0} MB"
    );
    if sequential["complete"] == true {
        assert_swept(&db, &sequential, stale.len(), live.len()).await;
        println!("speed-up: {:.1}x", s_secs / p_secs);
    } else {
        // Rows are scanned in no particular order, so the rows checked so far hold live and
        // stale ids in about the table's proportion.
        let scanned = sequential["scanned"].as_f64().unwrap_or(0.0);
        let whole = s_secs * total as f64 / scanned.max(1.0);
        println!(
            "one at a time stopped after {s_secs:.0} s with {scanned} of {total} rows checked: at that rate the whole sweep takes about {whole:.0} s, {:.1}x gc's time",
            whole / p_secs
        );
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}
