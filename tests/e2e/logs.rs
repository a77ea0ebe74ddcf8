//! `wsctl logs` against `wsctl dev`: the functions' lines reach the emulator's CloudWatch Logs
//! as Lambda's do, and one connection is followed through every function.

use std::collections::HashMap;
use std::io::BufRead;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::SinkExt;
use serde_json::{Value, json};
use wsctl_tests::ctrl_c;
use wsctl_tests::dev::{Dev, dev_config};

use crate::dev::wsctl;

const T: Duration = Duration::from_secs(10);

fn is(kind: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["type"] == kind
}

/// `wsctl --output json logs ARGS…`'s lines.
fn logs(dev: &Dev, config: &std::path::Path, args: &[&str]) -> Vec<Value> {
    let (code, out, err) = wsctl(dev, config, &[&["--output", "json", "logs"], args].concat());
    assert_eq!(code, 0, "{err}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The first line from `source` whose message contains every one of `parts`.
fn find(lines: &[Value], source: &str, parts: &[&str]) -> Option<usize> {
    lines.iter().position(|l| {
        l["source"] == source
            && parts
                .iter()
                .all(|p| l["message"].as_str().unwrap_or_default().contains(p))
    })
}

fn presence_fan_outs(lines: &[Value]) -> usize {
    lines
        .iter()
        .filter(|l| {
            let m = l["message"].as_str().unwrap_or_default();
            l["source"] == "publish" && m.contains("\"fan-out\"") && m.contains("l-1")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_follow_one_connection_through_every_function_in_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dev_config(dir.path());
    let dev = Dev::start(&config, &[]);

    // A follower from the start: every line of the message function, each exactly once
    // however often its polls read the same seconds again.
    let mut follower = dev
        .command(
            &config,
            &[
                "--output", "json", "logs", "message", "--follow", "--since", "1m",
            ],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("wsctl logs --follow");
    let followed = Arc::new(Mutex::new(Vec::<Value>::new()));
    let sink = followed.clone();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            sink.lock()
                .unwrap()
                .push(serde_json::from_str(&line).expect("JSON line"));
        }
    });

    let before = dev.connection_ids().await;
    let mut lena = dev.connect("lena").await;
    let id = dev
        .connection_ids()
        .await
        .into_iter()
        .find(|i| !before.contains(i))
        .expect("lena's connection id");
    let mut omar = dev.connect("omar").await;
    omar.send(json!({"action": "subscribe", "channel": "l-1"}))
        .await;
    omar.expect("subscribed", is("subscribed"), T).await;

    lena.send(json!({"action": "subscribe", "channel": "l-1"}))
        .await;
    lena.expect("subscribed", is("subscribed"), T).await;
    lena.send(json!({"action": "presence", "channel": "l-1", "enter": true}))
        .await;
    omar.expect("lena enters", is("presence"), T).await;
    lena.send(json!({"action": "publish", "channel": "l-1", "id": "p-1", "data": "hi"}))
        .await;
    lena.expect("ack", is("ack"), T).await;
    omar.expect("the message", is("message"), T).await;
    // Her own copy too, so the fan-out is done before she leaves.
    lena.expect("her own copy", is("message"), T).await;
    drop(lena);
    omar.expect(
        "lena leaves",
        |v| v["type"] == "presence" && v["event"] == "leave",
        T,
    )
    .await;

    // Lines reach the emulator's CloudWatch Logs within a moment, as on AWS.
    let started = Instant::now();
    let got = loop {
        let got = logs(&dev, &config, &["--connection", &id, "--since", "5m"]);
        if find(&got, "disconnect", &["disconnected"]).is_some() && presence_fan_outs(&got) >= 2 {
            break got;
        }
        assert!(started.elapsed() < 2 * T, "not all there yet: {got:#?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let messages: Vec<&str> = got.iter().map(|l| l["message"].as_str().unwrap()).collect();
    for m in &messages {
        assert!(m.contains(&id), "only lines about {id}: {m}");
    }
    let steps = [
        (
            "the handshake",
            find(&got, "authorizer", &["token accepted", "lena"]),
        ),
        ("the connect", find(&got, "connect", &["connected", "lena"])),
        (
            "the subscribe",
            find(
                &got,
                "message",
                &["\"frame\"", "\"action\":\"subscribe\"", "l-1"],
            ),
        ),
        (
            "the publish",
            find(
                &got,
                "message",
                &["\"frame\"", "\"action\":\"publish\"", "\"serial\""],
            ),
        ),
        (
            "the message's fan-out",
            find(&got, "message", &["\"fan-out\"", "\"delivered\":2"]),
        ),
        (
            "the disconnect",
            find(&got, "disconnect", &["disconnected"]),
        ),
    ];
    let mut last = None;
    for (what, at) in steps {
        let at = at.unwrap_or_else(|| panic!("no line for {what}:\n{}", messages.join("\n")));
        assert!(
            last.is_none_or(|l| at > l),
            "{what} out of order:\n{}",
            messages.join("\n")
        );
        last = Some(at);
    }
    // Lena's presence `enter` and `leave` went out through the publish function, whose lines
    // carry her connection too (when they come is the fan-out's own business).
    assert_eq!(presence_fan_outs(&got), 2, "{}", messages.join("\n"));
    let times: Vec<i64> = got
        .iter()
        .map(|l| l["timestamp"].as_i64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "merged in time order"
    );

    // Lambda's own lines around each invocation, with what it bills.
    let connect = &got[find(&got, "connect", &["connected"]).unwrap()];
    let span: Value = serde_json::from_str(connect["message"].as_str().unwrap()).unwrap();
    let request = span["span"]["request"].as_str().expect("the request id");
    let one: Vec<String> = logs(&dev, &config, &["connect", "--request-id", request])
        .iter()
        .map(|l| l["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        one.len(),
        4,
        "START, the function's line, END, REPORT: {one:#?}"
    );
    assert_eq!(
        one[0],
        format!("START RequestId: {request} Version: $LATEST")
    );
    assert!(one[1].contains("connected"), "{one:#?}");
    assert_eq!(one[2], format!("END RequestId: {request}"));
    assert!(
        one[3].starts_with(&format!("REPORT RequestId: {request}\tDuration: "))
            && one[3].contains("\tBilled Duration: ")
            && one[3].contains("\tMemory Size: "),
        "{one:#?}"
    );

    // A term pattern narrows further; a function that is not the stack's is named.
    let filter = "frame -subscribe -presence";
    let framed = logs(
        &dev,
        &config,
        &["message", "--connection", &id, "--filter", filter],
    );
    assert_eq!(framed.len(), 1, "only the publish frame: {framed:#?}");
    assert!(
        framed[0]["message"]
            .as_str()
            .unwrap()
            .contains("\"action\":\"publish\"")
    );
    let (code, _, err) = wsctl(&dev, &config, &["logs", "mesage"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("\"mesage\" is not a function of this stack") && err.contains("message"),
        "{err}"
    );

    // The follower has had every message-function line about lena, each once.
    let started = Instant::now();
    loop {
        let seen = followed.lock().unwrap().clone();
        let ours = seen
            .iter()
            .filter(|l| l["message"].as_str().unwrap_or_default().contains(&id))
            .count();
        let in_range = got.iter().filter(|l| l["source"] == "message").count();
        if ours >= in_range {
            let mut ids: HashMap<String, usize> = HashMap::new();
            for l in &seen {
                *ids.entry(l["event_id"].as_str().unwrap().to_string())
                    .or_default() += 1;
            }
            assert!(
                ids.values().all(|n| *n == 1),
                "a line printed twice: {seen:#?}"
            );
            assert_eq!(ours, in_range, "{seen:#?}");
            break;
        }
        assert!(
            started.elapsed() < T,
            "the follower has {ours} of {in_range}: {seen:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Past a few polls, nothing is printed again.
    let count = followed.lock().unwrap().len();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        followed.lock().unwrap().len(),
        count,
        "polls repeat nothing"
    );
    assert!(
        ctrl_c(&mut follower, Duration::from_secs(10)).success(),
        "Ctrl-C ends it cleanly"
    );
}

/// `wsctl metrics`' total of `name` for `function` under `dimensions` (0 when absent).
fn total(metrics: &Value, function: &str, name: &str, dimensions: Value) -> f64 {
    metrics["metrics"]
        .as_array()
        .expect("metrics")
        .iter()
        .find(|m| m["function"] == function && m["name"] == name && m["dimensions"] == dimensions)
        .map(|m| m["total"].as_f64().expect("a count"))
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_exactly_what_a_known_load_did() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dev_config(dir.path());
    let dev = Dev::start(&config, &[]);

    let refused =
        wsctl_tests::dev::Client::connect(&format!("{}?token=forged", dev.field("url"))).await;
    assert!(
        matches!(refused, Err(wsctl_tests::dev::Refused::Status(403))),
        "a forged token is refused"
    );
    let mut clients = Vec::new();
    for i in 0..3 {
        let mut c = dev.connect(&format!("m-{i}")).await;
        c.send(json!({"action": "subscribe", "channel": "m-1"}))
            .await;
        c.expect("subscribed", is("subscribed"), T).await;
        clients.push(c);
    }
    for n in 0..4 {
        clients[0]
            .send(json!({"action": "publish", "channel": "m-1", "id": format!("m-{n}"), "data": n}))
            .await;
        clients[0].expect("ack", is("ack"), T).await;
    }
    // The publisher's own copies came among its acks.
    for c in clients.iter_mut().skip(1) {
        for _ in 0..4 {
            c.expect("a message", is("message"), T).await;
        }
    }
    clients[1]
        .ws
        .send(tokio_tungstenite::tungstenite::Message::text("not json"))
        .await
        .expect("send");
    clients[1]
        .expect(
            "bad_json",
            |v| v["type"] == "error" && v["code"] == "bad_json",
            T,
        )
        .await;
    // Invented actions: were each one a metric dimension, every new name would be a custom
    // metric on the stack's bill, month after month.
    for n in 0..2 {
        clients[2]
            .send(json!({"action": format!("invented-{n}"), "channel": "m-1"}))
            .await;
        clients[2]
            .expect("unknown_action", |v| v["code"] == "unknown_action", T)
            .await;
    }
    drop(clients);

    let started = Instant::now();
    let metrics = loop {
        let (code, out, err) = wsctl(
            &dev,
            &config,
            &["--output", "json", "metrics", "--since", "10m"],
        );
        assert_eq!(code, 0, "{err}");
        let m: Value = serde_json::from_str(&out).expect("JSON");
        // The gateway's and the runtime's own metrics are written every few seconds.
        if total(&m, "disconnect", "Disconnects", json!({})) == 3.0
            && total(&m, "disconnect", "Lambda:Invocations", json!({})) == 3.0
        {
            break m;
        }
        assert!(started.elapsed() < T, "not all there yet: {m:#}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let none = json!({});
    let expected = [
        ("authorizer", "HandshakesAccepted", none.clone(), 3.0),
        (
            "authorizer",
            "HandshakesRefused",
            json!({"Reason": "invalid"}),
            1.0,
        ),
        ("connect", "Connects", none.clone(), 3.0),
        ("message", "Frames", json!({"Action": "subscribe"}), 3.0),
        ("message", "Frames", json!({"Action": "publish"}), 4.0),
        ("message", "Frames", json!({"Action": "unknown"}), 3.0),
        ("message", "Refusals", json!({"Code": "bad_json"}), 1.0),
        (
            "message",
            "Refusals",
            json!({"Code": "unknown_action"}),
            2.0,
        ),
        ("message", "Publishes", none.clone(), 4.0),
        ("message", "Delivered", none.clone(), 12.0),
        ("message", "Gone", none.clone(), 0.0),
        ("message", "FailedPosts", none.clone(), 0.0),
        ("message", "HandOffs", none.clone(), 0.0),
        ("disconnect", "Disconnects", none.clone(), 3.0),
        // API Gateway's and Lambda's own, as wsctl dev writes them for GetMetricData. The
        // forged handshake never reached $connect; the authorizer ran for it too.
        ("api", "ApiGateway:ConnectCount", none.clone(), 3.0),
        // In: 3 subscribes, 4 publishes, 1 bad frame, 2 invented actions. Out: 3 subscribed,
        // 4 acks, 12 deliveries, 3 errors.
        ("api", "ApiGateway:MessageCount", none.clone(), 32.0),
        ("authorizer", "Lambda:Invocations", none.clone(), 4.0),
        ("connect", "Lambda:Invocations", none.clone(), 3.0),
        ("disconnect", "Lambda:Invocations", none.clone(), 3.0),
        ("connect", "Lambda:Errors", none.clone(), 0.0),
    ];
    for (function, name, dimensions, want) in expected {
        assert_eq!(
            total(&metrics, function, name, dimensions.clone()),
            want,
            "{function} {name} {dimensions}: {metrics:#}"
        );
    }
    assert!(
        !metrics.to_string().contains("invented"),
        "a client's string is never a dimension: {metrics:#}"
    );
    assert!(
        metrics["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["function"] != "publish"),
        "a channel of three never reaches the publish function: {metrics:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_access_log_has_each_connect_message_and_disconnect_of_a_connection() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dev_config(dir.path());
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text}\naccess_logs: {{ account_role: create }}\n"),
    )
    .unwrap();
    let dev = Dev::start(&config, &[]);

    // A forged handshake: refused by the authorizer, logged with its status.
    let refused =
        wsctl_tests::dev::Client::connect(&format!("{}?token=forged", dev.field("url"))).await;
    assert!(refused.is_err(), "a forged token is refused");

    let before = dev.connection_ids().await;
    let mut ada = dev.connect("ada").await;
    let id = dev
        .connection_ids()
        .await
        .into_iter()
        .find(|i| !before.contains(i))
        .expect("ada's connection id");
    ada.send(json!({"action": "subscribe", "channel": "a-1"}))
        .await;
    ada.expect("subscribed", is("subscribed"), T).await;
    drop(ada);

    let started = Instant::now();
    let lines = loop {
        let got = logs(
            &dev,
            &config,
            &["--access", "--connection", &id, "--since", "5m"],
        );
        let access: Vec<Value> = got
            .iter()
            .filter(|l| l["source"] == "access")
            .filter_map(|l| serde_json::from_str(l["message"].as_str()?).ok())
            .collect();
        if access.iter().any(|l| l["eventType"] == "DISCONNECT") {
            break access;
        }
        assert!(started.elapsed() < 2 * T, "not all there yet: {got:#?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let events: Vec<(&str, &str, &str)> = lines
        .iter()
        .map(|l| {
            (
                l["eventType"].as_str().unwrap(),
                l["routeKey"].as_str().unwrap(),
                l["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("CONNECT", "$connect", "200"),
            ("MESSAGE", "$default", "200"),
            ("DISCONNECT", "$disconnect", "200"),
        ],
        "{lines:#?}"
    );
    for l in &lines {
        assert_eq!(l["connectionId"], id.as_str());
        assert_eq!(l["sourceIp"], "127.0.0.1");
        assert_ne!(l["requestId"], "-");
        assert_eq!(l["error"], "-", "{l}");
    }

    // The refused handshake is in the log too, under its own connection id.
    let all = logs(&dev, &config, &["--access", "--since", "5m"]);
    assert!(
        all.iter().any(|l| {
            let m = l["message"].as_str().unwrap_or_default();
            l["source"] == "access" && m.contains("\"CONNECT\"") && m.contains("\"status\":\"403\"")
        }),
        "{all:#?}"
    );
}
