//! `wsctl gc` over a large connections table, half of it stale, next to a sequential sweep
//! (`--concurrency 1`) over the same store in the same run.
//!
//! `cargo bench -p wsctl-tests --bench gc` (release wsctl; needs node and npm). A `wsctl dev`
//! deploys the stack; its two tables are recreated, same keys and indexes, in dynalite (a
//! DynamoDB emulator on LevelDB, installed under `target/bench-tools`), because moto's
//! index queries read the whole table and would make the store, not gc, the figure. A stub in
//! this process answers `@connections` (200 for the live half, 410 for the rest), sends
//! DynamoDB calls to dynalite and everything else to moto. What is timed is gc's own work:
//! scan, checks, batched deletes.
//! Size: `BENCH_CONNECTIONS` (100000), each with one subscription. `BENCH_RTT_MS` (0) holds
//! every answer that long, as the network round trip to AWS would.

use std::collections::HashSet;
use std::convert::Infallible;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
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
use wsctl_tests::{
    count_items, die_with_parent, free_port, isolate, root, wait_for_port, wsctl_bin,
};

const DYNALITE: &str = "dynalite@3.2.2";
const TABLES: [&str; 2] = ["chat-dev-connections", "chat-dev-subscriptions"];

/// dynalite on a loopback port, in memory, stopped when dropped.
struct Dynalite {
    url: String,
    child: Child,
}

impl Dynalite {
    fn start() -> Dynalite {
        let tools = root().join("target/bench-tools");
        let module: PathBuf = tools.join("node_modules/dynalite");
        if !module.exists() {
            let status = Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--prefix"])
                .arg(&tools)
                .arg(DYNALITE)
                .status()
                .expect("npm is needed to install dynalite for this benchmark");
            assert!(status.success(), "npm install {DYNALITE} failed");
        }
        let port = free_port();
        // The library call, not the CLI: the CLI binds every interface.
        let script = format!(
            "require({:?})({{createTableMs: 0, deleteTableMs: 0}}).listen({port}, '127.0.0.1')",
            module.display().to_string()
        );
        let mut cmd = Command::new("node");
        cmd.args(["-e", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        die_with_parent(&mut cmd);
        let child = cmd.spawn().expect("node is needed to run dynalite");
        wait_for_port(port, "dynalite");
        Dynalite {
            url: format!("http://127.0.0.1:{port}"),
            child,
        }
    }
}

impl Drop for Dynalite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates in `to` the tables `wsctl dev` deployed into `from`: keys, attributes and indexes.
async fn copy_tables(from: &aws_sdk_dynamodb::Client, to: &aws_sdk_dynamodb::Client) {
    use aws_sdk_dynamodb::types::{BillingMode, GlobalSecondaryIndex, Projection, ProjectionType};
    for name in TABLES {
        let table = from
            .describe_table()
            .table_name(name)
            .send()
            .await
            .expect("describe table")
            .table
            .expect("table");
        let indexes: Vec<GlobalSecondaryIndex> = table
            .global_secondary_indexes()
            .iter()
            .map(|g| {
                let projection = g.projection().cloned().unwrap_or_else(|| {
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build()
                });
                GlobalSecondaryIndex::builder()
                    .index_name(g.index_name().expect("index name"))
                    .set_key_schema(g.key_schema.clone())
                    .projection(projection)
                    .build()
                    .expect("index")
            })
            .collect();
        to.create_table()
            .table_name(name)
            .set_key_schema(table.key_schema)
            .set_attribute_definitions(table.attribute_definitions)
            .set_global_secondary_indexes((!indexes.is_empty()).then_some(indexes))
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .expect("create table in dynalite");
    }
}

fn db(endpoint: &str) -> aws_sdk_dynamodb::Client {
    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "local", "local", None, None, "bench",
        ))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_dynamodb::Client::from_conf(conf)
}

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

/// `@connections` GET for the live set, 200; any other id, 410; DynamoDB calls to dynalite;
/// every other call to moto.
async fn stub(moto: String, dynamo: String, live: Arc<HashSet<String>>, rtt: Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let (moto, dynamo, live, client) =
                (moto.clone(), dynamo.clone(), live.clone(), client.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: Request<hyper::body::Incoming>| {
                        let (moto, dynamo, live, client) =
                            (moto.clone(), dynamo.clone(), live.clone(), client.clone());
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
                            let to_dynamo = req
                                .headers()
                                .get("x-amz-target")
                                .and_then(|t| t.to_str().ok())
                                .is_some_and(|t| t.starts_with("DynamoDB_"));
                            let upstream = if to_dynamo { &dynamo } else { &moto };
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
fn gc(endpoint: &str, concurrency: &str) -> (Value, f64, f64) {
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
        "--concurrency",
        concurrency,
    ]);
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
    assert!(status.success(), "gc failed: {status}");
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
        .unwrap_or(100_000);
    let rtt = Duration::from_millis(
        std::env::var("BENCH_RTT_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    );
    let dev = Dev::start(&root().join("wsctl.yaml"), &[]);
    let moto = dev.field("moto");
    let dynalite = Dynalite::start();
    let db = db(&dynalite.url);
    copy_tables(&self::db(&moto), &db).await;
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
    let endpoint = stub(moto.clone(), dynalite.url.clone(), live.clone(), rtt).await;

    let endpoint2 = endpoint.clone();
    let (parallel, p_secs, p_rss) = tokio::task::spawn_blocking(move || gc(&endpoint2, "32"))
        .await
        .unwrap();
    println!(
        "gc (4 scan segments, 32 checks in flight): {parallel} — {p_secs:.1} s wall, peak RSS {p_rss:.0} MB"
    );
    assert_eq!(parallel["stale"].as_u64(), Some(stale.len() as u64));
    assert_swept(&db, &parallel, stale.len(), live.len()).await;

    populate(&db, &stale).await;
    let (sequential, s_secs, s_rss) = tokio::task::spawn_blocking(move || gc(&endpoint, "1"))
        .await
        .unwrap();
    println!(
        "sequential sweep (--concurrency 1): {sequential} — {s_secs:.1} s wall, peak RSS {s_rss:.0} MB"
    );
    assert_swept(&db, &sequential, stale.len(), live.len()).await;
    println!("speed-up: {:.1}x", s_secs / p_secs);
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}
