//! `events:`: the stage's connects, disconnects, presence changes and the messages of chosen
//! channels, sent to an EventBridge bus. Against moto through the proxy, the stack's own bus is
//! created, tagged, granted to the functions that send, left alone by a second deploy and
//! removed with the rules applications put on it. Against `wsctl dev`, the events reach an SQS
//! queue through a rule, as an application would receive them, and a bus that refuses them
//! costs the clients nothing.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wsctl_tests::dev::{Dev, dev_config};
use wsctl_tests::proxy::Proxy;
use wsctl_tests::*;

use crate::dev::wsctl;

const T: Duration = Duration::from_secs(10);
const EVENTS: &str = "events: { connections: true, messages: [\"orders-*\"] }\n";

/// A queue and a rule on `bus` that sends it every event of `source`; the queue's URL.
async fn queue_for(sdk: &aws_config::SdkConfig, bus: &str, source: &str) -> String {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let events = aws_sdk_eventbridge::Client::new(sdk);
    let url = sqs
        .create_queue()
        .queue_name("app-events")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    events
        .put_rule()
        .name("to-app")
        .event_bus_name(bus)
        .event_pattern(json!({"source": [source]}).to_string())
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule("to-app")
        .event_bus_name(bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    url
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stacks_bus_is_created_granted_left_alone_and_removed_with_its_rules() {
    build_fixture();
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.url());
    let project = Project::new();
    let on = format!(
        "{}{EVENTS}",
        project
            .read_config()
            .replacen("  publish:\n", "  publish:\n    handler: publish\n", 1)
    );
    let off = on.replacen(EVENTS, "", 1);
    project.write_config(&on);
    let out = project.wsctl(&proxy.url(), &["deploy", "--no-build", "--no-progress"]);
    assert!(out.status.success(), "{}", text(&out));
    let sdk = sdk(&moto.url()).await;
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let bus = events
        .describe_event_bus()
        .name("fixture-test")
        .send()
        .await
        .expect("the stack's bus");
    let arn = bus.arn.unwrap();
    let tags = events
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .unwrap()
        .tags
        .unwrap_or_default();
    assert!(
        tags.iter()
            .any(|t| t.key == "wsctl:stack" && t.value == "fixture"),
        "{tags:?}"
    );

    // The publish function (the bundled role) may send to that bus and knows what to send; the
    // echo functions, which are no bundled role, get neither.
    let state = inventory::snapshot(&moto.url()).await;
    let env = &state["functions"]["fixture-test-publish"]["env"];
    let settings: Value = serde_json::from_str(env["WSCTL_EVENTS"].as_str().unwrap()).unwrap();
    assert_eq!(
        settings,
        json!({"bus": "fixture-test", "source": "wsctl.fixture.test", "connections": true, "presence": false, "messages": ["orders-*"]})
    );
    let statements = state["roles"]["fixture-test-publish"]["policies"]["wsctl"]["Statement"]
        .as_array()
        .unwrap()
        .clone();
    let send = statements
        .iter()
        .find(|s| s["Sid"] == "SendEvents")
        .expect("a SendEvents statement");
    assert_eq!(send["Action"], json!(["events:PutEvents"]));
    assert_eq!(send["Resource"], json!([arn]));
    assert!(
        state["functions"]["fixture-test-connect"]["env"]
            .get("WSCTL_EVENTS")
            .is_none()
    );

    // Deployed again unchanged: not one mutating call.
    proxy.clear();
    let out = project.wsctl(&proxy.url(), &["deploy", "--no-build", "--no-progress"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(proxy.mutations(), vec![], "the second deploy mutated");

    // An application's rule on the bus. Turned off, the bus goes after its rules (EventBridge
    // deletes a bus only once its rules are gone, and a rule only once its targets are), and
    // the plan marks what that loses.
    queue_for(&sdk, "fixture-test", "wsctl.fixture.test").await;
    project.write_config(&off);
    let out = project.wsctl(&proxy.url(), &["plan", "--no-build", "--output", "json"]);
    let plan = stdout_json(&out);
    let bus_change = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "event_bus")
        .cloned()
        .unwrap_or_else(|| panic!("{plan:#}"));
    assert_eq!(bus_change["action"], "delete");
    assert!(bus_change["drops"].as_str().unwrap().contains("rule"));
    proxy.clear();
    let out = project.wsctl(
        &proxy.url(),
        &["deploy", "--no-build", "--no-progress", "--yes"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let events_calls: Vec<String> = proxy
        .mutations()
        .into_iter()
        .map(|c| c.operation)
        .filter(|op| ["RemoveTargets", "DeleteRule", "DeleteEventBus"].contains(&op.as_str()))
        .collect();
    assert_eq!(
        events_calls,
        ["RemoveTargets", "DeleteRule", "DeleteEventBus"]
    );
    assert!(
        events
            .describe_event_bus()
            .name("fixture-test")
            .send()
            .await
            .is_err()
    );

    // On again, and destroyed with the stack.
    project.write_config(&on);
    let out = project.wsctl(&proxy.url(), &["deploy", "--no-build", "--no-progress"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = project.wsctl(&proxy.url(), &["destroy", "--yes", "--no-progress"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        events
            .describe_event_bus()
            .name("fixture-test")
            .send()
            .await
            .is_err(),
        "destroy removes the bus"
    );
}

/// Bodies of the queue's messages until `want` of them arrived (or `T` passed).
async fn receive(sqs: &aws_sdk_sqs::Client, url: &str, want: usize) -> Vec<Value> {
    let mut got = Vec::new();
    let started = Instant::now();
    while got.len() < want && started.elapsed() < T {
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        for m in out.messages.unwrap_or_default() {
            got.push(serde_json::from_str(m.body.as_deref().unwrap()).unwrap());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    got
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connections_life_reaches_the_applications_queue_through_a_rule() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dev_config(dir.path());
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!(
            "{text}events: {{ connections: true, presence: true, messages: [\"orders-*\"] }}\n"
        ),
    )
    .unwrap();
    let dev = Dev::start(&config, &[]);
    let sdk = dev.sdk();
    let url = queue_for(&sdk, "chat-dev", "wsctl.chat.dev").await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);

    let mut ana = dev.connect("ana").await;
    let connection = dev.connection_ids().await.pop().unwrap();
    for channel in ["orders-1", "chat-1"] {
        ana.send(json!({"action": "subscribe", "channel": channel}))
            .await;
        ana.expect("subscribed", |v| v["type"] == "subscribed", T)
            .await;
    }
    ana.send(json!({"action": "presence", "channel": "orders-1", "enter": {"role": "buyer"}}))
        .await;
    ana.expect("presence", |v| v["type"] == "presence", T).await;
    for channel in ["orders-1", "chat-1"] {
        ana.send(
            json!({"action": "publish", "channel": channel, "data": {"total": 12}, "id": "p-1"}),
        )
        .await;
        ana.expect("ack", |v| v["type"] == "ack", T).await;
    }
    ana.ws.close(None).await.ok();

    // connected, presence enter, the orders message, disconnected, presence leave: not the
    // chat-1 message, which `messages:` does not name.
    let got = receive(&sqs, &url, 5).await;
    let kinds: Vec<&str> = got
        .iter()
        .map(|e| e["detail-type"].as_str().unwrap())
        .collect();
    let mut sorted = kinds.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "connected",
            "disconnected",
            "message",
            "presence",
            "presence"
        ],
        "{got:#?}"
    );
    for e in &got {
        assert_eq!(e["source"], "wsctl.chat.dev");
    }
    let find = |kind: &str| got.iter().find(|e| e["detail-type"] == kind).unwrap();
    assert_eq!(
        find("connected")["detail"],
        json!({"connection": connection, "user": "ana"})
    );
    assert_eq!(
        find("disconnected")["detail"],
        json!({"connection": connection, "user": "ana"})
    );
    let message = &find("message")["detail"];
    assert_eq!(message["channel"], "orders-1");
    assert_eq!(message["serial"], 1);
    assert_eq!(message["id"], "p-1");
    assert_eq!(message["from"], "ana");
    assert_eq!(message["data"], json!({"total": 12}));
    let presence: Vec<(&str, &str)> = got
        .iter()
        .filter(|e| e["detail-type"] == "presence")
        .map(|e| {
            (
                e["detail"]["action"].as_str().unwrap(),
                e["detail"]["channel"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(presence.contains(&("enter", "orders-1")), "{presence:?}");
    assert!(presence.contains(&("leave", "orders-1")), "{presence:?}");
    let enter = got
        .iter()
        .find(|e| e["detail"]["action"] == "enter")
        .unwrap();
    assert_eq!(enter["detail"]["data"], json!({"role": "buyer"}));
    assert!(
        receive(&sqs, &url, 1).await.is_empty(),
        "nothing more: {kinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bus_that_refuses_events_costs_the_clients_nothing_and_is_counted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dev_config(dir.path());
    let text = std::fs::read_to_string(&config).unwrap();
    // A bus that does not exist: every PutEvents fails.
    std::fs::write(
        &config,
        format!("{text}events: {{ bus: no-such-bus, messages: [\"*\"] }}\n"),
    )
    .unwrap();
    let dev = Dev::start(&config, &[]);
    let mut sub = dev.connect("sub").await;
    sub.send(json!({"action": "subscribe", "channel": "c-1"}))
        .await;
    sub.expect("subscribed", |v| v["type"] == "subscribed", T)
        .await;
    let mut publisher = dev.connect("pub").await;
    for n in 0..3 {
        publisher
            .send(json!({"action": "publish", "channel": "c-1", "data": n}))
            .await;
        publisher.expect("ack", |v| v["type"] == "ack", T).await;
        let got = sub
            .expect("the message", |v| v["type"] == "message", T)
            .await;
        assert_eq!(got["data"], n);
    }
    // Counted where an operator looks: three failed events, none sent.
    let started = Instant::now();
    loop {
        let (code, out, err) = wsctl(&dev, &config, &["metrics", "--output", "json"]);
        assert_eq!(code, 0, "{err}");
        let metrics: Value = serde_json::from_str(&out).unwrap();
        let total = |name: &str| -> f64 {
            metrics["metrics"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["name"] == name)
                .map(|m| m["total"].as_f64().unwrap_or_default())
                .sum()
        };
        if total("EventsFailed") >= 3.0 || started.elapsed() > Duration::from_secs(30) {
            assert_eq!(total("EventsFailed"), 3.0, "{metrics:#}");
            assert_eq!(total("EventsSent"), 0.0, "{metrics:#}");
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
