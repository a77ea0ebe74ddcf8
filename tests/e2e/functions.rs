//! The bundled functions' handlers against moto's DynamoDB and a local `@connections` server
//! that answers 410 for unknown ids. Events are shaped like API Gateway's WebSocket events and
//! go through the `aws_lambda_events` types.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use aws_sdk_dynamodb::types::*;
use serde_json::{Value, json};
use wsctl_functions::auth::SecretKeys;
use wsctl_functions::handlers::authorizer::{Authorizer, Fetch, secret_cache};
use wsctl_functions::handlers::{self, authorizer, publish};
use wsctl_functions::limits::{self, Limits, Rate};
use wsctl_functions::store::Store;
use wsctl_functions::{Invoker, Services, Settings, connections::Connections, layout};
use wsctl_tests::connections::ConnectionsServer;
use wsctl_tests::*;

pub(crate) struct Rig {
    _moto: Moto,
    pub(crate) server: ConnectionsServer,
    pub(crate) ctx: Services,
    inflight: Arc<AtomicUsize>,
    /// How many invocations each hand-off makes (1 = as Lambda; more = duplicated hand-offs).
    pub(crate) copies: Arc<AtomicUsize>,
    /// Every hand-off fails, as an unavailable Lambda would.
    pub(crate) failing: Arc<AtomicBool>,
}

fn key_schema(partition: &layout::Attr, sort: Option<&layout::Attr>) -> Vec<KeySchemaElement> {
    let key = |a: &layout::Attr, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(a.name)
            .key_type(t)
            .build()
            .unwrap()
    };
    let mut out = vec![key(partition, KeyType::Hash)];
    out.extend(sort.map(|a| key(a, KeyType::Range)));
    out
}

/// The layout's tables, named as themselves, created as `wsctl deploy` creates them (the
/// layout is what wsctl.yaml's tables are checked against).
async fn create_tables(db: &aws_sdk_dynamodb::Client) {
    for t in layout::TABLES {
        let mut attrs: Vec<layout::Attr> = vec![t.partition_key];
        attrs.extend(t.sort_key);
        for i in t.indexes {
            attrs.push(i.partition_key);
            attrs.extend(i.sort_key);
        }
        attrs.sort_by_key(|a| a.name);
        attrs.dedup();
        let mut create = db
            .create_table()
            .table_name(t.name)
            .billing_mode(BillingMode::PayPerRequest)
            .set_key_schema(Some(key_schema(&t.partition_key, t.sort_key.as_ref())))
            .set_attribute_definitions(Some(
                attrs
                    .iter()
                    .map(|a| {
                        AttributeDefinition::builder()
                            .attribute_name(a.name)
                            .attribute_type(ScalarAttributeType::from(a.kind.code()))
                            .build()
                            .unwrap()
                    })
                    .collect(),
            ));
        for i in t.indexes {
            create = create.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(i.name)
                    .set_key_schema(Some(key_schema(&i.partition_key, i.sort_key.as_ref())))
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build()
                    .unwrap(),
            );
        }
        create.send().await.unwrap();
    }
}

/// The layout's tables; the publish function invoked in-process.
pub(crate) async fn rig(per_invocation: usize) -> Rig {
    rig_with(per_invocation, layout::DEFAULT_TTL_ATTRIBUTE).await
}

/// As [`rig`], with every table's TTL on `ttl_attribute`; the settings are read from the
/// variables wsctl deploys, as the publish function reads them at cold start.
pub(crate) async fn rig_with(per_invocation: usize, ttl_attribute: &str) -> Rig {
    let moto = Moto::start();
    let server = ConnectionsServer::start().await;
    let sdk = sdk(&moto.url()).await;
    let db = aws_sdk_dynamodb::Client::new(&sdk);
    create_tables(&db).await;
    let mut vars: HashMap<String, String> = HashMap::new();
    for t in layout::TABLES {
        vars.insert(layout::table_env(t.name), t.name.into());
        vars.insert(layout::ttl_env(t.name), ttl_attribute.into());
    }
    vars.insert(
        layout::function_env(layout::PUBLISH_FUNCTION),
        "in-process".into(),
    );
    vars.insert(layout::CONNECTIONS_URL_ENV.into(), server.url());
    let settings = Settings::from_vars(layout::role(layout::PUBLISH_FUNCTION).unwrap(), |k| {
        vars.get(k).cloned()
    })
    .unwrap();
    let slot: Arc<OnceLock<Services>> = Arc::new(OnceLock::new());
    let inflight = Arc::new(AtomicUsize::new(0));
    let (copies, failing) = (
        Arc::new(AtomicUsize::new(1)),
        Arc::new(AtomicBool::new(false)),
    );
    let invoker = {
        let (slot, inflight, copies, failing) = (
            slot.clone(),
            inflight.clone(),
            copies.clone(),
            failing.clone(),
        );
        let requests = Arc::new(AtomicUsize::new(0));
        // As a function's reserved concurrency would: moto serves one call at a time, and a
        // thousand invocations at once would only queue on it until they time out.
        let gate = Arc::new(tokio::sync::Semaphore::new(16));
        Invoker::Local(Arc::new(move |payload: Value| {
            if failing.load(Ordering::SeqCst) {
                return Err("Lambda answered 503 ServiceException".into());
            }
            // Each asynchronous invocation is its own request; `copies` > 1 plays a caller
            // whose hand-off reached Lambda several times.
            // The copies run one after another: moto's conditional writes are not atomic
            // under concurrency (DynamoDB's are), and a retried hand-off reaches Lambda later
            // than the first anyway.
            let ctx = slot.get().expect("context set").clone();
            let inflight = inflight.clone();
            inflight.fetch_add(1, Ordering::SeqCst);
            let requests: Vec<String> = (0..copies.load(Ordering::SeqCst))
                .map(|_| format!("req-{}", requests.fetch_add(1, Ordering::SeqCst)))
                .collect();
            let gate = gate.clone();
            tokio::spawn(async move {
                let _turn = gate.acquire().await.expect("never closed");
                for request in requests {
                    let result = publish::handle(&ctx, payload.clone(), &request).await;
                    assert!(result.is_ok(), "{result:?}");
                }
                inflight.fetch_sub(1, Ordering::SeqCst);
            });
            Ok(())
        }))
    };
    let ctx = Services {
        store: Store {
            db,
            tables: settings.tables,
            history_ttl: Duration::from_secs(3600),
        },
        connections: Connections::new(&sdk, &server.url()),
        publish: invoker,
        fanout_per_invocation: per_invocation,
        fanout_concurrency: 32,
        fanout_rate: 10_000.0,
        fanout_burst: 5_000.0,
        fanout_invocation_rate: 2_500.0,
        // A loaded test machine can take longer than a publish on AWS between two numbered
        // publishes; the order, not the give-up time, is what these tests check.
        seq_patience: Duration::from_secs(30),
        // Out of the way of what these tests check; the limits' own tests set theirs.
        limits: unlimited(),
        tokens: None,
        revocations: Default::default(),
        floods: Default::default(),
        events: None,
    };
    let _ = slot.set(ctx.clone());
    Rig {
        _moto: moto,
        server,
        ctx,
        inflight,
        copies,
        failing,
    }
}

/// Limits no test reaches by accident.
pub(crate) fn unlimited() -> Limits {
    let high = Rate::new(1e9, 1_000_000_000);
    Limits {
        frames: high,
        publishes: high,
        publish_bytes: high,
        presence: high,
        connections_per_user: limits::MAX_CONNECTIONS_PER_USER,
        subscriptions_per_connection: limits::MAX_SUBSCRIPTIONS_PER_CONNECTION,
    }
}

impl Rig {
    pub(crate) fn moto_url(&self) -> String {
        self._moto.url()
    }

    /// The rig's store, its DynamoDB calls going through a proxy that plays `behaviour`.
    pub(crate) async fn store_behind(
        &self,
        behaviour: impl wsctl_tests::proxy::Behaviour + 'static,
    ) -> (wsctl_tests::proxy::Proxy, Store) {
        let proxy = wsctl_tests::proxy::Proxy::with(&self.moto_url(), vec![Box::new(behaviour)]);
        let mut store = self.ctx.store.clone();
        store.db = aws_sdk_dynamodb::Client::new(&wsctl_tests::sdk(&proxy.url()).await);
        (proxy, store)
    }

    /// Waits until no handed-off invocation is running.
    pub(crate) async fn settle(&self) {
        let mut quiet = 0;
        while quiet < 5 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            quiet = if self.inflight.load(Ordering::SeqCst) == 0 {
                quiet + 1
            } else {
                0
            };
        }
    }

    /// Stores `n` connections subscribed to `channel` (batched), ids `prefix-0..n`.
    pub(crate) async fn subscribers(&self, channel: &str, prefix: &str, n: usize) -> Vec<String> {
        let ids: Vec<String> = (0..n).map(|i| format!("{prefix}-{i:05}")).collect();
        for chunk in ids.chunks(25) {
            let item = |pairs: Vec<(&str, &str)>| {
                let mut put = PutRequest::builder();
                for (k, v) in pairs {
                    put = put.item(k, AttributeValue::S(v.into()));
                }
                WriteRequest::builder()
                    .put_request(put.build().unwrap())
                    .build()
            };
            let subs = chunk
                .iter()
                .map(|id| {
                    item(vec![
                        (layout::SUBSCRIPTIONS.partition_key.name, channel),
                        (layout::SUBSCRIPTIONS.sort_key_name(), id),
                        ("user", "u"),
                    ])
                })
                .collect();
            let conns = chunk
                .iter()
                .map(|id| {
                    item(vec![
                        (layout::CONNECTIONS.partition_key.name, id),
                        ("user", "u"),
                    ])
                })
                .collect();
            self.ctx
                .store
                .db
                .batch_write_item()
                .request_items("subscriptions", subs)
                .request_items("connections", conns)
                .send()
                .await
                .unwrap();
        }
        ids
    }
}

/// A WebSocket event as API Gateway sends it, with the authorizer's context flat in
/// `requestContext.authorizer`.
pub(crate) fn event(
    route: &str,
    kind: &str,
    connection: &str,
    body: Option<&str>,
    cap: &str,
) -> ApiGatewayWebsocketProxyRequest {
    serde_json::from_value(json!({
        "requestContext": {
            "routeKey": route, "eventType": kind, "messageDirection": "IN", "extendedRequestId": "LwE2HFMvoAMF2Ig=",
            "requestTime": "25/Nov/2026:20:00:00 +0000", "stage": "test", "connectedAt": 1795636800000i64,
            "requestTimeEpoch": 1795636800123i64, "identity": {"sourceIp": "127.0.0.1"}, "requestId": "LwE2HFMvoAMF2Ig=",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com", "connectionId": connection, "apiId": "abc123",
            "authorizer": {"principalId": "ana", "user": "ana", "cap": cap, "integrationLatency": 12}
        },
        "body": body, "isBase64Encoded": false
    }))
    .expect("API Gateway's WebSocket event shape deserializes")
}

pub(crate) const ALL: &str = r#"{"*":["subscribe","publish","presence","history"]}"#;

pub(crate) fn frames(server: &ConnectionsServer, connection: &str) -> Vec<Value> {
    server
        .posts()
        .into_iter()
        .filter(|(id, _)| id == connection)
        .map(|(_, b)| serde_json::from_str(&b).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_reaches_live_subscribers_and_removes_exactly_the_gone_ones() {
    let rig = rig(1000).await;
    let ids = rig.subscribers("big", "c", 2500).await;
    // 2,000 live; 500 gone (every fifth), which also hold a subscription elsewhere.
    let gone: HashSet<String> = ids.iter().step_by(5).cloned().collect();
    for id in ids.iter().filter(|i| !gone.contains(*i)) {
        rig.server.connect(id);
    }
    let bystanders = rig.subscribers("small", "b", 10).await;
    for id in &bystanders {
        rig.server.connect(id);
    }
    let gone_list: Vec<String> = gone.iter().take(3).cloned().collect();
    for id in &gone_list {
        rig.ctx.store.subscribe("small", id, "u").await.unwrap();
    }
    // One of them is also present in "small": its bystanders must see it leave.
    rig.ctx
        .store
        .enter_presence("small", &gone_list[0], "u", &json!({"name": "ghost"}))
        .await
        .unwrap();

    let first = publish::handle(&rig.ctx, json!({"channel": "big", "data": {"n": 1}}), "r1")
        .await
        .unwrap();
    assert_eq!(first.serial, Some(1));
    assert!(
        first.continued,
        "2,500 subscribers over a budget of 1,000 are split across invocations"
    );
    rig.settle().await;

    let by_conn = rig.server.posts_by_connection();
    let messages = rig
        .server
        .posts()
        .iter()
        .filter(|(_, b)| b.contains(r#""type":"message""#))
        .count();
    assert_eq!(messages, 2000, "exactly one message per live subscriber");
    for id in ids.iter().filter(|i| !gone.contains(*i)) {
        let got = &by_conn[id];
        assert_eq!(got.len(), 1, "{id}");
        let frame: Value = serde_json::from_str(&got[0]).unwrap();
        assert_eq!(
            (
                frame["type"].as_str(),
                frame["serial"].as_u64(),
                frame["data"]["n"].as_u64()
            ),
            (Some("message"), Some(1), Some(1))
        );
    }
    // The 500 gone ids are removed, with every subscription; nothing else is.
    let (remaining, _) = rig.ctx.store.subscribers("big", None, 5000).await.unwrap();
    assert_eq!(remaining.len(), 2000);
    assert!(remaining.iter().all(|s| !gone.contains(&s.connection)));
    for id in &gone_list {
        assert!(rig.ctx.store.get_connection(id).await.unwrap().is_none());
        assert!(rig.ctx.store.subscriptions_of(id).await.unwrap().is_empty());
    }
    let (small, _) = rig.ctx.store.subscribers("small", None, 100).await.unwrap();
    assert_eq!(small.len(), 10, "bystanders keep their subscriptions");
    // A gone subscriber never ran `$disconnect`; its leave is announced for it, once.
    for id in &bystanders {
        let leaves: Vec<Value> = frames(&rig.server, id)
            .into_iter()
            .filter(|f| f["type"] == "presence")
            .collect();
        assert_eq!(leaves.len(), 1, "{id}: {leaves:?}");
        assert_eq!(
            (
                &leaves[0]["event"],
                &leaves[0]["channel"],
                &leaves[0]["member"]["connection"],
                &leaves[0]["member"]["data"]["name"]
            ),
            (
                &json!("leave"),
                &json!("small"),
                &json!(gone_list[0]),
                &json!("ghost")
            )
        );
    }
    assert_eq!(
        rig.server.posts().len(),
        2000 + bystanders.len(),
        "nothing else was posted"
    );
    assert!(
        rig.ctx
            .store
            .get_connection(&ids[1])
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_that_fills_the_budget_exactly_takes_one_invocation() {
    let rig = rig(10).await;
    let ids = rig.subscribers("full", "f", 10).await;
    for id in &ids {
        rig.server.connect(id);
    }
    let once = publish::handle(&rig.ctx, json!({"channel": "full", "data": 1}), "r1")
        .await
        .unwrap();
    assert_eq!(once.report.delivered, 10);
    assert!(
        !once.continued,
        "nothing is left after the tenth subscriber"
    );

    // One more, and the eleventh is handed on.
    let more = rig.subscribers("full", "g", 1).await;
    rig.server.connect(&more[0]);
    let twice = publish::handle(&rig.ctx, json!({"channel": "full", "data": 2}), "r2")
        .await
        .unwrap();
    assert_eq!(twice.report.delivered, 10);
    assert!(twice.continued);
    rig.settle().await;
    for id in ids.iter().chain(&more) {
        let got: Vec<u64> = frames(&rig.server, id)
            .iter()
            .filter_map(|f| f["data"].as_u64())
            .collect();
        let want: &[u64] = if id == &more[0] { &[2] } else { &[1, 2] };
        assert_eq!(got, want, "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_client_id_gives_one_serial_and_one_delivery() {
    let rig = rig(5000).await;
    let ids = rig.subscribers("room", "s", 3).await;
    for id in &ids {
        rig.server.connect(id);
    }
    rig.server.connect("sender");
    let body = r#"{"action":"publish","channel":"room","data":"hi","id":"msg-1"}"#;
    for _ in 0..2 {
        handlers::message::handle(
            &rig.ctx,
            &event("$default", "MESSAGE", "sender", Some(body), ALL),
        )
        .await;
        rig.settle().await;
    }
    let acks = frames(&rig.server, "sender");
    assert_eq!(acks.len(), 2, "{acks:?}");
    assert_eq!(
        acks[0],
        json!({"type": "ack", "id": "msg-1", "channel": "room", "serial": 1})
    );
    assert_eq!(
        acks[1],
        json!({"type": "ack", "id": "msg-1", "channel": "room", "serial": 1, "duplicate": true})
    );
    for id in &ids {
        let got = frames(&rig.server, id);
        assert_eq!(got.len(), 1, "{id}: {got:?}");
        assert_eq!(
            (got[0]["serial"].as_u64(), got[0]["from"].as_str()),
            (Some(1), Some("ana"))
        );
    }
    // Through `wsctl publish`'s path too: the server is a publisher of its own, so its
    // `msg-1` is a new message, and its repeat a duplicate.
    let first = publish::handle(
        &rig.ctx,
        json!({"channel": "room", "data": "hi", "id": "msg-1"}),
        "r1",
    )
    .await
    .unwrap();
    assert_eq!(
        (first.serial, first.duplicate, first.report.delivered),
        (Some(2), false, 3)
    );
    let again = publish::handle(
        &rig.ctx,
        json!({"channel": "room", "data": "hi", "id": "msg-1"}),
        "r2",
    )
    .await
    .unwrap();
    assert_eq!(
        (again.serial, again.duplicate, again.report.delivered),
        (Some(2), true, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_channel_is_delivered_by_the_message_function_after_the_ack() {
    let rig = rig(5000).await;
    // The publish function cannot be invoked: a channel of one page does not need it, even
    // one that fills the page exactly.
    rig.failing.store(true, Ordering::SeqCst);
    let ids = rig.subscribers("small", "s", publish::HERE).await;
    let (live, gone) = ids.split_at(publish::HERE - 1);
    for id in live {
        rig.server.connect(id);
    }
    rig.server.connect("sender");
    let publish = |channel: &str, id: &str| {
        let body = json!({"action": "publish", "channel": channel, "data": id, "id": id});
        event(
            "$default",
            "MESSAGE",
            "sender",
            Some(&body.to_string()),
            ALL,
        )
    };
    handlers::message::handle(&rig.ctx, &publish("small", "m1")).await;
    // Everything was posted by the time the invocation ended: nothing was handed on.
    assert_eq!(
        frames(&rig.server, "sender"),
        vec![json!({"type": "ack", "id": "m1", "channel": "small", "serial": 1})]
    );
    for id in live {
        let got = frames(&rig.server, id);
        assert_eq!(got.len(), 1, "{id}: {got:?}");
        assert_eq!(
            (&got[0]["serial"], &got[0]["data"]),
            (&json!(1), &json!("m1"))
        );
    }
    // The last never answered: removed with its subscription, as the publish function would.
    assert!(
        rig.ctx
            .store
            .get_connection(&gone[0])
            .await
            .unwrap()
            .is_none()
    );
    let (left, _) = rig
        .ctx
        .store
        .subscribers("small", None, 1000)
        .await
        .unwrap();
    assert_eq!(left.len(), live.len());

    // A channel past one page: the page goes from here, the rest is handed on; when that
    // cannot be, the publisher hears it after its ack.
    let big = rig.subscribers("big", "b", publish::HERE + 50).await;
    for id in &big {
        rig.server.connect(id);
    }
    handlers::message::handle(&rig.ctx, &publish("big", "m2")).await;
    let answers = frames(&rig.server, "sender");
    assert_eq!(answers.len(), 3, "{answers:?}");
    assert_eq!(
        answers[1],
        json!({"type": "ack", "id": "m2", "channel": "big", "serial": 1})
    );
    assert_eq!(
        (
            &answers[2]["code"],
            &answers[2]["id"],
            &answers[2]["channel"]
        ),
        (&json!("internal"), &json!("m2"), &json!("big")),
        "{answers:?}"
    );
    let reached = |serial: u64| {
        big.iter()
            .filter(|id| {
                frames(&rig.server, id)
                    .iter()
                    .any(|f| f["serial"] == json!(serial))
            })
            .count()
    };
    assert_eq!(reached(1), publish::HERE, "the first page only");

    // With the publish function back, every subscriber of the large channel has the next one,
    // once.
    rig.failing.store(false, Ordering::SeqCst);
    handlers::message::handle(&rig.ctx, &publish("big", "m3")).await;
    rig.settle().await;
    for id in &big {
        let got = frames(&rig.server, id);
        let second = got.iter().filter(|f| f["serial"] == json!(2)).count();
        assert_eq!(second, 1, "{id}: {got:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubscribing_since_a_serial_replays_exactly_the_missed_messages() {
    let rig = rig(5000).await;
    rig.server.connect("phone");
    let sub = |since: Option<u64>| {
        let body = match since {
            Some(s) => json!({"action": "subscribe", "channel": "feed", "since": s}).to_string(),
            None => json!({"action": "subscribe", "channel": "feed"}).to_string(),
        };
        event("$default", "MESSAGE", "phone", Some(&body), ALL).body
    };
    for i in 0..5 {
        rig.ctx
            .store
            .append("feed", None, "ana", &json!(i), no_deadline())
            .await
            .unwrap();
    }
    let mut e = event("$default", "MESSAGE", "phone", None, ALL);
    e.body = sub(None);
    handlers::message::handle(&rig.ctx, &e).await;
    assert_eq!(
        frames(&rig.server, "phone"),
        vec![json!({"type": "subscribed", "channel": "feed", "serial": 5})]
    );

    // The phone drops; 1,000 messages are published while it is away.
    handlers::disconnect::handle(
        &rig.ctx,
        &event("$disconnect", "DISCONNECT", "phone", None, ALL),
        None,
    )
    .await
    .unwrap();
    rig.server.clear();
    let store = rig.ctx.store.clone();
    // One publisher at a time: moto's threaded server does not make UpdateItem ADD atomic
    // (DynamoDB does), so concurrent publishes here could share a serial.
    let mut published = Vec::new();
    for i in 0..1000 {
        published.push(
            store
                .append(
                    "feed",
                    Some(&format!("m{i}")),
                    "ana",
                    &json!({"i": i}),
                    no_deadline(),
                )
                .await
                .unwrap()
                .0
                .serial,
        );
    }
    assert_eq!(
        published.iter().copied().collect::<HashSet<_>>().len(),
        1000
    );

    let mut e = event("$default", "MESSAGE", "phone", None, ALL);
    e.body = sub(Some(5));
    handlers::message::handle(&rig.ctx, &e).await;
    let got = frames(&rig.server, "phone");
    assert_eq!(
        got.len(),
        2,
        "one `history` frame with the 1,000 missed messages, then `subscribed`: {:?}",
        got.iter().map(|f| &f["type"]).collect::<Vec<_>>()
    );
    let replay = got[0]["messages"].as_array().unwrap();
    let serials: Vec<u64> = replay
        .iter()
        .map(|f| f["serial"].as_u64().unwrap())
        .collect();
    assert_eq!(
        serials,
        (6..=1005).collect::<Vec<u64>>(),
        "exactly the missed ones, in order, none twice"
    );
    assert_eq!(
        (&got[0]["type"], &got[0]["channel"], got[0].get("more")),
        (&json!("history"), &json!("feed"), None)
    );
    assert_eq!(
        got[1],
        json!({"type": "subscribed", "channel": "feed", "serial": 1005})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_action_and_error_case() {
    let rig = rig(5000).await;
    for c in ["ana-1", "bob-1"] {
        rig.server.connect(c);
    }
    let send = |conn: &'static str, body: &str, cap: &str| {
        let e = event("$default", "MESSAGE", conn, Some(body), cap);
        let ctx = rig.ctx.clone();
        async move { handlers::message::handle(&ctx, &e).await }
    };
    let last = |conn: &str| frames(&rig.server, conn).last().cloned().unwrap();

    // ping, errors: not JSON, unknown action, missing field, oversized data, forbidden channel.
    send("ana-1", r#"{"action":"ping","id":7}"#, ALL).await;
    assert_eq!(last("ana-1"), json!({"type": "pong", "id": 7}));
    for (body, code) in [
        ("not json", "bad_json"),
        (r#"{"action":"dance"}"#, "unknown_action"),
        (r#"{"action":"publish","channel":"x"}"#, "bad_request"),
    ] {
        let r = send("ana-1", body, ALL).await;
        assert_eq!(r.status_code, 200, "the connection stays open");
        assert_eq!(last("ana-1")["code"], code, "{body}");
    }
    let big = json!({"action": "publish", "channel": "x", "data": "x".repeat(130_000)}).to_string();
    send("ana-1", &big, ALL).await;
    assert_eq!(last("ana-1")["code"], "too_large");
    let only_lobby = r#"{"lobby":["subscribe"]}"#;
    send(
        "bob-1",
        r#"{"action":"publish","channel":"secret","data":1,"id":"p1"}"#,
        only_lobby,
    )
    .await;
    let err = last("bob-1");
    assert_eq!(
        (
            err["code"].as_str(),
            err["channel"].as_str(),
            err["id"].as_str()
        ),
        (Some("forbidden"), Some("secret"), Some("p1"))
    );
    assert_eq!(
        rig.ctx.store.latest_serial("secret").await.unwrap(),
        0,
        "nothing half-written"
    );

    // presence: enter is seen by others, members lists it, leave on disconnect.
    send(
        "bob-1",
        r#"{"action":"subscribe","channel":"lobby"}"#,
        only_lobby,
    )
    .await;
    send(
        "ana-1",
        r#"{"action":"presence","channel":"lobby","enter":{"name":"Ana"}}"#,
        ALL,
    )
    .await;
    rig.settle().await;
    let seen = frames(&rig.server, "bob-1");
    assert!(seen.contains(&json!({"type": "presence", "channel": "lobby", "event": "enter", "member": {"user": "ana", "connection": "ana-1", "data": {"name": "Ana"}}})), "{seen:?}");
    send("ana-1", r#"{"action":"presence","channel":"lobby"}"#, ALL).await;
    assert_eq!(
        last("ana-1")["members"],
        json!([{"user": "ana", "connection": "ana-1", "data": {"name": "Ana"}}])
    );
    handlers::disconnect::handle(
        &rig.ctx,
        &event("$disconnect", "DISCONNECT", "ana-1", None, ALL),
        None,
    )
    .await
    .unwrap();
    rig.settle().await;
    assert_eq!(last("bob-1")["event"], "leave");

    // history and rewind.
    for i in 0..3 {
        send(
            "bob-1",
            &json!({"action": "publish", "channel": "lobby", "data": i}).to_string(),
            ALL,
        )
        .await;
    }
    rig.settle().await;
    send(
        "bob-1",
        r#"{"action":"history","channel":"lobby","since":1}"#,
        ALL,
    )
    .await;
    let h = last("bob-1");
    assert_eq!(h["type"], "history");
    assert_eq!(
        h["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["serial"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![2, 3]
    );
    send(
        "bob-1",
        r#"{"action":"history","channel":"lobby","limit":1}"#,
        ALL,
    )
    .await;
    assert_eq!(last("bob-1")["messages"][0]["serial"], 3);

    // unsubscribe stops delivery.
    send(
        "bob-1",
        r#"{"action":"unsubscribe","channel":"lobby"}"#,
        ALL,
    )
    .await;
    assert_eq!(
        last("bob-1"),
        json!({"type": "unsubscribed", "channel": "lobby"})
    );
    rig.server.clear();
    publish::handle(&rig.ctx, json!({"channel": "lobby", "data": "after"}), "r1")
        .await
        .unwrap();
    assert!(frames(&rig.server, "bob-1").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_stores_the_authorizer_identity() {
    let rig = rig(5000).await;
    handlers::connect::handle(&rig.ctx, &event("$connect", "CONNECT", "new-1", None, ALL))
        .await
        .unwrap();
    let c = rig
        .ctx
        .store
        .get_connection("new-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.user, "ana");
    assert!(
        c.capabilities
            .allows("anything", wsctl_functions::auth::Op::History)
    );
    assert_eq!(c.connected_at, 1795636800);
}

/// wsctl.yaml's `ttl_attribute` reaches the functions as `WSCTL_TTL_ATTRIBUTE_*`, and every
/// item they write that should expire carries its expiry there: DynamoDB's TTL reads that one
/// attribute ("Time to Live", DynamoDB Developer Guide: an item whose TTL attribute holds a
/// past epoch-seconds Number is deleted; an item without it never is).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_carry_their_expiry_in_the_configured_ttl_attribute() {
    let rig = rig_with(5000, "expires_at").await;
    let ctx = &rig.ctx;
    for c in ["ana-1", "bob-1"] {
        rig.server.connect(c);
        handlers::connect::handle(ctx, &event("$connect", "CONNECT", c, None, ALL))
            .await
            .unwrap();
    }
    let send = |connection: &'static str, frame: Value| async move {
        let body = frame.to_string();
        handlers::message::handle(
            ctx,
            &event("$default", "MESSAGE", connection, Some(&body), ALL),
        )
        .await
    };
    send("bob-1", json!({"action": "subscribe", "channel": "room"})).await;
    send(
        "bob-1",
        json!({"action": "presence", "channel": "lobby", "enter": {"n": 1}}),
    )
    .await;
    // A client id (the dedupe item), a `seq` (the order item), a fan-out (its claim).
    send(
        "ana-1",
        json!({"action": "publish", "channel": "room", "data": 1, "id": "m1", "seq": 1}),
    )
    .await;
    rig.settle().await;
    assert!(
        frames(&rig.server, "bob-1")
            .iter()
            .any(|f| f["type"] == "message"),
        "the publish was delivered: {:?}",
        frames(&rig.server, "bob-1")
    );

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut seen = 0;
    for t in layout::TABLES {
        let items = ctx
            .store
            .db
            .scan()
            .table_name(t.name)
            .send()
            .await
            .unwrap()
            .items
            .unwrap_or_default();
        assert!(!items.is_empty(), "{} has items", t.name);
        for item in items {
            // A channel's serial counter lives as long as the channel.
            if t.name == "counters"
                && item[layout::COUNTERS.partition_key.name].as_s().unwrap() == "room"
            {
                continue;
            }
            assert!(!item.contains_key("ttl"), "{}: {item:?}", t.name);
            let expires: u64 = item
                .get("expires_at")
                .and_then(|v| v.as_n().ok())
                .unwrap_or_else(|| panic!("{} item without `expires_at`: {item:?}", t.name))
                .parse()
                .unwrap();
            assert!(expires > now, "{}: {expires} is in the future", t.name);
            seen += 1;
        }
    }
    // At least 2 connections, the subscription and the presence entry, 1 message, and the id,
    // order and fan-out items: every one of them checked above.
    assert!(seen >= 8, "only {seen} items carry an expiry");
}

/// A pub/sub function started without a variable its role needs stops at cold start, with one
/// line naming the variable and the wsctl.yaml setting that sets it (Lambda fails the init of
/// a runtime that exits before asking for its first event, `Runtime.ExitError`, and keeps its
/// output in the log), instead of failing each event later with an AWS error about an empty
/// table name.
#[test]
fn a_function_started_without_a_variable_it_needs_names_it_and_stops() {
    let bin = wsctl_bin().with_file_name("wsctl-pubsub");
    let mut cmd = std::process::Command::new(&bin);
    cmd.env_clear()
        .env("_HANDLER", "message")
        // Nothing answers there: a runtime that got past its checks would fail differently.
        .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
        .env("AWS_LAMBDA_FUNCTION_NAME", "chat-dev-message")
        .env("AWS_REGION", "us-east-1")
        .env(
            layout::function_env(layout::PUBLISH_FUNCTION),
            "chat-dev-publish",
        )
        .env(layout::CONNECTIONS_URL_ENV, "http://127.0.0.1:9/dev");
    for t in layout::TABLES.iter().filter(|t| t.name != "counters") {
        cmd.env(layout::table_env(t.name), format!("chat-dev-{}", t.name))
            .env(layout::ttl_env(t.name), "ttl");
    }
    let out = cmd.output().expect("run the pub/sub binary");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("WSCTL_TABLE_COUNTERS is not set") && err.contains("counters: read-write"),
        "{err}"
    );
}

/// A `$connect` REQUEST authorizer event as API Gateway sends it for a WebSocket API.
pub(crate) fn authorizer_event(
    token: Option<&str>,
) -> aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest {
    let query = match token {
        Some(t) => json!({"token": t}),
        None => json!({}),
    };
    let multi = match token {
        Some(t) => json!({"token": [t]}),
        None => json!({}),
    };
    serde_json::from_value(json!({
        "type": "REQUEST",
        "methodArn": "arn:aws:execute-api:us-east-1:123456789012:abc123/test/$connect",
        "headers": {"Host": "abc123.execute-api.us-east-1.amazonaws.com", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"},
        "multiValueHeaders": {"Host": ["abc123.execute-api.us-east-1.amazonaws.com"]},
        "queryStringParameters": query, "multiValueQueryStringParameters": multi, "stageVariables": {},
        "requestContext": {
            "routeKey": "$connect", "eventType": "CONNECT", "extendedRequestId": "Lx0Hj", "requestTime": "25/Nov/2026:20:00:00 +0000",
            "messageDirection": "IN", "stage": "test", "connectedAt": 1795636800000i64, "requestTimeEpoch": 1795636800000i64,
            "identity": {"sourceIp": "127.0.0.1"}, "requestId": "Lx0Hj", "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "connectionId": "Lx0HjcKGIAMCJ-w=", "apiId": "abc123"
        }
    }))
    .expect("API Gateway's authorizer event shape deserializes")
}

/// An authorizer whose secret is `secret` (as SSM would hand it over).
pub fn authorizer_with(secret: &'static [u8], audience: Option<&str>) -> Authorizer {
    let fetch: Fetch<SecretKeys> =
        Arc::new(move || Box::pin(async move { SecretKeys::new(secret) }));
    Authorizer {
        secrets: secret_cache(fetch),
        audience: audience.map(str::to_string),
        oidc: None,
        revocations: None,
    }
}

#[tokio::test]
async fn the_authorizer_allows_valid_tokens_only() {
    use wsctl_functions::auth::{Audience, Claims, mint, now};
    let secret = b"0123456789abcdef0123456789abcdef";
    let authorizer = authorizer_with(secret, Some("chat"));
    let claims = |exp: i64, aud: Option<&str>| Claims {
        sub: "ana".into(),
        exp: (now() as i64 + exp) as u64,
        nbf: None,
        iat: Some(now()),
        iss: None,
        aud: aud.map(|a| Audience::One(a.into())),
        cap: serde_json::from_str(r#"{"room-*":["subscribe","publish"]}"#).unwrap(),
    };
    let effect = |token: String| {
        let authorizer = &authorizer;
        async move {
            let r = authorizer::handle(authorizer, &authorizer_event(Some(&token)))
                .await
                .expect("a policy, not a 401");
            let v = serde_json::to_value(&r).unwrap();
            (
                v["policyDocument"]["Statement"][0]["Effect"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                v,
            )
        }
    };

    let (allow, response) = effect(mint(secret, &claims(600, Some("chat")))).await;
    assert_eq!(allow, "Allow");
    assert_eq!(
        response["policyDocument"]["Statement"][0]["Resource"],
        json!(["arn:aws:execute-api:us-east-1:123456789012:abc123/test/$connect"])
    );
    assert_eq!(response["context"]["user"], "ana");
    let cap: Value = serde_json::from_str(response["context"]["cap"].as_str().unwrap()).unwrap();
    assert_eq!(cap, json!({"room-*": ["subscribe", "publish"]}));

    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    };
    let unsigned = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&serde_json::to_string(&claims(600, Some("chat"))).unwrap())
    );
    for (case, token) in [
        (
            "forged",
            mint(
                b"not-the-secret-not-the-secret-00",
                &claims(600, Some("chat")),
            ),
        ),
        ("expired", mint(secret, &claims(-3600, Some("chat")))),
        ("alg none", unsigned),
        ("wrong audience", mint(secret, &claims(600, Some("other")))),
        ("no audience", mint(secret, &claims(600, None))),
        ("malformed", "abc.def.ghi".to_string()),
    ] {
        assert_eq!(effect(token).await.0, "Deny", "{case}");
    }
    assert_eq!(
        authorizer::handle(&authorizer, &authorizer_event(None))
            .await
            .unwrap_err(),
        "Unauthorized",
        "no token → 401"
    );
}

/// Takes one from a count of times left, if any is.
fn take_one(left: &AtomicUsize) -> bool {
    left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// Answers the next `left` `TransactWriteItems` as DynamoDB does when a transaction's item is
/// over its partition's or table's throughput: `TransactionCanceledException` with the
/// cancellation reason `ThrottlingError` ("TransactWriteItems", DynamoDB API Reference).
struct ThrottleTransactions {
    left: AtomicUsize,
}

impl wsctl_tests::proxy::Behaviour for ThrottleTransactions {
    fn answer(
        &self,
        call: &wsctl_tests::proxy::Call,
        _req: &wsctl_tests::proxy::Exchange,
    ) -> Option<wsctl_tests::proxy::Reply> {
        if call.operation != "TransactWriteItems" || !take_one(&self.left) {
            return None;
        }
        let kind = "com.amazonaws.dynamodb.v20120810#TransactionCanceledException";
        let mut reply = wsctl_tests::proxy::Reply::json(
            400,
            &json!({
                "__type": kind,
                "Message": "Transaction cancelled, please refer cancellation reasons for specific reasons [ThrottlingError]",
                "CancellationReasons": [{"Code": "ThrottlingError", "Message": "Throughput exceeds the current capacity for your table or index."}]
            }),
        );
        reply.headers = vec![
            ("x-amzn-errortype".into(), kind.into()),
            ("content-type".into(), "application/x-amz-json-1.0".into()),
        ];
        Some(reply)
    }
}

/// A throttled history write is transient for the store: the publish waits and stores its
/// message, so the serial it took is not lost and the next publish takes the next one.
#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_history_write_loses_no_serial() {
    let rig = rig(5000).await;
    let throttle = Arc::new(ThrottleTransactions {
        left: AtomicUsize::new(4),
    });
    let (_proxy, store) = rig.store_behind(throttle.clone()).await;
    let (first, _) = store
        .append("throttled", Some("a"), "ana", &json!(1), no_deadline())
        .await
        .expect("a throttled write is written once the throttle passes");
    assert_eq!(throttle.left.load(Ordering::SeqCst), 0, "it was throttled");
    let (second, _) = store
        .append("throttled", None, "ana", &json!(2), no_deadline())
        .await
        .expect("append");
    assert_eq!((first.serial, second.serial), (1, 2));
    let page = store
        .history(
            "throttled",
            Some(0),
            None,
            100,
            wsctl_functions::protocol::MAX_FRAME_BYTES,
        )
        .await
        .expect("history");
    let serials: Vec<u64> = page.messages.iter().map(|m| m.serial).collect();
    assert_eq!(serials, [1, 2], "no gap");
}

/// A publish against a key DynamoDB keeps throttling gives up by its deadline: every attempt
/// is one request the store schedules (the SDK's own retries would back off unseen), and none
/// starts after the deadline, so the message function answers in time rather than being cut
/// off by its timeout with the frame unanswered.
#[tokio::test(flavor = "multi_thread")]
async fn a_hot_keys_write_is_given_up_at_its_deadline_not_after() {
    let rig = rig(5000).await;
    let throttle = Arc::new(ThrottleTransactions {
        left: AtomicUsize::new(usize::MAX),
    });
    let (proxy, store) = rig.store_behind(throttle.clone()).await;
    let transactions = || {
        proxy
            .calls()
            .iter()
            .filter(|c| c.operation == "TransactWriteItems")
            .count()
    };
    // Out of time already: one attempt, no retry.
    let e = store
        .append(
            "hot",
            Some("a"),
            "ana",
            &json!(1),
            tokio::time::Instant::now(),
        )
        .await
        .expect_err("throttled");
    assert!(e.throttled, "{e}");
    assert_eq!(transactions(), 1, "no retry starts after the deadline");
    // With time to spare, the store's own attempts and no more.
    proxy.clear();
    let e = store
        .append("hot", Some("b"), "ana", &json!(2), no_deadline())
        .await
        .expect_err("throttled");
    assert!(e.throttled, "{e}");
    assert_eq!(
        transactions(),
        11,
        "the first attempt and ten retries, each one request"
    );
    // The serials the refused publishes took are gaps; the next message takes the next one.
    let throttled = throttle.left.swap(0, Ordering::SeqCst);
    assert!(throttled > 0);
    let (next, duplicate) = store
        .append("hot", Some("a"), "ana", &json!(1), no_deadline())
        .await
        .expect("the key cooled down");
    assert_eq!(
        (next.serial, duplicate),
        (3, false),
        "refused ids are not taken"
    );
}

/// Answers a committed TransactWriteItems with a 500, as a connection lost after the commit
/// looks to the caller.
struct LoseCommittedAnswers {
    left: AtomicUsize,
}

impl wsctl_tests::proxy::Behaviour for LoseCommittedAnswers {
    fn rewrite(
        &self,
        call: &wsctl_tests::proxy::Call,
        _req: &wsctl_tests::proxy::Exchange,
        reply: &mut wsctl_tests::proxy::Reply,
    ) {
        if call.operation == "TransactWriteItems" && reply.status == 200 && take_one(&self.left) {
            *reply = wsctl_tests::proxy::Reply::error(
                500,
                "InternalServerError",
                "Internal server error",
            );
        }
    }
}

/// A message whose write committed but whose answer was lost is retried, found to be its own
/// (its id holds this publish's serial) and stored once: new, so it is delivered, not taken
/// for a duplicate of itself and dropped.
#[tokio::test(flavor = "multi_thread")]
async fn a_write_whose_answer_was_lost_is_stored_once_and_counts_as_new() {
    let rig = rig(5000).await;
    let lose = Arc::new(LoseCommittedAnswers {
        left: AtomicUsize::new(1),
    });
    let (_proxy, store) = rig.store_behind(lose.clone()).await;
    let data = json!({"text": "hi"});
    let publish = || store.append("lost", Some("m1"), "ana", &data, no_deadline());
    let (message, duplicate) = publish().await.expect("stored");
    assert_eq!(lose.left.load(Ordering::SeqCst), 0, "an answer was lost");
    assert_eq!((message.serial, duplicate), (1, false));
    let (again, duplicate) = publish().await.expect("the same id again");
    assert_eq!((again.serial, duplicate), (1, true), "a real repeat is one");
    let page = store
        .history(
            "lost",
            Some(0),
            None,
            100,
            wsctl_functions::protocol::MAX_FRAME_BYTES,
        )
        .await
        .expect("history");
    assert_eq!(page.messages.len(), 1, "stored once");
}

/// Stores `holder` subscribed and present in `channels`, with `watcher` subscribed to each.
async fn hold(rig: &Rig, holder: &str, watcher: &str, channels: &[String]) {
    let item = |pairs: Vec<(&str, AttributeValue)>| {
        let mut put = PutRequest::builder();
        for (k, v) in pairs {
            put = put.item(k, v);
        }
        WriteRequest::builder()
            .put_request(put.build().unwrap())
            .build()
    };
    let (ch, conn) = (
        layout::SUBSCRIPTIONS.partition_key.name,
        layout::SUBSCRIPTIONS.sort_key_name(),
    );
    let s = |v: &str| AttributeValue::S(v.into());
    let mut items = Vec::new();
    for c in channels {
        items.push(item(vec![(ch, s(c)), (conn, s(holder)), ("user", s("u"))]));
        items.push(item(vec![(ch, s(c)), (conn, s(watcher)), ("user", s("w"))]));
        items.push(item(vec![
            (ch, s(&wsctl_functions::store::presence_partition(c))),
            (conn, s(holder)),
            ("user", s("u")),
            ("present", AttributeValue::Bool(true)),
            ("listening", AttributeValue::Bool(false)),
            ("member", s(r#"{"name":"hoarder"}"#)),
        ]));
    }
    for chunk in items.chunks(25) {
        rig.ctx
            .store
            .db
            .batch_write_item()
            .request_items("subscriptions", chunk.to_vec())
            .send()
            .await
            .unwrap();
    }
    for id in [holder, watcher] {
        rig.ctx
            .store
            .db
            .put_item()
            .table_name("connections")
            .item(layout::CONNECTIONS.partition_key.name, s(id))
            .item("user", s("u"))
            .send()
            .await
            .unwrap();
    }
}

/// The presence leaves `watcher` got from `holder`, by channel.
fn leaves(rig: &Rig, watcher: &str, holder: &str) -> Vec<String> {
    let mut out: Vec<String> = frames(&rig.server, watcher)
        .into_iter()
        .filter(|f| f["event"] == "leave" && f["member"]["connection"] == holder)
        .map(|f| f["channel"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

/// A connection holding the most channels a stage allows (1,000, subscribed and present in
/// each) disconnects: every item goes and every leave is announced once. One whose `$disconnect`
/// has no time left announces nothing and keeps its member items and its connection item, so
/// that the next `wsctl gc` finds it, announces the leaves and finishes: nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_holding_the_most_channels_finishes_or_leaves_the_rest_to_gc() {
    let rig = rig(1000).await;
    let max = limits::MAX_SUBSCRIPTIONS_PER_CONNECTION as usize;
    let channels: Vec<String> = (0..max).map(|i| format!("room-{i:04}")).collect();
    hold(&rig, "hoarder", "watcher", &channels).await;
    rig.server.connect("watcher");

    let started = std::time::Instant::now();
    handlers::disconnect::handle(
        &rig.ctx,
        &event("$disconnect", "DISCONNECT", "hoarder", None, ALL),
        None,
    )
    .await
    .unwrap();
    eprintln!(
        "$disconnect of {max} channels (subscribed and present) took {:?} against moto",
        started.elapsed()
    );
    rig.settle().await;
    assert_eq!(leaves(&rig, "watcher", "hoarder"), channels);
    let store = &rig.ctx.store;
    assert!(store.subscriptions_of("hoarder").await.unwrap().is_empty());
    assert!(store.get_connection("hoarder").await.unwrap().is_none());

    let few = &channels[..50];
    hold(&rig, "late", "watcher", few).await;
    rig.server.clear();
    handlers::disconnect::handle(
        &rig.ctx,
        &event("$disconnect", "DISCONNECT", "late", None, ALL),
        Some(tokio::time::Instant::now()),
    )
    .await
    .unwrap();
    rig.settle().await;
    assert!(leaves(&rig, "watcher", "late").is_empty());
    assert!(
        store.get_connection("late").await.unwrap().is_some(),
        "gc finds it by this item"
    );
    let held = store.subscriptions_of("late").await.unwrap();
    assert_eq!(held.len(), 50);
    assert!(
        held.iter().all(|(_, h)| h.present && !h.listening),
        "only its presence is left"
    );

    // What `wsctl gc` does for a stale id.
    let present = store.remove_connection("late").await.unwrap();
    for (channel, frame) in wsctl_functions::fanout::leave_frames("late", present) {
        publish::hand_off(&rig.ctx, &channel, &frame, None, None)
            .await
            .unwrap();
    }
    rig.settle().await;
    assert_eq!(leaves(&rig, "watcher", "late"), few);
    assert!(store.subscriptions_of("late").await.unwrap().is_empty());
    assert!(store.get_connection("late").await.unwrap().is_none());
}
