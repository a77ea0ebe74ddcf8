//! Fan-out against AWS's quotas, on `wsctl dev --like-aws`: the account's API Gateway throttle
//! set low, calls taking AWS-like time, thousands of virtual subscribers beside a real client.
//! Whatever the throttle refuses is retried, never lost; every subscriber gets a publish once;
//! subscribers found gone are removed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wsctl_tests::dev::{Dev, dev_config, http};

use crate::dev::wsctl;

const T: Duration = Duration::from_secs(10);
/// The account throttle `wsctl dev` plays, and the fan-out budget the functions are given
/// (below it, as a stage sharing its account should be set).
const ACCOUNT_RATE: u64 = 500;
const ACCOUNT_BURST: u64 = 250;
const BUDGET: u64 = 400;
const SUBSCRIBERS: u64 = 3000;
const GONE: u64 = 300;
/// Lambda's account concurrency `wsctl dev` plays: the publish that reads the channel and one
/// invocation that posts a chunk.
const CONCURRENCY: u64 = 2;

fn paced_dev(dir: &Path) -> (Dev, PathBuf) {
    let config = dev_config(dir);
    let text = std::fs::read_to_string(&config).expect("config");
    let paced = text.replace(
        "    # environment: { FANOUT_RATE: \"9000\", FANOUT_BURST: \"4000\" }",
        &format!(
            "    environment: {{ FANOUT_RATE: \"{BUDGET}\", FANOUT_BURST: \"{}\", FANOUT_PER_INVOCATION: \"500\" }}",
            BUDGET / 2
        ),
    );
    assert_ne!(paced, text, "the publish function's environment is set");
    std::fs::write(&config, paced).expect("write config");
    let dev = Dev::start(
        &config,
        &[
            "--like-aws",
            "--account-rate",
            &ACCOUNT_RATE.to_string(),
            "--account-burst",
            &ACCOUNT_BURST.to_string(),
            "--lambda-concurrency",
            &CONCURRENCY.to_string(),
        ],
    );
    (dev, config)
}

async fn crowd(dev: &Dev, method: &str, query: &str) -> (u16, Value) {
    let (status, body) = http(
        &format!("{}/_wsctl/virtual?{query}", dev.base()),
        method,
        b"",
    )
    .await;
    (status, serde_json::from_str(&body).unwrap_or(json!(body)))
}

/// The virtual subscribers' report once `serial` reached `expected` of them (or `within` ran
/// out), and that serial's line.
async fn arrived(dev: &Dev, serial: u64, expected: u64, within: Duration) -> (Value, Value) {
    let until = Instant::now() + within;
    loop {
        let (status, report) = crowd(dev, "GET", "channel=wide").await;
        assert_eq!(status, 200, "{report}");
        let line = report["messages"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["serial"] == serial).cloned())
            .unwrap_or(json!({"received": 0}));
        if line["received"] == expected || Instant::now() > until {
            return (report, line);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Posts the publish function's invocations say the throttle refused, so far.
fn throttled(dev: &Dev) -> u64 {
    dev.logs
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("\"fan-out\""))
        .filter_map(|l| {
            let rest = &l[l.find("\"throttled\":")? + "\"throttled\":".len()..];
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

fn publish(dev: &Dev, config: &Path, data: &str) -> Value {
    let (code, out, err) = wsctl(
        dev,
        config,
        &[
            "--output",
            "json",
            "publish",
            "--channel",
            "wide",
            "--data",
            data,
        ],
    );
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).expect("publish result")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_stays_within_the_account_throttle_and_loses_nothing_to_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (dev, config) = paced_dev(dir.path());

    // The switch refuses what it cannot do, naming the fix.
    for (query, why) in [
        ("count=10", "channel"),
        ("channel=wide&count=0", "count"),
        ("channel=wide&count=200001", "count"),
        ("channel=wide&count=10&gone=11", "gone"),
        ("channel=a%23b&count=1", "channel"),
    ] {
        let (status, body) = crowd(&dev, "POST", query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body["message"].as_str().unwrap_or("").starts_with(why),
            "{query}: {body}"
        );
    }
    let (status, body) = crowd(&dev, "GET", "channel=nobody").await;
    assert_eq!(status, 404, "{body}");

    let (status, added) = crowd(
        &dev,
        "POST",
        &format!("channel=wide&count={SUBSCRIBERS}&gone={GONE}"),
    )
    .await;
    assert_eq!(status, 200, "{added}");
    assert_eq!(added["members"], SUBSCRIBERS - GONE);
    let live = SUBSCRIBERS - GONE;
    let mut reader = dev.connect("reader").await;
    reader
        .send(json!({"action": "subscribe", "channel": "wide"}))
        .await;
    reader
        .expect("subscribed", |f| f["type"] == "subscribed", T)
        .await;

    // One publish, paced by the budget below the throttle.
    stats(&dev, true).await;
    let first = publish(&dev, &config, r#"{"n":1}"#);
    let serial = first["serial"].as_u64().expect("serial");
    let m = reader
        .expect("the message", |f| f["type"] == "message", T * 3)
        .await;
    assert_eq!(m["serial"], serial);
    let (report, line) = arrived(&dev, serial, live, Duration::from_secs(90)).await;
    assert_eq!(line["received"], live, "every live subscriber: {line}");
    assert_eq!(line["duplicates"], 0, "none twice: {line}");
    let spread =
        (line["last_us"].as_u64().unwrap() - line["first_us"].as_u64().unwrap()) as f64 / 1e6;
    let rate = (live - BUDGET / 2) as f64 / spread;
    let paced_throttles = throttled(&dev);
    eprintln!(
        "{live} virtual subscribers in {spread:.2} s ({rate:.0}/s against a budget of {BUDGET}/s \
         and a throttle of {ACCOUNT_RATE}/s); {paced_throttles} posts throttled; {report}"
    );
    assert!(
        rate <= BUDGET as f64 * 1.15,
        "the fan-out keeps to its budget: {rate:.0}/s"
    );
    assert!(
        paced_throttles <= live / 20,
        "paced below the throttle, few posts meet it: {paced_throttles}"
    );
    // The gone were found gone and removed, items and all.
    let until = Instant::now() + T * 3;
    let mut left = report["gone_with_items"].as_u64().unwrap_or(u64::MAX);
    while left > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(500)).await;
        left = crowd(&dev, "GET", "channel=wide").await.1["gone_with_items"]
            .as_u64()
            .unwrap_or(u64::MAX);
    }
    assert_eq!(left, 0, "every gone subscriber removed");
    // Its invocations kept within Lambda's concurrency, the rest waiting in the queue.
    let used = stats(&dev, false).await;
    eprintln!("metered: {used}");
    let lambda = &used["lambda"];
    assert_eq!(lambda["peak_concurrency"], CONCURRENCY, "{lambda}");
    let publish_requests = lambda["functions"]["chat-dev-publish"]["requests"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        publish_requests >= SUBSCRIBERS / 100,
        "the channel went out in chunks of 100 (a quarter second at the budget): {lambda}"
    );
    assert!(
        used["api_gateway"]["messages"].as_u64().unwrap_or(0) >= live,
        "each post is a message: {used}"
    );
    // Reading the channel's subscriptions costs read units, the publish writes some.
    let dynamodb = &used["dynamodb"];
    assert!(
        dynamodb["read_units"].as_f64().unwrap_or(0.0) >= 10.0
            && dynamodb["write_units"].as_f64().unwrap_or(0.0) >= 1.0,
        "{used}"
    );

    // Another API of the account takes 300 requests a second meanwhile: the fan-out meets the
    // throttle, waits and goes again, and still delivers everything once.
    let stop = Arc::new(AtomicBool::new(false));
    let spent = Arc::new(AtomicU64::new(0));
    let neighbour = {
        let (stop, spent) = (stop.clone(), spent.clone());
        let url = format!("{}/someone", dev.field("connections_url"));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / 300));
            while !stop.load(Ordering::SeqCst) {
                tick.tick().await;
                let url = url.clone();
                let spent = spent.clone();
                tokio::spawn(async move {
                    http(&url, "GET", b"").await;
                    spent.fetch_add(1, Ordering::SeqCst);
                });
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = publish(&dev, &config, r#"{"n":2}"#);
    let serial = second["serial"].as_u64().expect("serial");
    let m = reader
        .expect("the second message", |f| f["type"] == "message", T * 6)
        .await;
    assert_eq!(m["serial"], serial);
    let (_, line) = arrived(&dev, serial, live, Duration::from_secs(120)).await;
    stop.store(true, Ordering::SeqCst);
    let _ = neighbour.await;
    let contended = throttled(&dev) - paced_throttles;
    eprintln!(
        "beside {} requests of another API: {line}; {contended} posts throttled and sent again",
        spent.load(Ordering::SeqCst)
    );
    assert_eq!(line["received"], live, "every live subscriber: {line}");
    assert_eq!(line["duplicates"], 0, "none twice: {line}");
    assert!(
        contended > 0,
        "the neighbour's load made the throttle refuse posts"
    );
    let (status, gone) = crowd(&dev, "DELETE", "channel=wide").await;
    assert_eq!(
        (status, gone["removing"].as_u64()),
        (200, Some(SUBSCRIBERS)),
        "{gone}"
    );

    // The bench adds its own virtual subscribers, reports what they got and prices the run.
    let (code, out, err) = wsctl(
        &dev,
        &config,
        &[
            "--output",
            "json",
            "bench",
            "-n",
            "2",
            "--rounds",
            "2",
            "--virtual",
            "300",
            "--via",
            "function",
            "--price",
            "message=2",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).expect("bench JSON");
    let v = &report["virtual_subscribers"];
    assert_eq!(
        (v["expected"].as_u64(), v["delivered"].as_u64()),
        (Some(600), Some(600)),
        "{v}"
    );
    assert_eq!(v["duplicated"], 0, "{v}");
    let bill = &report["bill"];
    let messages = &bill["lines"][0];
    assert!(
        messages["quantity"].as_f64().unwrap_or(0.0) >= 604.0,
        "{bill}"
    );
    assert_eq!(
        messages["unit_usd"], 2e-6,
        "the price given replaces the list price: {bill}"
    );
    assert!(bill["total_usd"].as_f64().unwrap_or(0.0) > 0.0, "{bill}");
    assert!(
        bill["peak_lambda_concurrency"].as_u64().unwrap_or(0) >= 1,
        "{bill}"
    );
}

/// DynamoDB's per-partition throughput as `--like-aws` plays it: calls to one partition key
/// over its write units a second are refused with the error and reason DynamoDB gives a hot
/// key, another key is served meanwhile, the hot key is served again once its second is paid
/// back, and the units are metered for the bill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_partition_key_is_throttled_as_dynamodb_throttles_it() {
    use aws_sdk_dynamodb::config::retry::RetryConfig;
    use aws_sdk_dynamodb::types::AttributeValue::S;

    const WRITES: usize = 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dev_config(dir.path());
    let dev = Dev::start(
        &config,
        &["--like-aws", "--partition-writes", &WRITES.to_string()],
    );
    // Without the SDK's retries, to see each answer.
    let conf = aws_sdk_dynamodb::config::Builder::from(&dev.sdk())
        .retry_config(RetryConfig::disabled())
        .build();
    let db = aws_sdk_dynamodb::Client::from_conf(conf);
    let put = |channel: &str, n: usize| {
        db.put_item()
            .table_name("chat-dev-subscriptions")
            .item("channel", S(channel.into()))
            .item("connection", S(format!("c{n}")))
            .send()
    };
    stats(&dev, true).await;
    let burst = futures::future::join_all((0..WRITES * 3).map(|n| put("hot", n))).await;
    let served = burst.iter().filter(|r| r.is_ok()).count();
    let refused: Vec<_> = burst.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        (WRITES..WRITES * 2).contains(&served),
        "a second's write units, and what refilled meanwhile: {served} of {}",
        WRITES * 3
    );
    let e = refused.first().expect("some were refused");
    let raw = e
        .raw_response()
        .and_then(|r| r.body().bytes())
        .map(|b| String::from_utf8_lossy(b).to_string())
        .unwrap_or_default();
    let service = e.as_service_error().expect("refused by the service");
    use aws_sdk_dynamodb::error::ProvideErrorMetadata;
    assert_eq!(service.code(), Some("ThrottlingException"), "{raw}");
    assert!(service.message().unwrap_or("").contains("hot key"), "{raw}");
    assert!(
        raw.contains("TableWriteKeyRangeThroughputExceeded"),
        "{raw}"
    );
    put("cold", 0)
        .await
        .expect("another key has its own partition");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    put("hot", 0).await.expect("served again once paid back");
    let used = stats(&dev, false).await;
    let d = &used["dynamodb"];
    assert_eq!(
        d["throttled"].as_u64(),
        Some(refused.len() as u64),
        "{used}"
    );
    // Each put writes the table and its by-connection index: two units billed, one charged to
    // the key's partition.
    let units = d["write_units"].as_f64().unwrap_or(0.0);
    assert!(units >= (served + 2) as f64 * 1.5, "{used}");
}

/// Past what DynamoDB serves one key, after the functions' own retries, a frame is refused as
/// a rate limit the client can wait out (`rate_limited` with `retry_after_ms`), never as a
/// server failure, and every publish acknowledged is delivered.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_hotter_than_its_partition_refuses_frames_with_a_time_to_retry() {
    const PUBLISHES: usize = 15;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dev_config(dir.path());
    // Two write units a second per key: a burst of publishes on one connection and one
    // channel is far past what its keys serve.
    let dev = Dev::start(&config, &["--like-aws", "--partition-writes", "2"]);
    let mut reader = dev.connect("reader").await;
    reader
        .send(json!({"action": "subscribe", "channel": "busy"}))
        .await;
    reader
        .expect(
            "subscribed",
            |f| f["type"] == "subscribed",
            Duration::from_secs(30),
        )
        .await;
    let mut writer = dev.connect("writer").await;
    for i in 0..PUBLISHES {
        writer
            .send(json!({"action": "publish", "channel": "busy", "data": i, "id": format!("p{i}")}))
            .await;
    }
    // Every publish is answered with its own id, an ack or an error, never API Gateway's
    // bare `Internal server error` of an invocation cut off by its timeout while it waited
    // on the key.
    let (mut acked, mut refused) = (Vec::new(), Vec::new());
    while acked.len() + refused.len() < PUBLISHES {
        let f = writer
            .recv(Duration::from_secs(90))
            .await
            .expect("every publish is answered");
        assert!(
            f["id"].as_str().is_some_and(|id| id.starts_with('p')),
            "an answer that names its publish: {f}\n{}",
            dev.logs.lock().unwrap().join("\n")
        );
        match f["type"].as_str() {
            Some("ack") => {
                assert_ne!(f["duplicate"], true, "a first publish of its id: {f}");
                acked.push(f["serial"].as_u64().expect("a serial"));
            }
            Some("error") => refused.push(f),
            _ => panic!("an ack or an error: {f}"),
        }
    }
    assert!(!refused.is_empty(), "some were past the keys' throughput");
    for e in &refused {
        assert_eq!(e["code"], "rate_limited", "{e}");
        assert!(e["retry_after_ms"].as_u64() >= Some(1000), "{e}");
        assert!(
            e["message"].as_str().unwrap_or("").contains("hot key"),
            "{e}"
        );
    }
    assert!(!acked.is_empty(), "the keys served some");
    let mut missing: std::collections::HashSet<u64> = acked.iter().copied().collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !missing.is_empty() && Instant::now() < deadline {
        match reader.recv(Duration::from_secs(1)).await {
            Some(f) if f["type"] == "message" => {
                let serial = f["serial"].as_u64().unwrap_or_default();
                assert!(missing.remove(&serial), "one delivery of each: {f}");
            }
            _ => {}
        }
    }
    assert!(
        missing.is_empty(),
        "acknowledged, never delivered: {missing:?}\n{}",
        dev.logs.lock().unwrap().join("\n")
    );
}

/// `/_wsctl/stats`, reset after reading when `reset`.
async fn stats(dev: &Dev, reset: bool) -> Value {
    let query = if reset { "?reset=1" } else { "" };
    let (status, body) = http(&format!("{}/_wsctl/stats{query}", dev.base()), "GET", b"").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("stats JSON")
}
