//! The bundled functions against a hostile client: narrow tokens, oversized and odd input,
//! replayed ids, duplicated hand-offs. Handlers run against moto's DynamoDB and a local
//! `@connections` server (see `functions.rs`); what a client can do through `wsctl dev` is in
//! `dev.rs`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};
use wsctl_functions::handlers::{self, publish};

use crate::functions::{ALL, Rig, event, frames, rig};
use wsctl_tests::no_deadline;

async fn send(rig: &Rig, conn: &str, body: &Value, cap: &str) {
    handlers::message::handle(
        &rig.ctx,
        &event("$default", "MESSAGE", conn, Some(&body.to_string()), cap),
    )
    .await;
}

fn last(rig: &Rig, conn: &str) -> Value {
    frames(&rig.server, conn)
        .last()
        .cloned()
        .unwrap_or(Value::Null)
}

fn of_type(rig: &Rig, conn: &str, kind: &str) -> Vec<Value> {
    frames(&rig.server, conn)
        .into_iter()
        .filter(|f| f["type"] == kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presence_grant_is_not_a_subscribe_grant() {
    let rig = rig(5000).await;
    for c in ["watcher", "lurker", "talker"] {
        rig.server.connect(c);
    }
    let presence_only = r#"{"room":["presence"]}"#;
    send(
        &rig,
        "watcher",
        &json!({"action": "subscribe", "channel": "room"}),
        ALL,
    )
    .await;
    send(
        &rig,
        "lurker",
        &json!({"action": "presence", "channel": "room", "enter": {"name": "L"}}),
        presence_only,
    )
    .await;
    rig.settle().await;
    let enter = of_type(&rig, "watcher", "presence");
    assert_eq!(enter.len(), 1, "a subscriber sees the enter: {enter:?}");
    assert_eq!(enter[0]["member"]["data"], json!({"name": "L"}));

    send(
        &rig,
        "talker",
        &json!({"action": "publish", "channel": "room", "data": "secret plans"}),
        ALL,
    )
    .await;
    rig.settle().await;
    assert_eq!(of_type(&rig, "watcher", "message").len(), 1);
    assert!(
        of_type(&rig, "lurker", "message").is_empty(),
        "presence alone receives no message: {:?}",
        frames(&rig.server, "lurker")
    );
    // The members list is the presence grant's to read.
    send(
        &rig,
        "lurker",
        &json!({"action": "presence", "channel": "room"}),
        presence_only,
    )
    .await;
    assert_eq!(last(&rig, "lurker")["members"][0]["user"], "ana");

    // Leaving removes the presence-only item entirely; subscribing later does receive.
    send(
        &rig,
        "lurker",
        &json!({"action": "presence", "channel": "room", "leave": true}),
        presence_only,
    )
    .await;
    let (subs, _) = rig.ctx.store.subscribers("room", None, 100).await.unwrap();
    assert_eq!(
        subs.iter()
            .map(|s| s.connection.as_str())
            .collect::<Vec<_>>(),
        vec!["watcher"]
    );
    send(
        &rig,
        "lurker",
        &json!({"action": "presence", "channel": "room", "enter": true}),
        ALL,
    )
    .await;
    send(
        &rig,
        "lurker",
        &json!({"action": "subscribe", "channel": "room"}),
        ALL,
    )
    .await;
    send(
        &rig,
        "talker",
        &json!({"action": "publish", "channel": "room", "data": "now you see it"}),
        ALL,
    )
    .await;
    rig.settle().await;
    assert_eq!(
        of_type(&rig, "lurker", "message").len(),
        1,
        "subscribed: it receives"
    );

    // Member data: checked like data, and capped at 2 KB.
    rig.server.clear();
    for (enter, code) in [
        (json!("x".repeat(100)), "bad_request"),
        (json!({"bio": "x".repeat(2100)}), "too_large"),
        (json!(42), "bad_request"),
    ] {
        send(
            &rig,
            "talker",
            &json!({"action": "presence", "channel": "room", "enter": enter}),
            ALL,
        )
        .await;
        assert_eq!(last(&rig, "talker")["code"], code, "{enter}");
    }
    rig.settle().await;
    assert!(
        of_type(&rig, "watcher", "presence").is_empty(),
        "refused enters are not announced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_needs_the_history_grant_and_is_bounded() {
    let rig = rig(5000).await;
    rig.server.connect("phone");
    for i in 0..1500 {
        rig.ctx
            .store
            .append("feed", None, "ana", &json!({"i": i}), no_deadline())
            .await
            .unwrap();
    }
    let subscribe_only = r#"{"feed":["subscribe"]}"#;
    for frame in [
        json!({"action": "subscribe", "channel": "feed", "since": 0}),
        json!({"action": "subscribe", "channel": "feed", "rewind": 10}),
    ] {
        send(&rig, "phone", &frame, subscribe_only).await;
        let e = last(&rig, "phone");
        assert_eq!(
            (
                e["code"].as_str(),
                e["message"].as_str().map(|m| m.contains("history"))
            ),
            (Some("forbidden"), Some(true)),
            "{frame}"
        );
    }
    assert!(
        rig.ctx
            .store
            .subscribers("feed", None, 10)
            .await
            .unwrap()
            .0
            .is_empty(),
        "a refused subscribe subscribes nothing"
    );

    // More than one replay carries: 1,000 at most, then `more`, and the rest by paging.
    rig.server.clear();
    send(
        &rig,
        "phone",
        &json!({"action": "subscribe", "channel": "feed", "since": 100}),
        ALL,
    )
    .await;
    let got = frames(&rig.server, "phone");
    assert_eq!(got.len(), 2);
    let replayed: Vec<u64> = got[0]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["serial"].as_u64().unwrap())
        .collect();
    assert_eq!(replayed, (101..=1100).collect::<Vec<_>>());
    assert_eq!(
        (&got[0]["more"], &got[1]),
        (
            &json!(true),
            &json!({"type": "subscribed", "channel": "feed", "serial": 1500, "more": true})
        )
    );
    send(
        &rig,
        "phone",
        &json!({"action": "history", "channel": "feed", "since": 1100, "limit": 1000}),
        ALL,
    )
    .await;
    let rest = last(&rig, "phone");
    assert_eq!(rest["messages"].as_array().unwrap().len(), 400);
    assert_eq!(rest.get("more"), None);
    send(
        &rig,
        "phone",
        &json!({"action": "subscribe", "channel": "feed", "rewind": 1001}),
        ALL,
    )
    .await;
    assert_eq!(last(&rig, "phone")["code"], "bad_request");

    // Large messages: one answer never exceeds API Gateway's 128 KB; the rest is paged.
    for i in 0..5 {
        rig.ctx
            .store
            .append(
                "big",
                None,
                "ana",
                &json!({"i": i, "pad": "x".repeat(100 * 1024)}),
                no_deadline(),
            )
            .await
            .unwrap();
    }
    rig.server.clear();
    send(
        &rig,
        "phone",
        &json!({"action": "subscribe", "channel": "big", "since": 0}),
        ALL,
    )
    .await;
    let posts = rig.server.posts();
    assert!(
        posts.iter().all(|(_, body)| body.len() <= 128 * 1024),
        "{:?}",
        posts.iter().map(|(_, b)| b.len()).collect::<Vec<_>>()
    );
    let got = frames(&rig.server, "phone");
    assert_eq!(
        (
            got[0]["messages"].as_array().unwrap().len(),
            &got[1]["more"]
        ),
        (1, &json!(true))
    );
    let mut since = 1;
    let mut pages = 0;
    loop {
        send(
            &rig,
            "phone",
            &json!({"action": "history", "channel": "big", "since": since}),
            ALL,
        )
        .await;
        let page = last(&rig, "phone");
        since = page["messages"]
            .as_array()
            .unwrap()
            .last()
            .map_or(since, |m| m["serial"].as_u64().unwrap());
        pages += 1;
        if page.get("more").is_none() {
            break;
        }
    }
    assert_eq!(
        (since, pages),
        (5, 4),
        "paging with `since` reaches the end"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ids_belong_to_their_publisher() {
    let rig = rig(5000).await;
    for c in ["ana-1", "bob-1", "reader"] {
        rig.server.connect(c);
    }
    send(
        &rig,
        "reader",
        &json!({"action": "subscribe", "channel": "room"}),
        ALL,
    )
    .await;
    let publish = |id: &str| json!({"action": "publish", "channel": "room", "data": id, "id": id});
    send(&rig, "ana-1", &publish("m-1"), ALL).await;
    // bob (another `sub`) reuses ana's id: his message is his own, not a duplicate of hers.
    let bob = r#"{"*":["subscribe","publish"]}"#;
    let mut e = event(
        "$default",
        "MESSAGE",
        "bob-1",
        Some(&publish("m-1").to_string()),
        bob,
    );
    e.request_context
        .authorizer
        .fields
        .insert("user".into(), json!("bob"));
    handlers::message::handle(&rig.ctx, &e).await;
    rig.settle().await;
    assert_eq!(
        last(&rig, "bob-1"),
        json!({"type": "ack", "id": "m-1", "channel": "room", "serial": 2})
    );
    let from: Vec<Value> = of_type(&rig, "reader", "message")
        .iter()
        .map(|m| m["from"].clone())
        .collect();
    assert_eq!(from, vec![json!("ana"), json!("bob")]);
    // ana's own repeat is still a duplicate.
    send(&rig, "ana-1", &publish("m-1"), ALL).await;
    assert_eq!(last(&rig, "ana-1")["duplicate"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sizes_and_names_are_bounded() {
    let rig = rig(5000).await;
    rig.server.connect("c");
    let long_id = "i".repeat(3000);
    let cases = [
        (
            json!({"action": "publish", "channel": "room", "data": 1, "id": long_id}),
            "bad_request",
        ),
        (
            json!({"action": "publish", "channel": "room", "data": 1, "id": "a\u{202E}b"}),
            "bad_request",
        ),
        (
            json!({"action": "subscribe", "channel": "room\u{200B}"}),
            "bad_request",
        ),
        (
            json!({"action": "subscribe", "channel": "\u{202E}moor"}),
            "bad_request",
        ),
        (
            json!({"action": "subscribe", "channel": "é".repeat(129)}),
            "bad_request",
        ),
        (
            json!({"action": "history", "channel": "room", "limit": 5000}),
            "bad_request",
        ),
        (
            json!({"action": "ping", "id": "p".repeat(200)}),
            "bad_request",
        ),
        (
            json!({"action": "presence", "channel": "room", "after": ""}),
            "bad_request",
        ),
        (
            json!({"action": "presence", "channel": "room", "after": "a".repeat(2000)}),
            "bad_request",
        ),
    ];
    for (frame, code) in cases {
        rig.server.clear();
        send(&rig, "c", &frame, ALL).await;
        let got = last(&rig, "c");
        assert_eq!(got["code"], code, "{frame} → {got}");
    }
    assert_eq!(
        rig.ctx.store.latest_serial("room").await.unwrap(),
        0,
        "nothing stored"
    );
    // 128 characters of two bytes each is a valid name: the limit counts characters.
    send(
        &rig,
        "c",
        &json!({"action": "subscribe", "channel": "é".repeat(128)}),
        ALL,
    )
    .await;
    assert_eq!(last(&rig, "c")["type"], "subscribed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_members_list_is_paged_within_one_frame() {
    let rig = rig(5000).await;
    rig.server.connect("asker");
    let ids = rig.subscribers("hall", "m", 250).await;
    for id in &ids {
        rig.ctx
            .store
            .enter_presence("hall", id, "u", &json!({"bio": "x".repeat(1500)}))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut frames_seen = 0;
    loop {
        rig.server.clear();
        let mut q = json!({"action": "presence", "channel": "hall"});
        if let Some(a) = &after {
            q["after"] = json!(a);
        }
        send(&rig, "asker", &q, ALL).await;
        let (_, body) = rig.server.posts().pop().unwrap();
        assert!(
            body.len() <= 128 * 1024,
            "a members frame of {} bytes",
            body.len()
        );
        let frame: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(frame["type"], "members", "{frame}");
        let members = frame["members"].as_array().unwrap();
        assert!(members.len() <= 100);
        seen.extend(
            members
                .iter()
                .map(|m| m["connection"].as_str().unwrap().to_string()),
        );
        frames_seen += 1;
        match frame["next"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(
        seen, ids,
        "every member once, in order, over {frames_seen} frames"
    );
    assert!(frames_seen >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_hand_offs_deliver_once_and_a_failed_one_is_reported() {
    let rig = rig(10).await;
    // Past the page the message function posts itself, so the rest is handed on.
    let ids = rig.subscribers("wide", "w", publish::HERE + 45).await;
    for id in &ids {
        rig.server.connect(id);
    }
    rig.server.connect("sender");
    // Every hand-off reaches the publish function three times (a retried caller): 5 hops of
    // 10 would become up to 3^5 invocations, each posting its page again.
    rig.copies.store(3, Ordering::SeqCst);
    send(
        &rig,
        "sender",
        &json!({"action": "publish", "channel": "wide", "data": "once"}),
        ALL,
    )
    .await;
    rig.settle().await;
    let by_conn = rig.server.posts_by_connection();
    let counts: HashMap<usize, usize> = ids.iter().fold(HashMap::new(), |mut m, id| {
        *m.entry(by_conn.get(id).map_or(0, Vec::len)).or_default() += 1;
        m
    });
    assert_eq!(
        counts,
        HashMap::from([(1, ids.len())]),
        "deliveries per subscriber → subscribers"
    );

    // Lambda's own retry of one invocation (same request id) runs again; a second request
    // for the same hop does not.
    rig.copies.store(1, Ordering::SeqCst);
    rig.server.clear();
    let job = json!({"fanout": {"channel": "wide", "frame": "{\"type\":\"message\"}", "job": "j-1", "hop": 0}});
    for (request, delivered) in [("r-1", 10), ("r-1", 10), ("r-2", 0)] {
        let result = publish::handle(&rig.ctx, job.clone(), request)
            .await
            .unwrap();
        assert_eq!(result.report.delivered, delivered, "{request}");
    }

    // A hand-off that cannot be made is retried, then the publisher is told.
    rig.settle().await;
    rig.server.clear();
    rig.failing.store(true, Ordering::SeqCst);
    send(
        &rig,
        "sender",
        &json!({"action": "publish", "channel": "wide", "data": "lost?", "id": "p-9"}),
        ALL,
    )
    .await;
    let got = frames(&rig.server, "sender");
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        (got[0]["type"].as_str(), got[0]["serial"].as_u64()),
        (Some("ack"), Some(2))
    );
    assert_eq!(
        (
            got[1]["type"].as_str(),
            got[1]["code"].as_str(),
            got[1]["id"].as_str()
        ),
        (Some("error"), Some("internal"), Some("p-9"))
    );
    assert!(
        got[1]["message"].as_str().unwrap().contains("history"),
        "{}",
        got[1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enter_that_changes_nothing_is_not_announced_again() {
    let rig = rig(5000).await;
    for c in ["watcher", "megaphone"] {
        rig.server.connect(c);
    }
    send(
        &rig,
        "watcher",
        &json!({"action": "subscribe", "channel": "room"}),
        ALL,
    )
    .await;
    // A presence-only token repeating its enter: announced once, then only when the data
    // changes, and again after a leave.
    let presence_only = r#"{"room":["presence"]}"#;
    let enter = |bio: &str| json!({"action": "presence", "channel": "room", "enter": {"bio": bio}});
    for body in [
        enter("buy now"),
        enter("buy now"),
        enter("buy now"),
        enter("new"),
        enter("new"),
        json!({"action": "presence", "channel": "room", "leave": true}),
        enter("new"),
    ] {
        send(&rig, "megaphone", &body, presence_only).await;
        // Each fan-out done before the next frame: the order seen is the order sent.
        rig.settle().await;
    }
    let seen: Vec<(String, Value)> = of_type(&rig, "watcher", "presence")
        .into_iter()
        .map(|p| {
            (
                p["event"].as_str().unwrap().to_string(),
                p["member"]["data"]["bio"].clone(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("enter".to_string(), json!("buy now")),
            ("enter".to_string(), json!("new")),
            ("leave".to_string(), Value::Null),
            ("enter".to_string(), json!("new")),
        ]
    );
}

/// Handles numbered publishes of `connection` concurrently, as API Gateway may invoke them;
/// each one refused with `rate_limited` is sent again after its `retry_after_ms`, as a client
/// does (its successors are waiting for it meanwhile).
async fn publish_numbered(rig: &Rig, connection: &str, channel: &str, seqs: &[u64]) {
    let handles: Vec<_> = seqs
        .iter()
        .map(|&seq| {
            let (ctx, server) = (rig.ctx.clone(), rig.server.clone());
            let id = format!("n{seq}");
            let body =
                json!({"action": "publish", "channel": channel, "data": seq, "seq": seq, "id": id})
                    .to_string();
            let connection = connection.to_string();
            tokio::spawn(async move {
                for attempt in 1.. {
                    handlers::message::handle(
                        &ctx,
                        &event("$default", "MESSAGE", &connection, Some(&body), ALL),
                    )
                    .await;
                    let refusals: Vec<u64> = frames(&server, &connection)
                        .iter()
                        .filter(|f| f["code"] == "rate_limited" && f["id"] == id.as_str())
                        .map(|f| f["retry_after_ms"].as_u64().unwrap())
                        .collect();
                    if refusals.len() < attempt {
                        break;
                    }
                    let wait = refusals[attempt - 1];
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
}

async fn stored_data(rig: &Rig, channel: &str) -> Vec<u64> {
    rig.ctx
        .store
        .history(channel, Some(0), None, 1000, 1 << 20)
        .await
        .unwrap()
        .messages
        .iter()
        .map(|m| m.data.as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publishers_numbered_burst_is_stored_in_its_order() {
    let rig = rig(5000).await;
    rig.server.connect("fast");
    // 96 numbered publishes from one connection, as a client that keeps eight unacknowledged
    // sends them: each eight handled concurrently and started in a scrambled order.
    for window in (1..=96u64).collect::<Vec<_>>().chunks(8) {
        let mut order = window.to_vec();
        order.sort_by_key(|n| (n * 37) % 11);
        publish_numbered(&rig, "fast", "ordered", &order).await;
    }
    assert_eq!(
        stored_data(&rig, "ordered").await,
        (1..=96).collect::<Vec<_>>(),
        "serials follow the publisher's numbering"
    );
    let refused: Vec<Value> = of_type(&rig, "fast", "error")
        .into_iter()
        .filter(|e| e["code"] != "rate_limited")
        .collect();
    assert!(refused.is_empty(), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_numbered_publish_far_ahead_is_refused_at_once_and_takes_no_turn() {
    let rig = rig(5000).await;
    rig.server.connect("pinner");
    // With the rig's 30 s patience, a wait would show as an ack after 30 s.
    for seq in [1_000_000u64, 65] {
        send(
            &rig,
            "pinner",
            &json!({"action": "publish", "channel": "c", "data": seq, "seq": seq, "id": format!("far-{seq}")}),
            ALL,
        )
        .await;
        let answer = last(&rig, "pinner");
        assert_eq!(answer["code"], "bad_request", "{answer}");
        assert_eq!(answer["id"], format!("far-{seq}"), "{answer}");
        let text = answer["message"].as_str().unwrap();
        assert!(
            text.contains("more than 64 ahead") && text.contains("(0)"),
            "{text}"
        );
    }
    // The window moves with what is stored.
    publish_numbered(&rig, "pinner", "c", &[1]).await;
    send(
        &rig,
        "pinner",
        &json!({"action": "publish", "channel": "c", "data": 66, "seq": 66}),
        ALL,
    )
    .await;
    let answer = last(&rig, "pinner");
    assert_eq!(answer["code"], "bad_request", "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("(1)"),
        "{answer}"
    );
    assert_eq!(
        stored_data(&rig, "c").await,
        vec![1],
        "refusals store nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_publish_gives_up_at_its_own_deadline_whatever_the_connection_does() {
    let rig = rig(5000).await;
    rig.server.connect("stretcher");
    let mut ctx = rig.ctx.clone();
    ctx.seq_patience = Duration::from_secs(2);
    // Seq 5 waits for 4, which never comes; meanwhile the connection stores 1 and 2 within its
    // first second and 3 half a second after its patience. Counted from its arrival, 5's wait
    // ends between 2 and 3; counted from the connection's last progress (3 comes before that
    // has stood still for 2 s), it would end after 3.
    let waiting = {
        let ctx = ctx.clone();
        let body = json!({"action": "publish", "channel": "s", "data": 5, "seq": 5}).to_string();
        tokio::spawn(async move {
            handlers::message::handle(
                &ctx,
                &event("$default", "MESSAGE", "stretcher", Some(&body), ALL),
            )
            .await
        })
    };
    for seq in 1..=3u64 {
        tokio::time::sleep(Duration::from_millis([500, 500, 1500][seq as usize - 1])).await;
        let body = json!({"action": "publish", "channel": "s", "data": seq, "seq": seq});
        handlers::message::handle(
            &ctx,
            &event(
                "$default",
                "MESSAGE",
                "stretcher",
                Some(&body.to_string()),
                ALL,
            ),
        )
        .await;
    }
    waiting.await.unwrap();
    assert_eq!(stored_data(&rig, "s").await, vec![1, 2, 5, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_has_at_most_eight_publishes_waiting() {
    let rig = rig(5000).await;
    rig.server.connect("gappy");
    // Eleven publishes after a gap at 1, started one after another: eight wait (for the rig's
    // 30 s patience), the other three are refused at once and have no effect.
    let mut waiting = Vec::new();
    for seq in 2..=12u64 {
        let ctx = rig.ctx.clone();
        let body =
            json!({"action": "publish", "channel": "g", "data": seq, "seq": seq}).to_string();
        waiting.push(tokio::spawn(async move {
            handlers::message::handle(
                &ctx,
                &event("$default", "MESSAGE", "gappy", Some(&body), ALL),
            )
            .await
        }));
        // Each one reads the numbering and counts itself in before the next arrives.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let refused = of_type(&rig, "gappy", "error");
    assert_eq!(refused.len(), 3, "{refused:?}");
    for r in &refused {
        assert_eq!(r["code"], "rate_limited", "{r}");
        assert!(r["retry_after_ms"].as_u64().unwrap() > 0, "{r}");
    }
    publish_numbered(&rig, "gappy", "g", &[1]).await;
    for w in waiting {
        w.await.unwrap();
    }
    assert_eq!(stored_data(&rig, "g").await, (1..=9).collect::<Vec<_>>());
    // The three refused go through when sent again, in their turn.
    publish_numbered(&rig, "gappy", "g", &[10, 11, 12]).await;
    assert_eq!(stored_data(&rig, "g").await, (1..=12).collect::<Vec<_>>());
}

/// An identity provider on loopback: its discovery document and key set, which the test can
/// swap (a key rotation); counts the requests it serves.
struct Provider {
    url: String,
    jwks: std::sync::Arc<std::sync::Mutex<Value>>,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Provider {
    async fn start(jwks: Value) -> Provider {
        use http_body_util::Full;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (keys, requests) = (
            std::sync::Arc::new(std::sync::Mutex::new(jwks)),
            std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        );
        let (k, r, base) = (keys.clone(), requests.clone(), url.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (keys, requests, base) = (k.clone(), r.clone(), base.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            requests.fetch_add(1, Ordering::SeqCst);
                            let body = match req.uri().path() {
                                "/.well-known/openid-configuration" => {
                                    json!({"issuer": base, "jwks_uri": format!("{base}/keys")})
                                }
                                "/keys" => keys.lock().unwrap().clone(),
                                _ => Value::Null,
                            };
                            let status = if body.is_null() { 404 } else { 200 };
                            async move {
                                hyper::Response::builder()
                                    .status(status)
                                    .body(Full::new(bytes::Bytes::from(body.to_string())))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Provider {
            url,
            jwks: keys,
            requests,
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_keys_come_from_the_provider_and_follow_its_rotation() {
    use std::time::Duration;
    use wsctl_functions::auth::{OidcPolicy, SecretKeys};
    use wsctl_functions::handlers::authorizer::{
        self, Authorizer, Fetch, jwks_cache, secret_cache,
    };

    let keys: Value = serde_json::from_str(include_str!(
        "../../functions/common/testdata/oidc-test-keys.json"
    ))
    .unwrap();
    // The provider's key set is not up yet when the first token arrives.
    let provider = Provider::start(Value::Null).await;
    let policy = OidcPolicy {
        issuer: provider.url.clone(),
        audience: "chat-app".into(),
        capabilities_claim: Some("wsctl".into()),
        default_capabilities: serde_json::from_value(json!({"lobby": ["subscribe"]})).unwrap(),
        user_prefix: wsctl_functions::auth::default_user_prefix(&provider.url),
    };
    let fetch: Fetch<SecretKeys> = std::sync::Arc::new(|| {
        Box::pin(async { SecretKeys::new("0123456789abcdef0123456789abcdef") })
    });
    // Discovery, no configured URL; a short refetch interval so the test need not wait 30 s.
    let auth = Authorizer {
        secrets: secret_cache(fetch),
        audience: None,
        oidc: Some((
            policy,
            jwks_cache(
                provider.url.clone(),
                None,
                Duration::from_secs(3600),
                Duration::from_millis(300),
            ),
        )),
        revocations: None,
    };
    let sign = |kid: &str, pem: &str, extra: Value| {
        let mut claims = json!({"sub": "ana@idp", "exp": wsctl_functions::auth::now() + 600, "iss": provider.url, "aud": ["chat-app", "other"]});
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let old_pem = keys["rsa_private_pem"].as_str().unwrap();
    let new_pem = keys["rsa2_private_pem"].as_str().unwrap();
    let context = |token: String| {
        let auth = &auth;
        async move {
            let r = authorizer::handle(auth, &crate::functions::authorizer_event(Some(&token)))
                .await
                .expect("a policy");
            let v = serde_json::to_value(&r).unwrap();
            let effect = v["policyDocument"]["Statement"][0]["Effect"]
                .as_str()
                .unwrap()
                .to_string();
            (effect, v["context"].clone())
        }
    };

    // A failed fetch fails the handshake (a function error: API Gateway's 500, which clients
    // retry) rather than refusing the token, and is retried after the short interval, not
    // after the key set's hour-long lifetime.
    let failed = authorizer::handle(
        &auth,
        &crate::functions::authorizer_event(Some(&sign("rsa-1", old_pem, json!({})))),
    )
    .await;
    assert!(
        failed
            .as_ref()
            .is_err_and(|e| e.starts_with("keys unavailable")),
        "{failed:?}"
    );
    assert_eq!(provider.requests(), 2, "discovery, then the key set's 404");
    *provider.jwks.lock().unwrap() = keys["jwks"].clone();
    tokio::time::sleep(Duration::from_millis(400)).await;
    provider.requests.store(0, Ordering::SeqCst);

    // The first token fetches the discovery document and the key set; later ones use the cache.
    let (effect, ctx) = context(sign("rsa-1", old_pem, json!({}))).await;
    assert_eq!(
        (effect.as_str(), &ctx["user"]),
        (
            "Allow",
            &json!(format!(
                "{}|ana@idp",
                provider.url.trim_start_matches("http://")
            ))
        )
    );
    assert_eq!(
        ctx["cap"],
        json!(r#"{"lobby":["subscribe"]}"#),
        "no capabilities claim: the configured default"
    );
    let (effect, ctx) = context(sign(
        "rsa-1",
        old_pem,
        json!({"wsctl": ["room-*:subscribe,publish"]}),
    ))
    .await;
    assert_eq!(
        (effect.as_str(), &ctx["cap"]),
        ("Allow", &json!(r#"{"room-*":["subscribe","publish"]}"#))
    );
    assert_eq!(provider.requests(), 2, "discovery + keys, once");

    // The provider rotates to a new key and signs with it: one refetch, and it passes.
    *provider.jwks.lock().unwrap() = keys["rotated_jwks"].clone();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(context(sign("rsa-2", new_pem, json!({}))).await.0, "Allow");
    assert_eq!(provider.requests(), 4);
    // The retired key is gone from the set; a flood of unknown key ids costs at most one fetch.
    assert_eq!(context(sign("rsa-1", old_pem, json!({}))).await.0, "Deny");
    for i in 0..20 {
        assert_eq!(
            context(sign(&format!("forged-{i}"), old_pem, json!({})))
                .await
                .0,
            "Deny"
        );
    }
    assert!(provider.requests() <= 6, "{} requests", provider.requests());
    // Tokens without the configured audience or issuer are refused.
    assert_eq!(
        context(sign("rsa-2", new_pem, json!({"aud": "someone-else"})))
            .await
            .0,
        "Deny"
    );
    assert_eq!(
        context(sign(
            "rsa-2",
            new_pem,
            json!({"iss": "https://evil.example.com"})
        ))
        .await
        .0,
        "Deny"
    );
}

/// Globs as a test oracle, written apart from the library's: `*` is any run of characters.
fn glob(pattern: &[char], text: &[char]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some(('*', rest)) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        Some((c, rest)) => text
            .split_first()
            .is_some_and(|(t, tail)| t == c && glob(rest, tail)),
    }
}

/// A random grant × frame × channel, and whether the grant covers what the frame needs.
#[derive(Debug, Clone)]
struct Case {
    caps: std::collections::BTreeMap<String, Vec<String>>,
    frame: Value,
}

fn case_strategy() -> impl proptest::strategy::Strategy<Value = Case> {
    use proptest::prelude::*;
    let channel = prop_oneof![
        Just("room-1".to_string()),
        Just("room-2".to_string()),
        Just("lobby".to_string()),
        Just("admin".to_string()),
        Just("".to_string()),
        Just("a#b".to_string()),
        Just("room-\u{200B}1".to_string()),
        Just("\u{202E}1-moor".to_string()),
        Just("é".repeat(129)),
        proptest::collection::vec(any::<char>(), 0..12)
            .prop_map(|c| c.into_iter().collect::<String>()),
    ];
    let glob = prop_oneof![
        Just("*"),
        Just("room-*"),
        Just("room-1"),
        Just("lobby"),
        Just("a*"),
        Just("*-2"),
        Just("admin")
    ];
    let ops =
        proptest::sample::subsequence(vec!["subscribe", "publish", "presence", "history"], 0..=4);
    let caps = proptest::collection::btree_map(
        glob.prop_map(str::to_string),
        ops.prop_map(|o| o.into_iter().map(str::to_string).collect()),
        0..3,
    );
    // Mostly well-formed frames of each action (so the grant decides), some malformed ones.
    let frame = proptest::sample::select(vec![
        ("subscribe", json!({})),
        ("subscribe", json!({"since": 0})),
        ("subscribe", json!({"rewind": 5})),
        ("subscribe", json!({"rewind": 100000})),
        ("unsubscribe", json!({})),
        ("publish", json!({"data": {"t": "hi"}})),
        ("publish", json!({"data": 1, "id": "same-id"})),
        ("publish", json!({"data": 1, "id": "x".repeat(200)})),
        ("publish", json!({"data": 1, "seq": 1})),
        ("history", json!({})),
        ("history", json!({"since": 0})),
        ("history", json!({"limit": 3})),
        ("history", json!({"limit": 5000})),
        ("presence", json!({})),
        ("presence", json!({"enter": {"name": "n"}})),
        ("presence", json!({"enter": true})),
        ("presence", json!({"enter": {"bio": "x".repeat(3000)}})),
        ("presence", json!({"leave": true})),
        ("presence", json!({"after": "zzz"})),
        ("ping", json!({})),
        ("dance", json!({})),
        ("subscribe", json!({"data": 1})),
        ("publish", json!({"enter": true})),
    ]);
    (caps, frame, channel).prop_map(|(caps, (action, extra), channel)| {
        let mut frame = json!({"action": action, "channel": channel});
        if action == "ping" {
            frame = json!({"action": "ping"});
        }
        for (k, v) in extra.as_object().unwrap() {
            frame[k] = v.clone();
        }
        Case { caps, frame }
    })
}

impl Case {
    /// The grants this frame needs, read off the frame itself.
    fn needs(&self) -> Vec<&'static str> {
        let f = &self.frame;
        match f["action"].as_str().unwrap() {
            "subscribe" if f.get("since").is_some() || f.get("rewind").is_some() => {
                vec!["subscribe", "history"]
            }
            "subscribe" => vec!["subscribe"],
            "publish" => vec!["publish"],
            "history" => vec!["history"],
            "presence" => vec!["presence"],
            _ => vec![],
        }
    }

    fn granted(&self) -> bool {
        let channel: Vec<char> = self.frame["channel"]
            .as_str()
            .unwrap_or_default()
            .chars()
            .collect();
        self.needs().iter().all(|op| {
            self.caps.iter().any(|(g, ops)| {
                ops.iter().any(|o| o == op) && glob(&g.chars().collect::<Vec<_>>(), &channel)
            })
        })
    }
}

#[test]
fn no_frame_outside_its_grant_has_an_effect() {
    use proptest::test_runner::{Config, TestRunner};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let rig = runtime.block_on(rig(5000));
    // Every DynamoDB call of the handlers goes through a recording proxy; hand-offs are
    // recorded, not run.
    let proxy = wsctl_tests::proxy::Proxy::start(&rig.moto_url());
    let handed_off = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let mut ctx = rig.ctx.clone();
    ctx.store.db = aws_sdk_dynamodb::Client::new(&runtime.block_on(wsctl_tests::sdk(&proxy.url())));
    let sink = handed_off.clone();
    ctx.publish = wsctl_functions::Invoker::Local(std::sync::Arc::new(move |p| {
        sink.lock().unwrap().push(p);
        Ok(())
    }));
    for c in ["sender", "bystander"] {
        rig.server.connect(c);
    }
    runtime.block_on(send(
        &rig,
        "bystander",
        &json!({"action": "subscribe", "channel": "room-1"}),
        ALL,
    ));
    let cases = std::env::var("WSCTL_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let (refused, allowed) = (
        std::sync::atomic::AtomicUsize::new(0),
        std::sync::atomic::AtomicUsize::new(0),
    );
    runner
        .run(&case_strategy(), |case| {
            let cap = serde_json::to_string(&case.caps).unwrap();
            rig.server.clear();
            proxy.clear();
            handed_off.lock().unwrap().clear();
            let e = event(
                "$default",
                "MESSAGE",
                "sender",
                Some(&case.frame.to_string()),
                &cap,
            );
            runtime.block_on(handlers::message::handle(&ctx, &e));
            let posts = rig.server.posts();
            let answer: Value = posts
                .iter()
                .find(|(c, _)| c == "sender")
                .map(|(_, b)| serde_json::from_str(b).unwrap())
                .unwrap_or(Value::Null);
            proptest::prop_assert_ne!(
                &answer["code"],
                &json!("internal"),
                "{:?} → {}",
                case,
                answer
            );
            let parsed = wsctl_functions::protocol::parse(&case.frame.to_string()).is_ok();
            if parsed && case.granted() {
                allowed.fetch_add(1, Ordering::Relaxed);
                // Within its grant and well formed: answered, never refused.
                proptest::prop_assert_ne!(
                    &answer["type"],
                    &json!("error"),
                    "{:?} → {}",
                    case,
                    answer
                );
                return Ok(());
            }
            refused.fetch_add(1, Ordering::Relaxed);
            let code = answer["code"].as_str().unwrap_or_default();
            proptest::prop_assert!(
                ["forbidden", "bad_request", "too_large", "unknown_action"].contains(&code),
                "{:?} → {}",
                case,
                answer
            );
            proptest::prop_assert_eq!(
                posts.len(),
                1,
                "one answer to the sender and nothing to anyone else: {:?} → {:?}",
                case,
                posts
            );
            // Its only trace is the frame it cost the connection (every frame counts, refused
            // ones too): its budget read and written back, nothing else. (Whether the user's
            // tokens were revoked is read too, at most every 10 s: a read, not an effect.)
            let others: Vec<_> = proxy
                .requests()
                .into_iter()
                .filter(|r| !budget_of(r, "sender") && !revocation_of(r, "ana"))
                .map(|r| r.call)
                .collect();
            proptest::prop_assert!(
                others.is_empty(),
                "{:?} reached the store: {:?}",
                case,
                others
            );
            proptest::prop_assert!(
                handed_off.lock().unwrap().is_empty(),
                "{:?} was handed to the fan-out",
                case
            );
            Ok(())
        })
        .unwrap();
    let (refused, allowed) = (refused.into_inner(), allowed.into_inner());
    assert!(
        refused > cases as usize / 4 && allowed > cases as usize / 20,
        "both sides exercised: {refused} refused, {allowed} allowed"
    );

    // Over a limit, no frame has an effect either, whatever its grant and shape: a connection
    // whose budget is spent (one frame per 1,000 s) gets `rate_limited` for every frame, and
    // the store is read, never written. Past 50 refusals in 10 s the answer is `flooding` and
    // the connection is closed: that, and nothing else, is then done.
    let mut spent = ctx.clone();
    spent.limits.frames = wsctl_functions::limits::Rate::new(0.001, 1);
    rig.server.connect("spent");
    let spend = |case: &Case| {
        let cap = serde_json::to_string(&case.caps).unwrap();
        let e = event(
            "$default",
            "MESSAGE",
            "spent",
            Some(&case.frame.to_string()),
            &cap,
        );
        runtime.block_on(handlers::message::handle(&spent, &e));
    };
    spend(&Case {
        caps: Default::default(),
        frame: json!({"action": "ping"}),
    });
    let flooded = std::sync::atomic::AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config {
        cases: cases / 4,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&case_strategy(), |case| {
            rig.server.clear();
            rig.server.connect("spent");
            proxy.clear();
            handed_off.lock().unwrap().clear();
            let closed_before = rig.server.deleted().len();
            spend(&case);
            let posts = rig.server.posts();
            proptest::prop_assert_eq!(posts.len(), 1, "{:?} → {:?}", case, posts);
            let answer: Value = serde_json::from_str(&posts[0].1).unwrap();
            let closed = rig.server.deleted().len() - closed_before;
            match answer["code"].as_str() {
                Some("rate_limited") => proptest::prop_assert_eq!(closed, 0),
                Some("flooding") => proptest::prop_assert_eq!(closed, 1),
                _ => proptest::prop_assert!(false, "{:?} → {}", case, answer),
            }
            flooded.fetch_add(usize::from(closed > 0), Ordering::Relaxed);
            proptest::prop_assert!(answer["retry_after_ms"].as_u64().unwrap() > 0);
            let requests = proxy.requests();
            proptest::prop_assert!(
                requests
                    .iter()
                    .all(|r| budget_of(r, "spent") && r.call.operation == "GetItem"),
                "{:?} reached the store: {:?}",
                case,
                proxy.calls()
            );
            proptest::prop_assert!(handed_off.lock().unwrap().is_empty());
            Ok(())
        })
        .unwrap();
    if cases / 4 > 60 {
        assert!(
            flooded.into_inner() > 0,
            "a connection refused on and on is closed"
        );
    }
}

/// Whether a recorded DynamoDB call is about `connection`'s frame budget.
/// A read of whether `user`'s tokens were revoked.
fn revocation_of(r: &wsctl_tests::proxy::Recorded, user: &str) -> bool {
    let key = wsctl_functions::session::revocation_key(user);
    r.call.operation == "GetItem" && r.json()["Key"]["channel"]["S"] == key.as_str()
}

fn budget_of(r: &wsctl_tests::proxy::Recorded, connection: &str) -> bool {
    let key = wsctl_functions::limits::connection_key(connection);
    ["GetItem", "UpdateItem"].contains(&r.call.operation.as_str())
        && r.json()["Key"]["channel"]["S"] == key.as_str()
}

#[tokio::test]
async fn a_rotated_secret_reaches_a_warm_authorizer_and_the_old_key_retires() {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use wsctl_functions::auth::{Capabilities, Claims, SecretKeys, mint};
    use wsctl_functions::handlers::authorizer::{self, Authorizer, Fetch, KeyCache};

    let (v1, v2, v3) = (
        "1111111111111111111111111111111111111111",
        "2222222222222222222222222222222222222222",
        "3333333333333333333333333333333333333333",
    );
    // What SSM holds; `wsctl secret rotate` rewrites it.
    let stored = Arc::new(Mutex::new(v1.to_string()));
    let source = stored.clone();
    let fetch: Fetch<SecretKeys> = Arc::new(move || {
        let value = source.lock().unwrap().clone();
        Box::pin(async move { SecretKeys::parse(&value) })
    });
    let auth = Authorizer {
        secrets: KeyCache::new(fetch, Duration::from_secs(3600), Duration::from_millis(200)),
        audience: None,
        oidc: None,
        revocations: None,
    };
    let token = |key: &str| {
        mint(
            key.as_bytes(),
            &Claims::issue("ana", Capabilities::everything(), Duration::from_secs(600)),
        )
    };
    let effect = |token: String| {
        let auth = &auth;
        async move {
            let r = authorizer::handle(auth, &crate::functions::authorizer_event(Some(&token)))
                .await
                .unwrap();
            serde_json::to_value(&r).unwrap()["policyDocument"]["Statement"][0]["Effect"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let old = token(v1);
    assert_eq!(effect(old.clone()).await, "Allow");

    // Rotated with an hour's grace: the new key's first token makes the warm authorizer
    // re-read the secret; tokens of the old key keep passing.
    let rotated = SecretKeys::parse(v1)
        .unwrap()
        .rotate(v2, Duration::from_secs(3600))
        .unwrap();
    *stored.lock().unwrap() = rotated.clone();
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(effect(token(v2)).await, "Allow");
    assert_eq!(
        effect(old.clone()).await,
        "Allow",
        "within the grace period"
    );
    assert_eq!(auth.secrets.fetches().await, 2);

    // Rotated again without grace: once re-read, the first key is refused.
    *stored.lock().unwrap() = SecretKeys::parse(&rotated)
        .unwrap()
        .rotate(v3, Duration::ZERO)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(effect(token(v3)).await, "Allow");
    assert_eq!(effect(old).await, "Deny");
    assert_eq!(
        effect(token(v2)).await,
        "Deny",
        "a rotation without grace retires the key at once"
    );
    // A secret too short to be an HS256 key is never used: the authorizer fails the
    // handshake (500) rather than verify with it.
    *stored.lock().unwrap() = "short".into();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let failed = authorizer::handle(
        &auth,
        &crate::functions::authorizer_event(Some(&token("short"))),
    )
    .await;
    assert!(
        failed
            .as_ref()
            .is_err_and(|e| e.contains("HS256 needs at least 32")),
        "{failed:?}"
    );
}

/// A burst of cold authorizers over Parameter Store's 40 reads a second: each sends its read
/// again with jitter within its budget, so the burst is served as the quota allows, and a
/// read that still cannot be made is a function error (API Gateway's 500, which clients
/// retry), never a refused token.
#[tokio::test(flavor = "multi_thread")]
async fn a_cold_start_burst_over_ssms_quota_is_spread_and_never_refuses_a_good_token() {
    use std::sync::Arc;
    use std::time::Duration;
    use wsctl_functions::auth::{Capabilities, Claims, mint};
    use wsctl_functions::handlers::authorizer::{self, Authorizer, KeyCache, SECRET_READ_BUDGET};
    use wsctl_tests::aws::ssm::ParameterThroughput;

    const COLD: usize = 200;
    let moto = wsctl_tests::Moto::start();
    let throughput = Arc::new(ParameterThroughput::per_second(40));
    let proxy = wsctl_tests::proxy::Proxy::with(&moto.url(), vec![Box::new(throughput.clone())]);
    let key = "4444444444444444444444444444444444444444";
    let name = "/wsctl/burst/test/token-secret";
    aws_sdk_ssm::Client::new(&wsctl_tests::sdk(&moto.url()).await)
        .put_parameter()
        .name(name)
        .value(key)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();
    let through = wsctl_tests::sdk(&proxy.url()).await;
    let token = mint(
        key.as_bytes(),
        &Claims::issue("ana", Capabilities::everything(), Duration::from_secs(600)),
    );
    let event = crate::functions::authorizer_event(Some(&token));
    let started = std::time::Instant::now();
    let outcomes = futures::future::join_all((0..COLD).map(|_| {
        // Each one a new instance: its own empty cache.
        let auth = Authorizer {
            secrets: KeyCache::new(
                authorizer::secret_fetch(&through, name.to_string(), SECRET_READ_BUDGET),
                Duration::from_secs(60),
                Duration::from_secs(1),
            ),
            audience: None,
            oidc: None,
            revocations: None,
        };
        let event = event.clone();
        async move {
            match authorizer::handle(&auth, &event).await {
                Ok(r) => {
                    serde_json::to_value(&r).unwrap()["policyDocument"]["Statement"][0]["Effect"]
                        .as_str()
                        .unwrap()
                        .to_string()
                }
                Err(e) => e,
            }
        }
    }))
    .await;
    let allowed = outcomes.iter().filter(|o| *o == "Allow").count();
    let unavailable = outcomes
        .iter()
        .filter(|o| o.starts_with("keys unavailable"))
        .count();
    eprintln!(
        "{COLD} cold authorizers at 40 reads/s: {allowed} allowed, {unavailable} unavailable, {} reads served, {} throttled, in {:?}",
        throughput.served(),
        throughput.refused(),
        started.elapsed()
    );
    assert_eq!(
        allowed + unavailable,
        COLD,
        "a good token was refused: {:?}",
        outcomes
            .iter()
            .filter(|o| *o != "Allow" && !o.starts_with("keys unavailable"))
            .take(3)
            .collect::<Vec<_>>()
    );
    assert!(
        throughput.refused() > 0,
        "SSM never throttled: the test proves nothing"
    );
    // 40 at once and 40 a second for the 5 s budget: room for every one of the 200.
    assert!(
        allowed >= COLD * 9 / 10,
        "{allowed} of {COLD} allowed, {unavailable} unavailable, {} reads throttled, in {:?}",
        throughput.refused(),
        started.elapsed()
    );
}
