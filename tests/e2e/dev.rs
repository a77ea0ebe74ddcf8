//! `wsctl dev` end to end: the real binary, the bundled functions built and deployed into its
//! own moto, real WebSocket clients over loopback, the AWS SDK on `@connections`.

use std::time::Duration;

use aws_sdk_apigatewaymanagement as mgmt;
use serde_json::{Value, json};
use wsctl_tests::dev::{Client, Dev, Refused, dev_config, http};
use wsctl_tests::{ctrl_c, no_deadline};

const T: Duration = Duration::from_secs(10);

fn dev() -> (tempfile::TempDir, Dev) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dev_config(dir.path());
    let dev = Dev::start(&config, &[]);
    (dir, dev)
}

fn is(kind: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["type"] == kind
}

#[tokio::test(flavor = "multi_thread")]
async fn chat_between_three_clients() {
    let (_dir, dev) = dev();
    let url = dev.field("url");

    // The handshake goes through the authorizer: no token 401, a forged one 403.
    match Client::connect(&url).await {
        Err(Refused::Status(401)) => {}
        other => panic!(
            "no token: expected 401, got {:?}",
            other.map(|_| "connected")
        ),
    }
    let forged = wsctl_functions::auth::mint(
        b"not the stack's secret",
        &wsctl_functions::auth::Claims {
            sub: "mallory".into(),
            exp: wsctl_functions::auth::now() + 600,
            nbf: None,
            iat: None,
            iss: None,
            aud: None,
            cap: Default::default(),
        },
    );
    match Client::connect(&format!("{url}?token={forged}")).await {
        Err(Refused::Status(403)) => {}
        other => panic!(
            "forged token: expected 403, got {:?}",
            other.map(|_| "connected")
        ),
    }
    // The token printed at start works as is.
    let mut printed = Client::connect(&dev.field("connect_url"))
        .await
        .expect("the printed URL connects");
    printed.send(json!({"action": "ping", "id": "p1"})).await;
    printed
        .expect("pong", |v| v["type"] == "pong" && v["id"] == "p1", T)
        .await;

    let mut ana = dev.connect("ana").await;
    let mut bob = dev.connect("bob").await;
    let mut cid = dev.connect("cid").await;
    for c in [&mut ana, &mut bob, &mut cid] {
        c.send(json!({"action": "subscribe", "channel": "room-1"}))
            .await;
        c.expect("subscribed", is("subscribed"), T).await;
    }

    // Presence: bob and cid see ana enter.
    ana.send(json!({"action": "presence", "channel": "room-1", "enter": {"name": "Ana"}}))
        .await;
    for c in [&mut bob, &mut cid] {
        let p = c.expect("ana's enter", is("presence"), T).await;
        assert_eq!(
            (p["event"].as_str(), p["member"]["user"].as_str()),
            (Some("enter"), Some("ana"))
        );
    }

    // A publish reaches every subscriber once, with the same serial.
    bob.send(
        json!({"action": "publish", "channel": "room-1", "data": {"text": "hello"}, "id": "b-1"}),
    )
    .await;
    let mut serials = Vec::new();
    for c in [&mut ana, &mut bob, &mut cid] {
        let m = c.expect("bob's message", is("message"), T).await;
        assert_eq!(
            (m["from"].as_str(), m["data"]["text"].as_str()),
            (Some("bob"), Some("hello"))
        );
        serials.push(m["serial"].as_u64().expect("serial"));
    }
    assert!(
        serials.windows(2).all(|w| w[0] == w[1]),
        "one serial for everyone: {serials:?}"
    );
    for c in [&mut ana, &mut cid] {
        let again: Vec<Value> = c
            .drain(Duration::from_millis(500))
            .await
            .into_iter()
            .filter(|v| v["type"] == "message")
            .collect();
        assert!(again.is_empty(), "delivered more than once: {again:?}");
    }

    // An unknown action: the protocol's error frame, and the connection stays.
    cid.send(json!({"action": "dance", "channel": "room-1"}))
        .await;
    let e = cid.expect("error frame", is("error"), T).await;
    assert_eq!(e["code"], "unknown_action");

    // An abrupt drop (no close frame) still runs $disconnect: the others see cid leave.
    cid.send(json!({"action": "presence", "channel": "room-1", "enter": true}))
        .await;
    ana.expect(
        "cid's enter",
        |v| v["type"] == "presence" && v["member"]["user"] == "cid",
        T,
    )
    .await;
    drop(cid);
    let left = ana
        .expect(
            "cid's leave",
            |v| v["type"] == "presence" && v["event"] == "leave",
            T,
        )
        .await;
    assert_eq!(left["member"]["user"], "cid");

    // Over the 128 KB message / 32 KB frame limit: closed with 1009.
    let big = "x".repeat(200 * 1024);
    bob.send(json!({"action": "publish", "channel": "room-1", "data": big}))
        .await;
    assert_eq!(bob.close_code(T).await, Some(1009));

    // ana is unaffected.
    ana.send(json!({"action": "ping", "id": "still-here"}))
        .await;
    ana.expect("pong", |v| v["type"] == "pong", T).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_api_through_the_aws_sdk() {
    let (_dir, dev) = dev();
    let mut client = dev.connect("ana").await;
    let ids = dev.connection_ids().await;
    assert_eq!(ids.len(), 1, "{ids:?}");
    let id = ids[0].clone();
    let api = dev.management();

    api.post_to_connection()
        .connection_id(&id)
        .data(mgmt::primitives::Blob::new(r#"{"hello":"from the SDK"}"#))
        .send()
        .await
        .expect("post");
    let got = client
        .expect("the posted frame", |v| v["hello"] == "from the SDK", T)
        .await;
    assert_eq!(got, json!({"hello": "from the SDK"}));

    let info = api
        .get_connection()
        .connection_id(&id)
        .send()
        .await
        .expect("get");
    let connected = info.connected_at().expect("ConnectedAt");
    let active = info.last_active_at().expect("LastActiveAt");
    assert!(active.secs() >= connected.secs());
    assert!(
        (wsctl_functions::auth::now() as i64 - connected.secs()).abs() < 60,
        "ConnectedAt is now-ish: {connected:?}"
    );
    assert_eq!(
        info.identity().and_then(|i| i.source_ip()),
        Some("127.0.0.1")
    );

    let too_big = vec![b'x'; 129 * 1024];
    let err = api
        .post_to_connection()
        .connection_id(&id)
        .data(mgmt::primitives::Blob::new(too_big))
        .send()
        .await
        .expect_err("413");
    assert!(err.into_service_error().is_payload_too_large_exception());

    api.delete_connection()
        .connection_id(&id)
        .send()
        .await
        .expect("delete");
    assert!(
        client.close_code(T).await.is_some(),
        "DELETE closes the client"
    );

    // Gone: all three answer 410 GoneException (also an id that never existed).
    for gone in [id.as_str(), "AAAAAAAAAAAAAAA="] {
        let e = api
            .post_to_connection()
            .connection_id(gone)
            .data(mgmt::primitives::Blob::new("x"))
            .send()
            .await
            .expect_err("post gone");
        assert!(e.into_service_error().is_gone_exception());
        let e = api
            .get_connection()
            .connection_id(gone)
            .send()
            .await
            .expect_err("get gone");
        assert!(e.into_service_error().is_gone_exception());
        let e = api
            .delete_connection()
            .connection_id(gone)
            .send()
            .await
            .expect_err("delete gone");
        assert!(e.into_service_error().is_gone_exception());
    }
}

/// The pid the echo fixture logs for each event it handles, in order.
fn echo_pids(dev: &Dev) -> Vec<u32> {
    dev.logs
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| l.split("echo pid ").nth(1))
        .filter_map(|p| p.trim().parse().ok())
        .collect()
}

async fn wait_pids(dev: &Dev, n: usize) -> Vec<u32> {
    let started = std::time::Instant::now();
    while echo_pids(dev).len() < n {
        assert!(
            started.elapsed() < T,
            "echo logged {:?}, waiting for {n}",
            echo_pids(dev)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    echo_pids(dev)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_or_timeout_fails_one_event_and_the_process_is_replaced() {
    let (_dir, dev) = dev();
    let mut c = dev.connect("ana").await;
    let internal =
        |v: &Value| v["message"] == "Internal server error" && v["connectionId"].is_string();

    c.send(json!({"action": "crash"})).await;
    let first = wait_pids(&dev, 1).await[0];

    c.send(json!({"action": "crash", "panic": true})).await;
    c.expect("API Gateway's error frame for the panic", internal, T)
        .await;
    let pids = wait_pids(&dev, 2).await;
    assert_eq!(pids[1], first, "the panic happened in the warm process");

    c.send(json!({"action": "crash"})).await;
    let fresh = wait_pids(&dev, 3).await[2];
    assert_ne!(fresh, first, "the next event runs in a new process");

    // The fixture's timeout is 2 s; this event sleeps 5.
    c.send(json!({"action": "crash", "sleep": 5000})).await;
    c.expect("the error frame for the timeout", internal, T)
        .await;
    c.send(json!({"action": "crash"})).await;
    let after = wait_pids(&dev, 5).await[4];
    assert_ne!(after, fresh, "the timed-out process was replaced");

    // The connection lived through it all.
    c.send(json!({"action": "ping", "id": "alive"})).await;
    c.expect("pong", |v| v["type"] == "pong", T).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_timeout_lambda_invoke_and_stop_leave_nothing_behind() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dev_config(dir.path());
    let mut dev = Dev::start(&config, &["--idle-timeout", "2s"]);

    // An idle connection is closed with 1001 and forgotten, as API Gateway does after 10 minutes.
    let mut idle = dev.connect("sleepy").await;
    assert_eq!(dev.connection_ids().await.len(), 1);
    assert_eq!(idle.close_code(T).await, Some(1001));
    let started = std::time::Instant::now();
    while !dev.connection_ids().await.is_empty() {
        assert!(started.elapsed() < T, "the idle connection is still listed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Warm processes that finished init are not killed by the 10 s init limit while they wait.
    let up = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(11).saturating_sub(up.elapsed())).await;
    let killed: Vec<String> = dev
        .logs
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("exited outside an event"))
        .cloned()
        .collect();
    assert!(
        killed.is_empty(),
        "idle warm processes were replaced: {killed:?}"
    );

    // RequestResponse through the Invoke endpoint, with the path the SDK uses.
    let name = "chat-dev-echo";
    let url = format!("{}/2015-03-31/functions/{name}/invocations", dev.base());
    let (status, body) = http(&url, "POST", br#"{"body": "{\"x\": 1}"}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["statusCode"],
        200
    );
    let (status, _) = http(
        &format!("{}/2015-03-31/functions/nope/invocations", dev.base()),
        "POST",
        b"{}",
    )
    .await;
    assert_eq!(status, 404);

    // SIGTERM stops wsctl dev, moto and every function process.
    let pid = dev.pid();
    let children = descendants(pid);
    assert!(
        children.len() >= 6,
        "moto and the warm function processes: {children:?}"
    );
    assert!(dev.stop().success());
    std::thread::sleep(Duration::from_millis(300));
    let running = |p: &u32| {
        std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| !s.contains(") Z "))
    };
    let alive: Vec<u32> = children.into_iter().filter(running).collect();
    assert!(
        alive.is_empty(),
        "still running after wsctl dev stopped: {alive:?}"
    );
}

/// Every process below `pid`.
fn descendants(pid: u32) -> Vec<u32> {
    let mut all = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        // Each thread lists the children it forked.
        let tasks = std::fs::read_dir(format!("/proc/{p}/task"))
            .into_iter()
            .flatten()
            .flatten();
        for task in tasks {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for c in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                all.push(c);
                frontier.push(c);
            }
        }
    }
    all
}

/// `wsctl ARGS` against the running dev stack, as a user would type it.
pub(crate) fn wsctl(dev: &Dev, config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = dev.command(config, args).output().expect("run wsctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn publish_and_token_from_the_command_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dev_config(dir.path());
    let dev = Dev::start(&config, &[]);

    // A token from `wsctl token` limited to subscribing.
    let (code, token, err) = wsctl(
        &dev,
        &config,
        &[
            "token",
            "--user",
            "zed",
            "--allow",
            "news-*:subscribe",
            "--ttl",
            "10m",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let mut zed = Client::connect(&format!("{}?token={}", dev.field("url"), token.trim()))
        .await
        .expect("token connects");
    zed.send(json!({"action": "subscribe", "channel": "news-1"}))
        .await;
    zed.expect("subscribed", is("subscribed"), T).await;
    zed.send(json!({"action": "publish", "channel": "news-1", "data": 1}))
        .await;
    assert_eq!(
        zed.expect("refusal", is("error"), T).await["code"],
        "forbidden"
    );
    let (code, _, err) = wsctl(&dev, &config, &["token", "--allow", "news:dance"]);
    assert_eq!(code, 2, "a bad --allow is a usage error: {err}");
    assert!(err.contains("unknown operation"), "{err}");

    let mut ana = dev.connect("ana").await;
    ana.send(json!({"action": "subscribe", "channel": "news-1"}))
        .await;
    ana.expect("subscribed", is("subscribed"), T).await;

    // To a channel: every subscriber once, and the counts printed.
    let (code, out, err) = wsctl(
        &dev,
        &config,
        &[
            "--output",
            "json",
            "publish",
            "--channel",
            "news-1",
            "--data",
            r#"{"text":"from the CLI"}"#,
        ],
    );
    assert_eq!(code, 0, "{err}");
    let result: Value = serde_json::from_str(&out).expect("JSON result");
    assert_eq!(result["delivered"], 2, "{result}");
    let serial = result["serial"].as_u64().expect("serial");
    for c in [&mut zed, &mut ana] {
        let m = c.expect("the CLI's message", is("message"), T).await;
        assert_eq!(
            (
                m["from"].as_str(),
                m["data"]["text"].as_str(),
                m["serial"].as_u64()
            ),
            (Some("server"), Some("from the CLI"), Some(serial))
        );
    }

    // --count 100 --rate 50: a hundred publishes, serials strictly increasing, each delivered.
    let (code, out, err) = wsctl(
        &dev,
        &config,
        &[
            "--output",
            "json",
            "publish",
            "--channel",
            "news-1",
            "--data",
            "tick",
            "--count",
            "100",
            "--rate",
            "50",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let all: Value = serde_json::from_str(&out).expect("JSON result");
    let serials: Vec<u64> = all["published"]
        .as_array()
        .expect("list")
        .iter()
        .map(|r| r["serial"].as_u64().unwrap())
        .collect();
    assert_eq!(serials.len(), 100);
    assert!(
        serials.windows(2).all(|w| w[0] < w[1]) && serials[0] > serial,
        "{serials:?}"
    );
    let ticks: Vec<u64> = ana
        .drain(Duration::from_secs(3))
        .await
        .iter()
        .filter(|v| v["data"] == "tick")
        .map(|v| v["serial"].as_u64().unwrap())
        .collect();
    assert_eq!(ticks, serials);

    // `history` reads back what was stored: the newest, then forward from a serial, page by
    // page, with nothing skipped or repeated.
    let history = |args: &[&str]| {
        let mut all = vec!["--output", "json", "history", "--channel", "news-1"];
        all.extend_from_slice(args);
        let (code, out, err) = wsctl(&dev, &config, &all);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<Value>(&out).expect("JSON history")
    };
    let serials_of = |page: &Value| -> Vec<u64> {
        page["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .map(|m| m["serial"].as_u64().unwrap())
            .collect()
    };
    let newest = history(&["--limit", "3"]);
    assert_eq!(serials_of(&newest), serials[97..], "{newest}");
    assert_eq!(newest["messages"][2]["data"], "tick");
    assert_eq!(newest["more"], false, "the newest page has no continuation");
    let (mut read, mut since): (Vec<u64>, u64) = (Vec::new(), serial);
    loop {
        let page = history(&["--since", &since.to_string(), "--limit", "40"]);
        let got = serials_of(&page);
        assert!(got.len() <= 40, "{page}");
        read.extend(&got);
        if page["more"] != true {
            break;
        }
        since = *got.last().expect("a page with more is not empty");
    }
    assert_eq!(read, serials, "paging with --since reads every serial once");
    let first = history(&["--since", &(serial - 1).to_string(), "--limit", "1"]);
    assert_eq!(first["messages"][0]["data"]["text"], "from the CLI");
    // A name no client may subscribe to (the presence and counter partitions use `#`) is
    // refused before any read; so is a limit past the action's own.
    for bad in [
        &["history", "--channel", "news-1#presence"][..],
        &["history", "--channel", "news-1", "--limit", "1001"],
    ] {
        let (code, _, err) = wsctl(&dev, &config, bad);
        assert_eq!(code, 2, "{bad:?} is a usage error: {err}");
    }
    let (code, text, err) = wsctl(&dev, &config, &["history", "--channel", "empty"]);
    assert_eq!((code, text.trim()), (0, "empty: no messages"), "{err}");

    // `connections --channel` lists exactly the channel's subscribers.
    let mut other = dev.connect("bystander").await;
    other
        .send(json!({"action": "subscribe", "channel": "elsewhere"}))
        .await;
    other.expect("subscribed", is("subscribed"), T).await;
    let (code, out, err) = wsctl(
        &dev,
        &config,
        &["--output", "json", "connections", "--channel", "news-1"],
    );
    assert_eq!(code, 0, "{err}");
    let listed: Value = serde_json::from_str(&out).expect("JSON list");
    let mut users: Vec<&str> = listed
        .as_array()
        .expect("list")
        .iter()
        .map(|c| c["user"].as_str().unwrap())
        .collect();
    users.sort();
    assert_eq!(users, ["ana", "zed"], "{listed}");
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["channels"] == json!(["news-1"])),
        "{listed}"
    );
    drop(other);

    // `wsctl connect` reading a script from stdin: the frames out, the answers printed.
    let mut cmd = std::process::Command::new(wsctl_tests::wsctl_bin());
    cmd.arg("--config").arg(&config).args([
        "--endpoint-url",
        &dev.base(),
        "connect",
        "--user",
        "script",
        "--wait",
        "2s",
    ]);
    wsctl_tests::isolate(&mut cmd);
    cmd.env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_REGION", "us-east-1");
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("wsctl connect");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, r#"{{"action":"ping","id":"c1"}}"#).unwrap();
        writeln!(
            stdin,
            r#"{{"action":"publish","channel":"news-1","data":"via connect"}}"#
        )
        .unwrap();
    }
    let out = child.wait_with_output().expect("connect output");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON frame per line"))
        .collect();
    assert!(
        printed
            .iter()
            .any(|v| v["type"] == "pong" && v["id"] == "c1"),
        "{printed:?}"
    );
    assert!(printed.iter().any(|v| v["type"] == "ack"), "{printed:?}");
    ana.expect(
        "the message sent through wsctl connect",
        |v| v["data"] == "via connect" && v["from"] == "script",
        T,
    )
    .await;

    // To one connection: exactly that client.
    let target = listed[0]["id"].as_str().expect("id").to_string();
    let (code, _, err) = wsctl(
        &dev,
        &config,
        &[
            "publish",
            "--connection",
            &target,
            "--data",
            r#"{"direct":true}"#,
        ],
    );
    assert_eq!(code, 0, "{err}");
    let mut got = 0;
    for c in [&mut zed, &mut ana] {
        got += c
            .drain(Duration::from_millis(700))
            .await
            .iter()
            .filter(|v| v["direct"] == true)
            .count();
    }
    assert_eq!(got, 1, "exactly one client has the direct message");

    // `wsctl secret rotate`: new tokens are signed with the new key, older ones pass for the
    // grace period.
    let (code, out, err) = wsctl(
        &dev,
        &config,
        &["--output", "json", "secret", "rotate", "--grace", "1h"],
    );
    assert_eq!(code, 0, "{err}");
    let rotated: Value = serde_json::from_str(&out).expect("JSON");
    assert!(
        rotated["previous_valid_until"].as_u64().expect("until")
            > wsctl_functions::auth::now() + 3500,
        "{rotated}"
    );
    // Again within the grace period would cut the older key's grace short: refused.
    let (code, _, err) = wsctl(&dev, &config, &["secret", "rotate", "--grace", "1h"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("still passes until") && err.contains("--grace 0s"),
        "{err}"
    );
    let (code, fresh, err) = wsctl(&dev, &config, &["token", "--user", "fresh"]);
    assert_eq!(code, 0, "{err}");
    let fresh = fresh.trim().to_string();
    assert_eq!(
        jsonwebtoken::decode_header(&fresh).unwrap().kid.as_deref(),
        rotated["key_id"].as_str(),
        "signed with the new key"
    );
    // A warm authorizer re-reads the secret for a key it has not seen, at most every 10 s.
    let started = std::time::Instant::now();
    let mut with_new = loop {
        match Client::connect(&format!("{}?token={fresh}", dev.field("url"))).await {
            Ok(c) => break c,
            Err(e) if started.elapsed() < Duration::from_secs(20) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("a token of the new key is refused: {e:?}"),
        }
    };
    with_new.send(json!({"action": "ping"})).await;
    with_new.expect("pong", is("pong"), T).await;
    Client::connect(&format!("{}?token={}", dev.field("url"), token.trim()))
        .await
        .expect("a token of the previous key, within the grace period");
    assert_eq!(
        wsctl(&dev, &config, &["token", "--user", "server"]).0,
        2,
        "`server` is reserved"
    );

    // A secret too short to be an HS256 key is refused, with the way out; a rotation replaces it.
    let ssm = aws_sdk_ssm::Client::new(&dev.sdk());
    ssm.put_parameter()
        .name("/wsctl/chat/dev/token-secret")
        .value("too-short")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .expect("overwrite");
    let (code, _, err) = wsctl(&dev, &config, &["token"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("at least 32") && err.contains("wsctl secret rotate"),
        "{err}"
    );
    // Of two rotations that read the same version, the one that claimed it goes on; the
    // other is refused and writes nothing (SSM has no conditional write of its own).
    let read = |ssm: aws_sdk_ssm::Client| async move {
        let p = ssm
            .get_parameter()
            .name("/wsctl/chat/dev/token-secret")
            .with_decryption(true)
            .send()
            .await
            .expect("read")
            .parameter
            .expect("parameter");
        (p.value.unwrap_or_default(), p.version)
    };
    let (_, version) = read(ssm.clone()).await;
    use aws_sdk_dynamodb::types::AttributeValue;
    dev.dynamodb()
        .put_item()
        .table_name("chat-dev-counters")
        .item("channel", AttributeValue::S("#secret-rotation".into()))
        .item("version", AttributeValue::N(version.to_string()))
        .item(
            "claimed_at",
            AttributeValue::N(wsctl_functions::auth::now().to_string()),
        )
        .send()
        .await
        .expect("the other rotation's claim");
    let (code, _, err) = wsctl(&dev, &config, &["secret", "rotate", "--grace", "0s"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("another rotation"), "{err}");
    assert_eq!(read(ssm.clone()).await, ("too-short".to_string(), version));
    // The other rotation's write lands; a rotation from what it wrote goes ahead.
    ssm.put_parameter()
        .name("/wsctl/chat/dev/token-secret")
        .value("too-short")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .expect("overwrite");
    let (code, _, err) = wsctl(&dev, &config, &["secret", "rotate", "--grace", "0s"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(wsctl(&dev, &config, &["token"]).0, 0);
}

/// DynamoDB in the emulator, through the dev gateway's AWS endpoint.
/// Items of the stack's `table` in the emulator.
async fn scan_all(
    dev: &Dev,
    table: &str,
) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    let db = dev.dynamodb();
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let page = db
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("scan");
        items.extend(page.items.unwrap_or_default());
        start = page.last_evaluated_key;
        if start.is_none() {
            return items;
        }
    }
}

fn s(
    item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
    k: &str,
) -> String {
    item.get(k)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default()
}

/// Runs `wsctl gc ARGS --output json`; exit code and the parsed summary.
/// Runs with `--older-than 0s` unless `args` sets it: the rows here are seconds old.
fn gc(dev: &Dev, config: &std::path::Path, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["--output", "json", "gc"];
    if !args.contains(&"--older-than") {
        all.extend(["--older-than", "0s"]);
    }
    all.extend_from_slice(args);
    let (code, out, err) = wsctl(dev, config, &all);
    let summary = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("gc printed no JSON ({e}): {out}\n{err}"));
    (code, summary)
}

#[tokio::test(flavor = "multi_thread")]
async fn gc_sweeps_exactly_the_zombies() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dev_config(dir.path());
    // An item past its TTL stays until DynamoDB gets to it (within days, "Working with Time to
    // Live"): without the local sweep, as on AWS before that, gc meets such items.
    let dev = Dev::start(&config, &["--ttl-sweep", "0"]);
    // A user holds at most 50 connections (`limits.connections_per_user`): 40 users hold them.
    let mut urls = Vec::new();
    for u in 0..40 {
        let token = dev.token(&format!("load-{u}")).await;
        urls.push(format!("{}?token={token}", dev.field("url")));
    }
    use futures::StreamExt;
    let mut clients: Vec<Client> = futures::stream::iter(0..2000)
        .map(|i| {
            let url = urls[i % urls.len()].clone();
            async move { Client::connect(&url).await.expect("connect") }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    futures::stream::iter(clients.iter_mut())
        .for_each_concurrent(64, |c| async move {
            c.send(json!({"action": "subscribe", "channel": "gc-room"}))
                .await;
            c.expect("subscribed", is("subscribed"), Duration::from_secs(60))
                .await;
        })
        .await;

    // The fault switch drops 1,100: their sockets go, `$disconnect` never runs. gc removes
    // the first 1,000 it finds one by one (index), and the other 100, over 1 in 20 of the rows
    // it checks, with one scan of the subscriptions table.
    let ids = dev.connection_ids().await;
    assert_eq!(ids.len(), 2000);
    let zombies: std::collections::BTreeSet<String> = ids[..1100].iter().cloned().collect();
    for id in &zombies {
        let (status, body) = http(
            &format!("{}/_wsctl/connections/{id}/drop", dev.base()),
            "POST",
            b"",
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        scan_all(&dev, "chat-dev-connections").await.len(),
        2000,
        "zombies are still in the table"
    );

    // Rows younger than `--older-than` are not looked at: `@connections` answers 410 while a
    // `$connect` is still running, so a young row may be a connection being made.
    let (code, young) = gc(&dev, &config, &["--older-than", "1h"]);
    assert_eq!(
        (code, &young["scanned"], &young["deleted"]),
        (0, &json!(0), &json!(0)),
        "{young}"
    );
    // A live connection whose item is past its TTL is asked about, not deleted.
    let live = ids[1999].clone();
    dev.dynamodb()
        .update_item()
        .table_name("chat-dev-connections")
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(live.clone()),
        )
        .update_expression("SET #t = :past")
        .expression_attribute_names("#t", "ttl")
        .expression_attribute_values(
            ":past",
            aws_sdk_dynamodb::types::AttributeValue::N("1000".into()),
        )
        .send()
        .await
        .expect("age the item");

    let (code, dry) = gc(&dev, &config, &["--dry-run"]);
    assert_eq!(
        (code, &dry["stale"], &dry["live"], &dry["deleted"]),
        (0, &json!(1100), &json!(900), &json!(0)),
        "{dry}"
    );
    assert_eq!(
        scan_all(&dev, "chat-dev-connections").await.len(),
        2000,
        "--dry-run deletes nothing"
    );

    let (code, run) = gc(&dev, &config, &[]);
    assert_eq!(
        (code, &run["stale"], &run["deleted"], &run["errors"]),
        (0, &json!(1100), &json!(1100), &json!(0)),
        "{run}"
    );
    let left: std::collections::BTreeSet<String> = scan_all(&dev, "chat-dev-connections")
        .await
        .iter()
        .map(|i| s(i, "pk"))
        .collect();
    assert_eq!(left.len(), 900);
    assert!(left.is_disjoint(&zombies));
    assert!(left.contains(&live), "a live connection past its TTL stays");
    let subs = scan_all(&dev, "chat-dev-subscriptions").await;
    assert_eq!(subs.len(), 900, "the zombies' subscriptions went with them");
    assert!(subs.iter().all(|i| !zombies.contains(&s(i, "connection"))));

    let (code, again) = gc(&dev, &config, &[]);
    assert_eq!((code, &again["stale"]), (0, &json!(0)), "{again}");

    // Every remaining client still receives a publish; the dropped ones are closed.
    let (code, _, err) = wsctl(
        &dev,
        &config,
        &["publish", "--channel", "gc-room", "--data", "after gc"],
    );
    assert_eq!(code, 0, "{err}");
    let received = futures::stream::iter(clients.iter_mut())
        .map(|c| async move {
            c.expect_or_none(|v| v["data"] == "after gc", Duration::from_secs(20))
                .await
                .is_some()
        })
        .buffer_unordered(256)
        .filter(|got| futures::future::ready(*got))
        .count()
        .await;
    assert_eq!(received, 900);

    // Two sweeps at once, each finding the zombies' subscriptions with one scan of the
    // subscriptions table: together they delete exactly the new zombies and their
    // subscriptions, never a live id's.
    let ids = dev.connection_ids().await;
    let zombies: std::collections::BTreeSet<String> = ids[..300].iter().cloned().collect();
    for id in &zombies {
        http(
            &format!("{}/_wsctl/connections/{id}/drop", dev.base()),
            "POST",
            b"",
        )
        .await;
    }
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| gc(&dev, &config, &["--concurrency", "8", "--lookup", "scan"]));
        let b = scope.spawn(|| gc(&dev, &config, &["--concurrency", "8", "--lookup", "scan"]));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!((a.0, b.0), (0, 0), "{} {}", a.1, b.1);
    let left: std::collections::BTreeSet<String> = scan_all(&dev, "chat-dev-connections")
        .await
        .iter()
        .map(|i| s(i, "pk"))
        .collect();
    assert_eq!(left.len(), 600);
    assert!(left.is_disjoint(&zombies));
    assert_eq!(
        left,
        dev.connection_ids().await.into_iter().collect(),
        "every live id kept"
    );
    let subs: std::collections::BTreeSet<String> = scan_all(&dev, "chat-dev-subscriptions")
        .await
        .iter()
        .map(|i| s(i, "connection"))
        .collect();
    assert_eq!(subs, left, "exactly the live ids' subscriptions kept");

    // A sweep cut short by --max-duration says so and exits 9; the next one finishes the job.
    let zombies = &dev.connection_ids().await[..5];
    for id in zombies {
        http(
            &format!("{}/_wsctl/connections/{id}/drop", dev.base()),
            "POST",
            b"",
        )
        .await;
    }
    let (code, cut) = gc(&dev, &config, &["--max-duration", "1ms"]);
    assert_eq!(
        (code, &cut["complete"], &cut["deleted"]),
        (9, &json!(false), &json!(0)),
        "{cut}"
    );
    let (code, rest) = gc(&dev, &config, &[]);
    assert_eq!(
        (code, &rest["complete"], &rest["deleted"], &rest["live"]),
        (0, &json!(true), &json!(5), &json!(595)),
        "{rest}"
    );

    // A zombie that was present in a channel: gc announces its leave, as `$disconnect` would.
    let mut watcher = dev.connect("watcher").await;
    watcher
        .send(json!({"action": "subscribe", "channel": "gc-presence"}))
        .await;
    watcher
        .expect("subscribed", is("subscribed"), Duration::from_secs(20))
        .await;
    let mut ghost = dev.connect("ghost").await;
    ghost
        .send(json!({"action": "subscribe", "channel": "gc-presence"}))
        .await;
    ghost
        .expect("subscribed", is("subscribed"), Duration::from_secs(20))
        .await;
    ghost
        .send(json!({"action": "presence", "channel": "gc-presence", "enter": true}))
        .await;
    let entered = watcher
        .expect(
            "the ghost's enter",
            |v| v["type"] == "presence" && v["event"] == "enter",
            Duration::from_secs(20),
        )
        .await;
    let ghost_id = entered["member"]["connection"]
        .as_str()
        .expect("connection id")
        .to_string();
    // Its own copy too: a drop while the enter is still being fanned out would let the
    // fan-out, not gc, find it gone.
    ghost
        .expect(
            "its own enter",
            |v| v["type"] == "presence" && v["event"] == "enter",
            Duration::from_secs(20),
        )
        .await;
    let (status, body) = http(
        &format!("{}/_wsctl/connections/{ghost_id}/drop", dev.base()),
        "POST",
        b"",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Found by the scan of the subscriptions table, its presence too.
    let (code, run) = gc(&dev, &config, &["--lookup", "scan"]);
    assert_eq!((code, &run["deleted"]), (0, &json!(1)), "{run}");
    assert!(
        !scan_all(&dev, "chat-dev-subscriptions")
            .await
            .iter()
            .any(|i| s(i, "connection") == ghost_id),
        "the ghost's subscription went with it"
    );
    let left = watcher
        .expect(
            "the ghost's leave",
            |v| v["type"] == "presence" && v["event"] == "leave",
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(
        (
            left["member"]["connection"].as_str(),
            left["member"]["user"].as_str()
        ),
        (Some(ghost_id.as_str()), Some("ghost")),
        "{left}"
    );

    // The default minimum age is a minute: a zombie made seconds ago is left for a later run.
    let before = dev.connection_ids().await;
    let fresh = dev.connect("fresh").await;
    let fresh_id = dev
        .connection_ids()
        .await
        .into_iter()
        .find(|id| !before.contains(id))
        .expect("the new connection's id");
    let (status, body) = http(
        &format!("{}/_wsctl/connections/{fresh_id}/drop", dev.base()),
        "POST",
        b"",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    drop(fresh);
    let (_, out, err) = wsctl(&dev, &config, &["--output", "json", "gc"]);
    let by_default: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    assert_eq!(by_default["deleted"], 0, "{by_default}");
    assert!(
        scan_all(&dev, "chat-dev-connections")
            .await
            .iter()
            .any(|i| s(i, "pk") == fresh_id),
        "the young row stays"
    );

    // Without credentials nothing is read or deleted: exit 3, and the message says how to fix it.
    let mut cmd = std::process::Command::new(wsctl_tests::wsctl_bin());
    cmd.arg("--config").arg(&config).args([
        "--endpoint-url",
        &dev.base(),
        "--region",
        "us-east-1",
        "gc",
    ]);
    wsctl_tests::isolate(&mut cmd);
    let out = cmd.output().expect("run wsctl");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("credentials"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tail_shows_connects_subscribes_messages_and_disconnects() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dev_config(dir.path());
    let dev = Dev::start(&config, &[]);
    let mut tail = dev
        .command(
            &config,
            &[
                "--output",
                "json",
                "tail",
                "--channel",
                "t-1",
                "--messages",
                "--interval",
                "200ms",
            ],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("wsctl tail");
    let events = std::sync::Arc::new(std::sync::Mutex::new(
        Vec::<(std::time::Instant, Value)>::new(),
    ));
    let sink = events.clone();
    let stdout = tail.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            sink.lock().unwrap().push((
                std::time::Instant::now(),
                serde_json::from_str(&line).expect("JSON line"),
            ));
        }
    });
    // Tail says it is running once it has its baseline (its own WebSocket included).
    let stderr = tail.stderr.take().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.starts_with("tailing ") {
                let _ = ready_tx.send(());
            }
        }
    });
    ready_rx.recv_timeout(T).expect("tail says it is running");
    let wait = |pred: &dyn Fn(&Value) -> bool, since: std::time::Instant| {
        let deadline = since + T;
        loop {
            if events
                .lock()
                .unwrap()
                .iter()
                .any(|(at, v)| *at >= since && pred(v))
            {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "tail printed {:?}",
                events
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|e| &e.1)
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };

    let mut c = dev.connect("tina").await;
    let connected = std::time::Instant::now();
    wait(
        &|v| v["event"] == "connect" && v["user"] == "tina",
        connected,
    );
    let id = dev
        .connection_ids()
        .await
        .into_iter()
        .find(|i| {
            events
                .lock()
                .unwrap()
                .iter()
                .any(|(_, v)| v["connection"] == i.as_str())
        })
        .expect("the printed id is a live connection");

    c.send(json!({"action": "subscribe", "channel": "t-1"}))
        .await;
    c.expect("subscribed", is("subscribed"), T).await;
    wait(
        &|v| v["event"] == "subscribe" && v["connection"] == id.as_str() && v["channel"] == "t-1",
        connected,
    );
    c.send(json!({"action": "publish", "channel": "t-1", "data": {"n": 1}}))
        .await;
    wait(
        &|v| v["event"] == "message" && v["from"] == "tina" && v["data"]["n"] == 1,
        connected,
    );

    drop(c);
    let dropped = std::time::Instant::now();
    wait(
        &|v| v["event"] == "disconnect" && v["connection"] == id.as_str(),
        dropped,
    );

    assert!(ctrl_c(&mut tail, T).success(), "Ctrl-C ends tail cleanly");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_client_and_a_hostile_web_page_get_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dev_config(dir.path());
    // The authorizer and connect functions at the most verbose level: still no token in the logs.
    let text: String = std::fs::read_to_string(&config)
        .unwrap()
        .lines()
        .map(|l| {
            // The authorizer's, not the message function's (which verifies renewals).
            let verbose = (l.trim_start().starts_with("read_secret: true") && l.contains("SSM"))
                || l.trim_start().starts_with("handler: connect");
            if verbose {
                format!("{l}\n    environment: {{ RUST_LOG: trace }}\n")
            } else if l.trim_start().starts_with("handler: message") {
                // A loaded machine may take longer than AWS between two numbered publishes.
                format!("{l}\n    environment: {{ SEQ_PATIENCE_MS: \"30000\", RUST_LOG: trace }}\n")
            } else if l.starts_with("  function: authorizer") {
                // Tokens must carry this audience: every token wsctl mints has to say so.
                format!("{l}\n  audience: chat-app\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    assert_eq!(text.matches("RUST_LOG").count(), 3, "{text}");
    assert!(text.contains("  audience: chat-app"), "{text}");
    std::fs::write(&config, text).unwrap();
    let dev = Dev::start(&config, &[]);

    let token = |allow: &str| {
        let (code, out, err) = wsctl(
            &dev,
            &config,
            &["token", "--user", "narrow", "--allow", allow],
        );
        assert_eq!(code, 0, "{err}");
        out.trim().to_string()
    };
    let presence_only = token("room:presence");
    let mut lurker = Client::connect(&format!("{}?token={presence_only}", dev.field("url")))
        .await
        .expect("connect");
    let mut ana = dev.connect("ana").await;
    ana.send(json!({"action": "subscribe", "channel": "room"}))
        .await;
    ana.expect("subscribed", is("subscribed"), T).await;

    // Presence lets it in the member list, not into the channel's messages or its past.
    lurker
        .send(json!({"action": "presence", "channel": "room", "enter": {"name": "L"}}))
        .await;
    ana.expect(
        "the enter",
        |v| v["type"] == "presence" && v["member"]["user"] == "narrow",
        T,
    )
    .await;
    lurker
        .send(json!({"action": "subscribe", "channel": "room", "since": 0}))
        .await;
    assert_eq!(
        lurker.expect("refusal", is("error"), T).await["code"],
        "forbidden"
    );
    ana.send(json!({"action": "publish", "channel": "room", "data": "not for lurkers"}))
        .await;
    ana.expect("own message", is("message"), T).await;
    let leaked: Vec<Value> = lurker
        .drain(Duration::from_secs(1))
        .await
        .into_iter()
        .filter(|v| v["type"] == "message")
        .collect();
    assert!(leaked.is_empty(), "{leaked:?}");

    // 100 numbered publishes, at most eight unacknowledged as protocol.md asks: stored in the
    // order sent, although the gateway runs them concurrently. A publish refused because too
    // many wait is sent again, as a client does.
    let publish = |seq: u64| json!({"action": "publish", "channel": "burst", "data": seq, "seq": seq, "id": format!("b{seq}")});
    let (mut next, mut acked) = (1u64, 0u64);
    while acked < 100 {
        while next <= 100 && next - 1 - acked < 8 {
            ana.send(publish(next)).await;
            next += 1;
        }
        let v = ana
            .expect(
                "an ack or a refusal",
                |v| v["type"] == "ack" || v["type"] == "error",
                Duration::from_secs(60),
            )
            .await;
        if v["type"] == "ack" {
            acked += 1;
            continue;
        }
        assert_eq!(v["code"], "rate_limited", "{v}");
        let seq: u64 = v["id"].as_str().unwrap()[1..].parse().unwrap();
        tokio::time::sleep(Duration::from_millis(v["retry_after_ms"].as_u64().unwrap())).await;
        ana.send(publish(seq)).await;
    }
    // The burst spent the connection's frames: a client waits as `rate_limited` says.
    let history = ask(
        &mut ana,
        json!({"action": "history", "channel": "burst", "since": 0, "limit": 1000}),
    )
    .await;
    assert_eq!(history["type"], "history", "{history}");
    let data: Vec<u64> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["data"].as_u64().unwrap())
        .collect();
    assert_eq!(data, (1..=100).collect::<Vec<_>>());

    // A channel name with a space that hides, or in a second spelling, is no channel.
    for name in ["room\u{00A0}", "room ", "cafe\u{301}"] {
        let refusal = ask(&mut ana, json!({"action": "subscribe", "channel": name})).await;
        assert_eq!(refusal["code"], "bad_request", "{name:?}: {refusal}");
    }

    // A web page elsewhere, or a DNS name rebound to 127.0.0.1, reaches none of the helpers.
    let base = dev.base();
    let token_url = format!("{base}/_wsctl/token?user=x");
    for (headers, what) in [
        (vec![("Host", "evil.example.com")], "a rebound name"),
        (
            vec![("Origin", "https://evil.example.com")],
            "a cross-site request",
        ),
        (vec![("Origin", "http://127.0.0.1:1")], "another local port"),
    ] {
        let (status, body) = wsctl_tests::dev::http_with(&token_url, "GET", &headers, b"").await;
        assert_eq!(status, 403, "{what}: {body}");
        assert!(!body.contains("token\""), "{what}: {body}");
    }
    let ssm = br#"{"Name":"/wsctl/chat/dev/token-secret","WithDecryption":true}"#;
    let (status, body) = wsctl_tests::dev::http_with(
        &format!("{base}/"),
        "POST",
        &[
            ("Origin", "https://evil.example.com"),
            ("X-Amz-Target", "AmazonSSM.GetParameter"),
            ("Content-Type", "application/x-amz-json-1.1"),
        ],
        ssm,
    )
    .await;
    assert_eq!(status, 403, "the AWS forwarder: {body}");
    let id = dev.connection_ids().await[0].clone();
    let (status, _) = wsctl_tests::dev::http_with(
        &format!("{base}/_wsctl/connections/{id}/drop"),
        "POST",
        &[("Origin", "https://evil.example.com")],
        b"",
    )
    .await;
    assert_eq!(status, 403, "the fault switch");
    let (status, _) = wsctl_tests::dev::http_with(
        &format!("{}/{id}", dev.field("connections_url")),
        "POST",
        &[("Host", "evil.example.com:80")],
        b"{}",
    )
    .await;
    assert_eq!(status, 403, "@connections");
    // moto's own port lets no other origin read its answers (CORS off): a rebound name could
    // otherwise read the stack's secret from it.
    let answer = wsctl_tests::dev::http_raw(
        &format!("{}/", dev.field("moto")),
        "POST",
        &[
            ("Host", "evil.example.com"),
            ("Origin", "https://evil.example.com"),
            ("X-Amz-Target", "AmazonSSM.GetParameter"),
            ("Content-Type", "application/x-amz-json-1.1"),
        ],
        ssm,
    )
    .await;
    let head = answer.split("\r\n\r\n").next().unwrap_or_default();
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("access-control-allow-origin"),
        "{head}"
    );
    // Its own page and plain clients still work.
    assert!(
        wsctl_tests::dev::http_get(&token_url)
            .await
            .contains("token")
    );
    let own = format!("http://{}", base.trim_start_matches("http://"));
    assert_eq!(
        wsctl_tests::dev::http_with(&token_url, "GET", &[("Origin", own.as_str())], b"")
            .await
            .0,
        200
    );

    // Neither function logged a token, at TRACE.
    let logs = dev.logs.lock().unwrap().join("\n");
    assert!(
        logs.contains("authorizer") && logs.contains("connect"),
        "the functions' logs are captured"
    );
    let signature = presence_only.rsplit('.').next().unwrap();
    assert!(
        !logs.contains(signature),
        "a token's signature appears in the logs"
    );
    // Nor the secret the authorizer read from SSM.
    let got = aws_sdk_ssm::Client::new(&dev.sdk())
        .get_parameter()
        .name("/wsctl/chat/dev/token-secret")
        .with_decryption(true)
        .send()
        .await
        .expect("secret");
    let secret = got.parameter.and_then(|p| p.value).expect("value");
    assert!(!logs.contains(&secret), "the secret appears in the logs");

    // The stack requires an audience: a token of the right key without it is refused, and the
    // dev endpoint mints none for a reserved or unprintable user.
    use wsctl_functions::auth::{Capabilities, Claims, mint};
    let bare = mint(
        secret.as_bytes(),
        &Claims::issue("ana", Capabilities::everything(), Duration::from_secs(600)),
    );
    match Client::connect(&format!("{}?token={bare}", dev.field("url"))).await {
        Err(Refused::Status(403)) => {}
        other => panic!(
            "a token without the audience: expected 403, got {:?}",
            other.map(|_| "connected")
        ),
    }
    for user in [
        "server",
        "%E2%80%AEevil",
        // The reserved name in another case or width, or with a space that hides.
        "Server",
        "%EF%BD%93erver",
        "server%C2%A0",
        "server%20",
    ] {
        let (status, body) = http(&format!("{base}/_wsctl/token?user={user}"), "GET", b"").await;
        assert_eq!(status, 400, "{user}: {body}");
    }
    // A correctly signed token whose user only looks like the server is refused at the
    // handshake, as are two spellings of one name.
    for user in ["SERVER", "ana\u{00A0}", "Jose\u{301}"] {
        let lookalike = mint(
            secret.as_bytes(),
            &Claims::issue(user, Capabilities::everything(), Duration::from_secs(600))
                .with_audience(Some("chat-app")),
        );
        match Client::connect(&format!("{}?token={lookalike}", dev.field("url"))).await {
            Err(Refused::Status(403)) => {}
            other => panic!(
                "a token for {user:?}: expected 403, got {:?}",
                other.map(|_| "connected")
            ),
        }
    }

    // The client that uses its grant too much, at the template's limits. A user holds 50
    // connections at most; the 51st handshake is refused with 429, and a closed one frees its
    // place (its `$disconnect` ran).
    let hoarder = dev.token("hoarder").await;
    let hoarder_url = format!("{}?token={hoarder}", dev.field("url"));
    let mut held = Vec::new();
    for _ in 0..50 {
        held.push(
            Client::connect(&hoarder_url)
                .await
                .expect("within the limit"),
        );
    }
    match Client::connect(&hoarder_url).await {
        Err(Refused::Status(429)) => {}
        other => panic!(
            "the 51st connection: expected 429, got {:?}",
            other.map(|_| "connected")
        ),
    }
    let mut bob = dev.connect("bob").await;
    // Dropped without a close frame: the gateway still runs its `$disconnect`.
    drop(held.pop());
    let mut reopened = None;
    for _ in 0..50 {
        match Client::connect(&hoarder_url).await {
            Ok(c) => {
                reopened = Some(c);
                break;
            }
            Err(Refused::Status(429)) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(reopened.is_some(), "a closed connection frees its place");

    // A connection flooding frames: past its burst of 20 it gets `rate_limited`, and another
    // user's frames are answered as usual meanwhile.
    let flooder = held.last_mut().unwrap();
    for i in 0..40 {
        flooder.send(json!({"action": "ping", "id": i})).await;
    }
    bob.send(json!({"action": "ping", "id": "bob"})).await;
    assert_eq!(bob.expect("bob's pong", is("pong"), T).await["id"], "bob");
    let mut answers = Vec::new();
    while answers.len() < 40 {
        answers.push(
            flooder
                .expect(
                    "an answer",
                    |v| v["type"] == "pong" || v["type"] == "error",
                    T,
                )
                .await,
        );
    }
    let limited: Vec<&Value> = answers
        .iter()
        .filter(|a| a["code"] == "rate_limited")
        .collect();
    let pongs = answers.iter().filter(|a| a["type"] == "pong").count();
    assert!(
        pongs >= 20 && limited.len() >= 5,
        "{pongs} pongs, {} refused",
        limited.len()
    );
    assert!(
        limited
            .iter()
            .all(|a| a["retry_after_ms"].as_u64().unwrap() > 0)
    );

    // One that keeps sending regardless is closed: its refusals would still take invocations
    // and the stage's throttle from everyone. The others go on.
    let mut flooding = None;
    'rounds: for round in 0..10 {
        for i in 0..200 {
            if futures::SinkExt::send(
                &mut flooder.ws,
                tokio_tungstenite::tungstenite::Message::text(
                    json!({"action": "ping", "id": round * 1000 + i}).to_string(),
                ),
            )
            .await
            .is_err()
            {
                break 'rounds;
            }
        }
        while let Some(v) = flooder.recv(Duration::from_millis(500)).await {
            if v["code"] == "flooding" {
                flooding = Some(v);
                break 'rounds;
            }
        }
    }
    let flooding = flooding.expect("the flooding connection is told why it closes");
    assert!(
        flooding["message"]
            .as_str()
            .unwrap()
            .contains("kept sending")
    );
    assert!(flooder.closed(T).await, "and closed");
    bob.send(json!({"action": "ping", "id": "bob again"})).await;
    assert_eq!(
        bob.expect("bob's pong", is("pong"), T).await["id"],
        "bob again"
    );
}

/// `status` and `plan` pointed at `wsctl dev` compare the stack with the build `wsctl dev`
/// deployed (this machine's architecture), not with the config's Lambda architecture, and say
/// where the stack is served: an arm64 config on an x86_64 machine is in sync, with its local
/// `ws://` URLs.
#[tokio::test(flavor = "multi_thread")]
async fn status_and_plan_against_dev_show_its_urls_and_no_drift() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dev_config(dir.path());
    let other = if cfg!(target_arch = "aarch64") {
        "x86_64"
    } else {
        "arm64"
    };
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replacen("architecture: x86_64", &format!("architecture: {other}"), 1);
    assert!(text.contains(&format!("architecture: {other}")));
    std::fs::write(&config, text).unwrap();
    let dev = Dev::start(&config, &[]);
    let url = dev.field("url").to_string();
    assert!(url.starts_with("ws://127.0.0.1:"), "{url}");

    let (code, out, err) = wsctl(&dev, &config, &["status"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("  WebSocket URL:    {url}\n"))
            && out.contains("In sync with the config."),
        "{out}{err}"
    );
    assert!(
        err.contains(&format!("is served by wsctl dev at {url}")),
        "{err}"
    );

    let (code, out, err) = wsctl(&dev, &config, &["plan", "--no-build"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("No changes: the stack matches the config."),
        "{out}{err}"
    );
    assert!(
        err.contains(&format!("is served by wsctl dev at {url}")),
        "{err}"
    );
}

/// The items live in DynamoDB Local, Amazon's own engine, not in moto: a connection's row is
/// read back through the dev endpoint and is absent from moto. And items expire as DynamoDB's
/// TTL makes them: a row whose `ttl` (epoch seconds) has passed is deleted by the sweep, while
/// one not yet expired and one whose attribute is not a number stay ("Working with Time to
/// Live": only a Number attribute holding an epoch time in seconds expires).
#[tokio::test(flavor = "multi_thread")]
async fn items_live_in_dynamodb_local_and_expire_by_their_ttl() {
    use aws_sdk_dynamodb::types::AttributeValue as V;
    let (_dir, dev) = dev();
    let mut ana = dev.connect("ana").await;
    ana.send(json!({"action": "subscribe", "channel": "ttl-1"}))
        .await;
    ana.expect("subscribed", is("subscribed"), T).await;
    let rows = scan_all(&dev, "chat-dev-connections").await;
    assert!(
        rows.iter().any(|r| s(r, "user") == "ana"),
        "ana's row through the dev endpoint: {rows:?}"
    );
    let moto = aws_sdk_dynamodb::Client::new(&wsctl_tests::dev::sdk_at(&dev.field("moto")));
    let in_moto = moto
        .scan()
        .table_name("chat-dev-connections")
        .send()
        .await
        .expect("the table exists in moto, the control plane")
        .count;
    assert_eq!(in_moto, 0, "no item goes to moto");

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let db = dev.dynamodb();
    for (pk, ttl) in [
        ("expired", V::N((now - 60).to_string())),
        ("later", V::N((now + 3600).to_string())),
        ("not-a-number", V::S((now - 60).to_string())),
    ] {
        db.put_item()
            .table_name("chat-dev-connections")
            .item("pk", V::S(format!("ttl-test#{pk}")))
            .item("ttl", ttl)
            .send()
            .await
            .expect("put");
    }
    let left = |rows: &[std::collections::HashMap<String, V>]| -> Vec<String> {
        let mut keys: Vec<String> = rows
            .iter()
            .map(|r| s(r, "pk"))
            .filter(|k| k.starts_with("ttl-test#"))
            .collect();
        keys.sort();
        keys
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let keys = left(&scan_all(&dev, "chat-dev-connections").await);
        if keys == ["ttl-test#later", "ttl-test#not-a-number"] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the expired row is not swept within 30 s: {keys:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let rows = scan_all(&dev, "chat-dev-connections").await;
    assert!(
        rows.iter().any(|r| s(r, "user") == "ana"),
        "a live connection's row stays: {rows:?}"
    );
}

/// moto serves any call, so without a check a function whose role lacks a grant works here
/// and fails on AWS. The `caller` fixture (a user's own function) may read the connections
/// table only: its read of another table is refused as AWS refuses it, with the
/// AccessDeniedException naming its role's session, the action and the table.
#[tokio::test(flavor = "multi_thread")]
async fn a_call_the_functions_role_does_not_allow_fails_as_on_aws() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dev_config(dir.path());
    let caller = wsctl_tests::root().join("tests/fixtures/caller");
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace(
            "functions:\n",
            &format!(
                "functions:\n  caller:\n    crate: {}\n    tables: {{ connections: read }}\n",
                caller.display()
            ),
        )
        .replace("routes:\n", "routes:\n  call: caller\n");
    std::fs::write(&config, text).expect("write");

    let get = |table: &'static str| {
        let key = match table {
            "chat-dev-subscriptions" => json!({"channel": "room-1", "connection": "c"}),
            _ => json!({"pk": "c"}),
        };
        json!({"action": "call", "get": table, "key": key})
    };
    let answer = |table: &'static str| move |l: &str| l.contains(&format!("caller get {table}: "));
    let mut dev = Dev::start(&config, &[]);
    assert_eq!(dev.info["iam"], true);
    let mut ana = dev.connect("ana").await;
    ana.send(get("chat-dev-connections")).await;
    let granted = dev.wait_log("the granted read", answer("chat-dev-connections"), T);
    assert!(granted.ends_with(": ok"), "{granted}");
    ana.send(get("chat-dev-subscriptions")).await;
    let refused = dev.wait_log("the refused read", answer("chat-dev-subscriptions"), T);
    let arn = "arn:aws:dynamodb:us-east-1:123456789012:table/chat-dev-subscriptions";
    assert!(
        refused.ends_with(&format!(
            "caller get chat-dev-subscriptions: AccessDeniedException: User: arn:aws:sts::123456789012:assumed-role/chat-dev-caller/chat-dev-caller is not authorized to perform: dynamodb:GetItem on resource: {arn} because no identity-based policy allows the dynamodb:GetItem action"
        )),
        "{refused}"
    );
    dev.wait_log(
        "the gateway's note",
        |l| l.contains("refused: User:") && l.contains(arn),
        T,
    );
    // The bundled functions, whose roles grant what they use, work beside it.
    ana.send(json!({"action": "subscribe", "channel": "room-1"}))
        .await;
    ana.expect("subscribed", is("subscribed"), T).await;
    ana.send(json!({"action": "publish", "channel": "room-1", "data": "hi"}))
        .await;
    ana.expect("the message", is("message"), T).await;
    dev.stop();

    // The same read with the check off is served: what `--no-iam` is for, and why it is not
    // the default.
    let dev = Dev::start(&config, &["--no-iam"]);
    assert_eq!(dev.info["iam"], false);
    let mut ana = dev.connect("ana").await;
    ana.send(get("chat-dev-subscriptions")).await;
    let served = dev.wait_log("the unchecked read", answer("chat-dev-subscriptions"), T);
    assert!(served.ends_with(": ok"), "{served}");
}

/// A token minted by `wsctl token` against the dev stack.
fn minted(dev: &Dev, config: &std::path::Path, user: &str, ttl: &str, allow: &[&str]) -> String {
    let mut args = vec!["--output", "json", "token", "--user", user, "--ttl", ttl];
    for a in allow {
        args.extend(["--allow", a]);
    }
    let (code, out, err) = wsctl(dev, config, &args);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).expect("token JSON");
    v["token"].as_str().expect("token").to_string()
}

async fn open(dev: &Dev, token: &str) -> Result<Client, Refused> {
    Client::connect(&format!("{}?token={token}", dev.field("url"))).await
}

fn error(code: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["type"] == "error" && v["code"] == code
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_ends_a_renewal_replaces_it_and_revoke_and_disconnect_close() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dev_config(dir.path());
    let dev = Dev::start(&config, &[]);
    let all = ["room-*:subscribe,publish,presence,history"];

    // A connection lives no longer than its token: the first frame after the expiry is
    // answered `token_expired`, and the server closes the socket.
    let short = minted(&dev, &config, "tina", "3s", &all);
    let mut c = match open(&dev, &short).await {
        Ok(c) => c,
        Err(e) => panic!("connect: {e:?}\n{}", dev.logs.lock().unwrap().join("\n")),
    };
    c.send(json!({"action": "subscribe", "channel": "room-1"}))
        .await;
    c.expect("subscribed", is("subscribed"), T).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    c.send(json!({"action": "publish", "channel": "room-1", "data": "late"}))
        .await;
    c.expect("token_expired", error("token_expired"), T).await;
    assert!(c.closed(T).await, "the server closes the connection");

    // A renewal before the expiry keeps the connection, under the new token's grants only:
    // a channel it no longer allows is left at once.
    let short = minted(&dev, &config, "tina", "4s", &all);
    let mut c = open(&dev, &short).await.expect("connect");
    let mut listener = dev.connect("lena").await;
    for room in ["room-1", "room-2"] {
        c.send(json!({"action": "subscribe", "channel": room}))
            .await;
        c.expect("subscribed", is("subscribed"), T).await;
        listener
            .send(json!({"action": "subscribe", "channel": room}))
            .await;
        listener.expect("subscribed", is("subscribed"), T).await;
    }
    let narrow = minted(&dev, &config, "tina", "1h", &["room-1:subscribe,publish"]);
    c.send(json!({"action": "auth", "token": narrow})).await;
    let renewed = c.expect("authenticated", is("authenticated"), T).await;
    assert_eq!(renewed["user"], "tina");
    assert_eq!(renewed["dropped"], json!(["room-2"]));
    assert!(renewed["expires"].as_u64().unwrap() > wsctl_functions::auth::now() + 3000);
    c.send(json!({"action": "history", "channel": "room-1"}))
        .await;
    c.expect("forbidden", error("forbidden"), T).await;
    listener
        .send(json!({"action": "publish", "channel": "room-2", "data": "not for tina"}))
        .await;
    listener
        .send(json!({"action": "publish", "channel": "room-1", "data": "for tina"}))
        .await;
    let got = c
        .expect("room-1's message", |v| v["type"] == "message", T)
        .await;
    assert_eq!(got["data"], "for tina", "room-2 is no longer delivered");
    // Past the first token's expiry, the renewed one holds.
    tokio::time::sleep(Duration::from_secs(5)).await;
    c.send(json!({"action": "ping", "id": 1})).await;
    c.expect("pong", is("pong"), T).await;

    // A renewal never changes the user, nor accepts a forged token.
    let bob = minted(&dev, &config, "bob", "1h", &all);
    c.send(json!({"action": "auth", "token": bob})).await;
    c.expect("forbidden", error("forbidden"), T).await;
    let forged = format!("{}x", &narrow[..narrow.len() - 1]);
    c.send(json!({"action": "auth", "token": forged})).await;
    c.expect("unauthorized", error("unauthorized"), T).await;
    c.send(json!({"action": "publish", "channel": "room-1", "data": "still here"}))
        .await;
    c.expect("ack", is("ack"), T).await;

    // `wsctl disconnect --user` closes without revoking: the same token connects again.
    let (code, out, err) = wsctl(
        &dev,
        &config,
        &["--output", "json", "disconnect", "--user", "tina"],
    );
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).expect("disconnect JSON");
    assert_eq!(v["closed"].as_array().map(Vec::len), Some(1), "{v}");
    assert!(c.closed(T).await, "closed");
    let mut again = open(&dev, &narrow).await.expect("the token still passes");
    again.send(json!({"action": "ping"})).await;
    again.expect("pong", is("pong"), T).await;

    // `wsctl revoke --user` closes every open connection of the user and refuses the tokens
    // issued before it, at the handshake and in renewals; a token issued after passes.
    let leaked = minted(&dev, &config, "mallory", "1h", &all);
    let mut m1 = open(&dev, &leaked).await.expect("connect");
    let mut m2 = open(&dev, &leaked).await.expect("connect");
    m1.send(json!({"action": "ping"})).await;
    m1.expect("pong", is("pong"), T).await;
    // Tokens carry whole seconds: a token issued in the second of the revocation passes.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (code, out, err) = wsctl(
        &dev,
        &config,
        &["--output", "json", "revoke", "--user", "mallory"],
    );
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).expect("revoke JSON");
    assert_eq!(v["user"], "mallory");
    assert_eq!(v["closed"].as_array().map(Vec::len), Some(2), "{v}");
    assert!(m1.closed(T).await, "closed");
    assert!(m2.closed(T).await, "closed");
    assert!(
        matches!(open(&dev, &leaked).await, Err(Refused::Status(403))),
        "a revoked token is refused at the handshake"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let fresh = minted(&dev, &config, "mallory", "1h", &all);
    let mut m3 = open(&dev, &fresh)
        .await
        .expect("a token issued since passes");
    m3.send(json!({"action": "auth", "token": leaked})).await;
    m3.expect("unauthorized", error("unauthorized"), T).await;
    m3.send(json!({"action": "ping"})).await;
    m3.expect("pong", is("pong"), T).await;
    // The other users were never touched.
    again.send(json!({"action": "ping"})).await;
    again.expect("pong", is("pong"), T).await;
}

/// Reads pay for what they send, as DynamoDB Local reports them with `ReturnConsumedCapacity`.
/// A `history` frame: ten messages of 120 KB, read from the start, come one per frame, each
/// frame's reads at most 64 read units (a page of 100 would read about 3,000). A fan-out: the
/// members' data of a channel is not in the partition its publishes read, so 30 subscribers
/// present with 2 KB each cost a fan-out one read unit, not eight.
#[tokio::test(flavor = "multi_thread")]
async fn history_and_fan_out_reads_pay_for_what_they_send() {
    use wsctl_functions::store::{Store, Tables, TtlAttributes};
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dev_config(dir.path());
    let dev = Dev::start(&config, &[]);
    let store = Store {
        db: dev.dynamodb(),
        tables: Tables {
            connections: "chat-dev-connections".into(),
            subscriptions: "chat-dev-subscriptions".into(),
            history: "chat-dev-history".into(),
            counters: "chat-dev-counters".into(),
            ttl: TtlAttributes::default(),
        },
        history_ttl: Duration::from_secs(3600),
    };
    let big = json!("x".repeat(wsctl_functions::protocol::MAX_DATA_BYTES - 16));
    for _ in 0..10 {
        store
            .append("big", None, "ana", &big, no_deadline())
            .await
            .expect("append");
    }
    let (mut since, mut frames) = (0, 0);
    loop {
        let page = store
            .history(
                "big",
                Some(since),
                None,
                wsctl_functions::protocol::MAX_HISTORY_LIMIT,
                wsctl_functions::protocol::MAX_FRAME_BYTES,
            )
            .await
            .expect("history");
        assert_eq!(page.messages.len(), 1, "one 120 KB message per frame");
        assert!(
            page.read_units > 0.0 && page.read_units <= 64.0,
            "frame {frames} read {} units",
            page.read_units
        );
        since = page.messages[0].serial;
        frames += 1;
        if !page.more {
            break;
        }
    }
    assert_eq!((frames, since), (10, 10));

    let bio = json!({"bio": "x".repeat(1900)});
    for i in 0..30 {
        let id = format!("conn{i:02}");
        store
            .subscribe("room", &id, "ana")
            .await
            .expect("subscribe");
        assert!(
            store
                .enter_presence("room", &id, "ana", &bio)
                .await
                .expect("enter")
        );
    }
    // Present without subscribing: listed as a member, never a subscriber.
    store
        .enter_presence("room", "lurker", "bob", &bio)
        .await
        .expect("enter");
    let (subscribers, _) = store.subscribers("room", None, 1000).await.expect("read");
    assert_eq!(subscribers.len(), 30);
    assert!(
        subscribers
            .iter()
            .all(|s| s.listening && s.connection != "lurker")
    );
    let fan_out = dev
        .dynamodb()
        .query()
        .table_name("chat-dev-subscriptions")
        .key_condition_expression("#c = :c")
        .expression_attribute_names("#c", "channel")
        .expression_attribute_values(
            ":c",
            aws_sdk_dynamodb::types::AttributeValue::S("room".into()),
        )
        .return_consumed_capacity(aws_sdk_dynamodb::types::ReturnConsumedCapacity::Total)
        .send()
        .await
        .expect("query");
    let units = fan_out
        .consumed_capacity
        .and_then(|c| c.capacity_units)
        .unwrap_or_default();
    assert!(
        units > 0.0 && units <= 1.0,
        "the fan-out's read took {units} units"
    );
    let (members, next) = store.members("room", None, 100).await.expect("members");
    assert_eq!((members.len(), next), (31, None));
    assert!(members.iter().all(|m| m.data == bio));
    // Unsubscribing leaves presence too; what a connection holds is one entry per channel.
    let held = store.subscriptions_of("conn00").await.expect("held");
    assert_eq!(held.len(), 1);
    assert!(held[0].1.listening && held[0].1.present && held[0].1.member == bio);
    let gone = store
        .unsubscribe("room", "conn00")
        .await
        .expect("unsubscribe")
        .unwrap();
    assert!(gone.present && gone.member == bio);
    assert!(
        store
            .subscriptions_of("conn00")
            .await
            .expect("held")
            .is_empty()
    );
    assert!(store.leave_presence("room", "lurker").await.expect("leave"));
    assert!(!store.leave_presence("room", "lurker").await.expect("leave"));
    let removed = store.remove_connection("conn01").await.expect("remove");
    assert_eq!(removed.len(), 1, "present in one channel: {removed:?}");
    assert_eq!(removed[0].0, "room");
    let (members, _) = store.members("room", None, 100).await.expect("members");
    assert_eq!(members.len(), 28);
}

/// Sends `frame` and returns the answer, sending it again after each `rate_limited`.
async fn ask(c: &mut Client, frame: Value) -> Value {
    loop {
        c.send(frame.clone()).await;
        let answer = c
            .expect(
                "an answer",
                |v| v["type"] != "message" && v["type"] != "presence",
                T,
            )
            .await;
        match answer["retry_after_ms"].as_u64() {
            Some(ms) if answer["code"] == "rate_limited" => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            _ => return answer,
        }
    }
}
