//! `wsctl gc` over a large connections table, half of it stale, next to a sequential sweep
//! (`--concurrency 1`) over the same store in the same run.
//!
//! `cargo bench -p wsctl-tests --bench gc` (release wsctl). The table lives in the moto of a
//! `wsctl dev`; the `@connections` answers come from a stub in this process (200 for the live
//! half, 410 for the rest), so the figure is gc's own: scan, checks, batched deletes.
//! Size: `BENCH_CONNECTIONS` (100000), each with one subscription.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use wsctl_tests::dev::Dev;
use wsctl_tests::{isolate, root, wsctl_bin};

fn db(endpoint: &str) -> aws_sdk_dynamodb::Client {
    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("local", "local", None, None, "bench"))
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
                    let item = [("pk", s(id)), ("user", s("bench")), ("connected_at", n(now - 3600)), ("ttl", n(now + 3 * 3600))];
                    WriteRequest::builder().put_request(PutRequest::builder().set_item(Some(item.into_iter().map(|(k, v)| (k.to_string(), v)).collect())).build().unwrap()).build()
                })
                .collect();
            let subs = chunk
                .iter()
                .map(|id| {
                    let item = [("channel", s("bench")), ("connection", s(id)), ("user", s("bench"))];
                    WriteRequest::builder().put_request(PutRequest::builder().set_item(Some(item.into_iter().map(|(k, v)| (k.to_string(), v)).collect())).build().unwrap()).build()
                })
                .collect();
            [("chat-dev-connections".to_string(), conns), ("chat-dev-subscriptions".to_string(), subs)]
        })
        .collect();
    futures::stream::iter(batches)
        .for_each_concurrent(8, |(table, mut requests)| async move {
            while !requests.is_empty() {
                let out = db.batch_write_item().request_items(&table, requests).send().await.expect("batch write");
                requests = out.unprocessed_items.and_then(|mut u| u.remove(&table)).unwrap_or_default();
            }
        })
        .await;
}

/// `@connections` GET for the live set, 200; any other id, 410; every other call to moto.
async fn stub(moto: String, live: Arc<HashSet<String>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let (moto, live, client) = (moto.clone(), live.clone(), client.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (moto, live, client) = (moto.clone(), live.clone(), client.clone());
                    async move {
                        let path = req.uri().path().to_string();
                        if let Some(id) = path.strip_prefix("/dev/@connections/") {
                            let id = wsctl_tests::dev::percent_decode(id);
                            let mut r = if live.contains(&id) {
                                Response::new(Full::new(Bytes::from(r#"{"connectedAt":"2026-11-25T00:00:00.000Z","identity":{"sourceIp":"127.0.0.1"},"lastActiveAt":"2026-11-25T00:00:00.000Z"}"#)))
                            } else {
                                let mut r = Response::new(Full::new(Bytes::from(r#"{"message":"gone"}"#)));
                                *r.status_mut() = hyper::StatusCode::GONE;
                                r.headers_mut().insert("x-amzn-errortype", "GoneException".parse().unwrap());
                                r
                            };
                            r.headers_mut().insert("content-type", "application/json".parse().unwrap());
                            return Ok::<_, Infallible>(r);
                        }
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let uri = format!("{moto}{}", parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
                        let mut out = Request::builder().method(parts.method).uri(uri);
                        for (k, v) in &parts.headers {
                            out = out.header(k, v);
                        }
                        let resp = client.request(out.body(Full::new(body)).unwrap()).await.expect("moto answers");
                        let (parts, body) = resp.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        Ok(Response::from_parts(parts, Full::new(body)))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    format!("http://{addr}")
}

fn gc(endpoint: &str, concurrency: &str) -> (Value, f64) {
    let mut cmd = std::process::Command::new(wsctl_bin());
    cmd.arg("--config").arg(root().join("wsctl.yaml")).args(["--endpoint-url", endpoint, "--output", "json", "gc", "--concurrency", concurrency]);
    isolate(&mut cmd);
    cmd.env("AWS_ACCESS_KEY_ID", "local").env("AWS_SECRET_ACCESS_KEY", "local").env("AWS_REGION", "us-east-1");
    let started = Instant::now();
    let out = cmd.output().expect("run gc");
    let seconds = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "gc failed: {}", String::from_utf8_lossy(&out.stderr));
    (serde_json::from_slice(&out.stdout).expect("gc JSON"), seconds)
}

async fn run() {
    let total: usize = std::env::var("BENCH_CONNECTIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let dev = Dev::start(&root().join("wsctl.yaml"), &[]);
    let moto = dev.field("moto");
    let db = db(&moto);
    let ids: Vec<String> = (0..total).map(|i| format!("bench{i:010}=")).collect();
    let live: Arc<HashSet<String>> = Arc::new(ids.iter().step_by(2).cloned().collect());
    let stale: Vec<String> = ids.iter().filter(|i| !live.contains(*i)).cloned().collect();
    let started = Instant::now();
    populate(&db, &ids).await;
    println!("populated {total} connections + {total} subscriptions in {:.1} s", started.elapsed().as_secs_f64());
    let endpoint = stub(moto.clone(), live.clone()).await;

    let endpoint2 = endpoint.clone();
    let (parallel, p_secs) = tokio::task::spawn_blocking(move || gc(&endpoint2, "32")).await.unwrap();
    println!("gc (4 scan segments, 32 checks in flight): {parallel} — {p_secs:.1} s wall");
    assert_eq!(parallel["stale"].as_u64(), Some(stale.len() as u64));

    populate(&db, &stale).await;
    let (sequential, s_secs) = tokio::task::spawn_blocking(move || gc(&endpoint, "1")).await.unwrap();
    println!("sequential sweep (--concurrency 1): {sequential} — {s_secs:.1} s wall");
    println!("speed-up: {:.1}x", s_secs / p_secs);
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(run());
}
