//! The per-client limits (`limits:` in wsctl.yaml) against the client that uses its grant too
//! much: a flood of frames, of publishes and of bytes, a presence megaphone, a channel hoarder,
//! a connection hoarder. Handlers run against moto's DynamoDB and a local `@connections`
//! server (see `functions.rs`); the same through `wsctl dev` is in `dev.rs`.

use serde_json::{Value, json};
use wsctl_functions::Services;
use wsctl_functions::handlers::{self, connect, disconnect};
use wsctl_functions::limits::Rate;

use crate::functions::{ALL, Rig, event, frames, rig};

/// `event` from `user` (the authorizer's context names the user).
fn from(
    user: &str,
    route: &str,
    kind: &str,
    connection: &str,
    body: Option<&Value>,
) -> aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest {
    let body = body.map(Value::to_string);
    let mut e = serde_json::to_value(event(route, kind, connection, body.as_deref(), ALL)).unwrap();
    e["requestContext"]["authorizer"]["user"] = json!(user);
    e["requestContext"]["authorizer"]["principalId"] = json!(user);
    serde_json::from_value(e).unwrap()
}

async fn send(ctx: &Services, user: &str, connection: &str, body: Value) {
    handlers::message::handle(
        ctx,
        &from(user, "$default", "MESSAGE", connection, Some(&body)),
    )
    .await;
}

fn codes(rig: &Rig, connection: &str) -> Vec<String> {
    frames(&rig.server, connection)
        .iter()
        .map(|f| match f["type"].as_str().unwrap() {
            "error" => f["code"].as_str().unwrap().to_string(),
            other => other.to_string(),
        })
        .collect()
}

async fn stored(rig: &Rig, channel: &str) -> usize {
    rig.ctx
        .store
        .history(channel, Some(0), None, 1000, 1 << 20)
        .await
        .unwrap()
        .messages
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flooding_frames_is_refused_and_the_others_are_not() {
    let rig = rig(5000).await;
    let mut ctx = rig.ctx.clone();
    // One frame a minute after a burst of five: the flood's frames are refused for the whole test.
    ctx.limits.frames = Rate::new(1.0 / 60.0, 5);
    for c in ["flooder", "honest"] {
        rig.server.connect(c);
    }
    send(
        &ctx,
        "bob",
        "honest",
        json!({"action": "subscribe", "channel": "room"}),
    )
    .await;
    for i in 0..12 {
        let frame = match i % 4 {
            0 => json!({"action": "ping"}),
            1 => json!({"action": "publish", "channel": "room", "data": i}),
            2 => json!({"action": "nonsense"}),
            _ => json!({"action": "subscribe", "channel": "room"}),
        };
        send(&ctx, "mallory", "flooder", frame).await;
    }
    let got = codes(&rig, "flooder");
    assert_eq!(got.len(), 12, "one answer a frame: {got:?}");
    assert!(
        got[..5].iter().all(|c| c != "rate_limited"),
        "the burst passes: {got:?}"
    );
    assert!(
        got[5..].iter().all(|c| c == "rate_limited"),
        "then every frame, malformed ones too, is refused: {got:?}"
    );
    let refusal = frames(&rig.server, "flooder").pop().unwrap();
    let wait = refusal["retry_after_ms"].as_u64().unwrap();
    assert!((1..=60_000).contains(&wait), "{refusal}");
    assert!(
        refusal["message"]
            .as_str()
            .unwrap()
            .contains("limits.frames")
    );
    // Of the refused frames, nothing happened: one publish went through (frame 2), none after.
    rig.settle().await;
    assert_eq!(stored(&rig, "room").await, 1);
    let delivered = codes(&rig, "honest")
        .iter()
        .filter(|c| *c == "message")
        .count();
    assert_eq!(delivered, 1);
    // Another connection keeps its own budget.
    send(&ctx, "bob", "honest", json!({"action": "ping", "id": 1})).await;
    assert_eq!(codes(&rig, "honest").last().unwrap(), "pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_publishes_and_bytes_are_counted_over_all_of_its_connections() {
    let rig = rig(5000).await;
    let mut ctx = rig.ctx.clone();
    ctx.limits.publishes = Rate::new(1.0 / 60.0, 3);
    for c in ["ana-1", "ana-2", "bob-1"] {
        rig.server.connect(c);
    }
    for (connection, i) in [("ana-1", 1), ("ana-2", 2), ("ana-1", 3), ("ana-2", 4)] {
        send(
            &ctx,
            "ana",
            connection,
            json!({"action": "publish", "channel": "c", "data": i, "id": format!("p{i}")}),
        )
        .await;
    }
    let refused = frames(&rig.server, "ana-2").pop().unwrap();
    assert_eq!(refused["code"], "rate_limited", "{refused}");
    assert_eq!(refused["id"], "p4");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("limits.publishes")
    );
    assert_eq!(
        stored(&rig, "c").await,
        3,
        "the refused publish took no serial"
    );
    // Another user is not held back by ana.
    send(
        &ctx,
        "bob",
        "bob-1",
        json!({"action": "publish", "channel": "c", "data": 5}),
    )
    .await;
    assert_eq!(codes(&rig, "bob-1"), ["ack"]);

    // Bytes: the smallest burst that still holds the largest publish, refilled at 1 KB/s.
    let mut ctx = rig.ctx.clone();
    ctx.limits.publish_bytes = Rate::new(1024.0, 122_880);
    rig.server.connect("carol-1");
    let big = json!("x".repeat(100 * 1024));
    for i in 0..2 {
        send(
            &ctx,
            "carol",
            "carol-1",
            json!({"action": "publish", "channel": "big", "data": big, "id": format!("b{i}")}),
        )
        .await;
    }
    let answers = frames(&rig.server, "carol-1");
    assert_eq!(answers[0]["type"], "ack");
    assert_eq!(answers[1]["code"], "rate_limited", "{}", answers[1]);
    assert!(
        answers[1]["message"]
            .as_str()
            .unwrap()
            .contains("limits.publish_bytes")
    );
    // Another 100 KB needs 80 KB more than the burst holds: 80 s at 1 KB/s.
    let wait = answers[1]["retry_after_ms"].as_u64().unwrap();
    assert!((70_000..=90_000).contains(&wait), "{wait}");
    // Small publishes still fit in what is left.
    send(
        &ctx,
        "carol",
        "carol-1",
        json!({"action": "publish", "channel": "big", "data": "hi"}),
    )
    .await;
    assert_eq!(frames(&rig.server, "carol-1")[2]["type"], "ack");
    assert_eq!(stored(&rig, "big").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_updates_and_channels_held_are_bounded_per_connection() {
    let rig = rig(5000).await;
    let mut ctx = rig.ctx.clone();
    ctx.limits.presence = Rate::new(1.0 / 60.0, 2);
    ctx.limits.subscriptions_per_connection = 3;
    for c in ["watcher", "busy"] {
        rig.server.connect(c);
    }
    send(
        &ctx,
        "w",
        "watcher",
        json!({"action": "subscribe", "channel": "p"}),
    )
    .await;
    for name in ["a", "b", "c"] {
        send(
            &ctx,
            "u",
            "busy",
            json!({"action": "presence", "channel": "p", "enter": {"name": name}}),
        )
        .await;
    }
    // A members query is no update: it is not counted.
    send(
        &ctx,
        "u",
        "busy",
        json!({"action": "presence", "channel": "p"}),
    )
    .await;
    rig.settle().await;
    let enters: Vec<Value> = frames(&rig.server, "watcher")
        .into_iter()
        .filter(|f| f["type"] == "presence")
        .map(|f| f["member"]["data"]["name"].clone())
        .collect();
    assert_eq!(enters, [json!("a"), json!("b")]);
    let got = codes(&rig, "busy");
    assert_eq!(got, ["rate_limited", "members"], "{got:?}");

    // Channels: p (present) and two subscriptions fill the three places.
    for channel in ["s1", "s2", "s3"] {
        send(
            &ctx,
            "u",
            "busy",
            json!({"action": "subscribe", "channel": channel}),
        )
        .await;
    }
    let refused = frames(&rig.server, "busy").pop().unwrap();
    assert_eq!(
        (refused["code"].as_str(), refused["channel"].as_str()),
        (Some("limit_exceeded"), Some("s3")),
        "{refused}"
    );
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("subscriptions_per_connection")
    );
    // Subscribing again where it is already is no new place; leaving one frees one.
    send(
        &ctx,
        "u",
        "busy",
        json!({"action": "subscribe", "channel": "s1"}),
    )
    .await;
    assert_eq!(codes(&rig, "busy").last().unwrap(), "subscribed");
    send(
        &ctx,
        "u",
        "busy",
        json!({"action": "unsubscribe", "channel": "s1"}),
    )
    .await;
    send(
        &ctx,
        "u",
        "busy",
        json!({"action": "subscribe", "channel": "s3"}),
    )
    .await;
    assert_eq!(codes(&rig, "busy").last().unwrap(), "subscribed");
    let channels: Vec<String> = rig
        .ctx
        .store
        .subscriptions_of("busy")
        .await
        .unwrap()
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    assert_eq!(channels, ["p", "s2", "s3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_holds_at_most_its_connections_and_a_disconnect_frees_one() {
    let rig = rig(5000).await;
    let mut ctx = rig.ctx.clone();
    ctx.limits.connections_per_user = 2;
    let status = |r: aws_lambda_events::apigw::ApiGatewayProxyResponse| r.status_code;
    for c in ["h-1", "h-2"] {
        let r = connect::handle(&ctx, &from("hoarder", "$connect", "CONNECT", c, None)).await;
        assert_eq!(status(r.unwrap()), 200);
    }
    let third = connect::handle(&ctx, &from("hoarder", "$connect", "CONNECT", "h-3", None))
        .await
        .unwrap();
    assert_eq!(third.status_code, 429);
    assert!(
        rig.ctx.store.get_connection("h-3").await.unwrap().is_none(),
        "a refused handshake stores no connection"
    );
    // Another user connects as usual.
    let other = connect::handle(&ctx, &from("ana", "$connect", "CONNECT", "a-1", None)).await;
    assert_eq!(status(other.unwrap()), 200);
    // A retried `$connect` of a connection already counted is no second place.
    let again = connect::handle(&ctx, &from("hoarder", "$connect", "CONNECT", "h-2", None)).await;
    assert_eq!(status(again.unwrap()), 200);

    disconnect::handle(
        &ctx,
        &from("hoarder", "$disconnect", "DISCONNECT", "h-1", None),
        None,
    )
    .await
    .unwrap();
    let fourth = connect::handle(&ctx, &from("hoarder", "$connect", "CONNECT", "h-4", None)).await;
    assert_eq!(status(fourth.unwrap()), 200);
    let fifth = connect::handle(&ctx, &from("hoarder", "$connect", "CONNECT", "h-5", None)).await;
    assert_eq!(status(fifth.unwrap()), 429);
}
