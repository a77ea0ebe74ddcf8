//! README's run command (`wsctl dev` on the repository's own wsctl.yaml), and its demo page in
//! headless Chromium, driven over the DevTools protocol: join, send, see the message come back
//! through the channel.

use std::time::Duration;

use serde_json::{Value, json};
use wsctl_tests::dev::{Client, Dev, http, http_get};
use wsctl_tests::root;

use crate::browser::chromium;

/// What the demo page shows when a wait fails.
const SHOWN: &str = "document.getElementById('status').textContent + ' / ' + document.getElementById('messages').innerText";

#[tokio::test(flavor = "multi_thread")]
async fn readme_run_command_and_demo_page_in_chromium() {
    // README's run command is `wsctl dev` in the repository: the root wsctl.yaml.
    let dev = Dev::start(&root().join("wsctl.yaml"), &[]);
    let mut client = wsctl_tests::dev::Client::connect(&dev.field("connect_url"))
        .await
        .expect("the printed URL and token connect");
    client.send(json!({"action": "ping", "id": 1})).await;
    client
        .expect("pong", |v| v["type"] == "pong", Duration::from_secs(10))
        .await;

    let page_url = dev.field("page");
    assert!(http_get(&page_url).await.contains("wsctl dev"));
    // Tokens of 8 s: the page must renew its token (an `auth` frame) to stay connected.
    let browser = chromium(&format!("{page_url}?ttl=8"));
    let mut page = browser.page().await;

    page.wait_for(
        "the join form",
        "document.readyState === 'complete' && !!document.getElementById('join')",
        SHOWN,
    )
    .await;
    page.eval("document.getElementById('user').value = 'chromium'; document.getElementById('channel').value = 'demo'; document.getElementById('joinButton').click(); true").await;
    page.wait_for(
        "the connection",
        "document.getElementById('status').textContent === 'connected'",
        SHOWN,
    )
    .await;
    page.wait_for(
        "its own presence",
        "document.getElementById('members').innerText.includes('chromium')",
        SHOWN,
    )
    .await;
    page.eval("document.getElementById('text').value = 'hello from chromium'; document.getElementById('sendButton').click(); true").await;
    let shown = page
        .wait_for("the echoed message", "[...document.querySelectorAll('#messages li.message')].map(l => l.innerText).find(t => t.includes('hello from chromium')) || null", SHOWN)
        .await;
    assert!(
        shown.as_str().unwrap().contains("chromium"),
        "shown as sent by its user: {shown}"
    );
    // The book's picture of the page: joined, a message shown with its serial, who is here.
    page.screenshot("demo.png").await;

    // Out of order: fan-outs run in parallel, so serial N+2 can arrive before N+1. Here N+1
    // is stored but its delivery has not happened, and N+2 (twice) reaches the page first: it
    // must fetch N+1 with `history since` and show N+1 then N+2, once each.
    let n = page
        .eval("Number([...document.querySelectorAll('#messages li.message')].pop().dataset.serial)")
        .await
        .as_u64()
        .expect("a serial");
    store_unsent(&dev, "demo", n + 1, "second").await;
    let page_id = page_connection(&dev, &mut client).await;
    let third = json!({"type": "message", "channel": "demo", "serial": n + 2, "id": "late-3", "from": "server", "data": {"text": "third"}, "ts": 1});
    for _ in 0..2 {
        let (status, body) = http(
            &format!("{}/{page_id}", dev.field("connections_url")),
            "POST",
            third.to_string().as_bytes(),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    page.wait_for(
        "the fetched gap",
        "document.getElementById('messages').innerText.includes('second')",
        SHOWN,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let texts = page.eval("[...document.querySelectorAll('#messages li.message')].map(l => l.dataset.serial + ' ' + l.lastChild.textContent)").await;
    let texts: Vec<String> = texts
        .as_array()
        .expect("list")
        .iter()
        .map(|t| t.as_str().unwrap_or_default().to_string())
        .collect();
    let tail: Vec<&str> = texts
        .iter()
        .rev()
        .take(2)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        vec![format!("{} second", n + 1), format!("{} third", n + 2)],
        "in serial order, once each: {texts:?}"
    );

    // The page renewed its token before each expiry and never lost its connection.
    page.wait_for(
        "a token renewal",
        "document.querySelector('#messages li.renewed') !== null",
        SHOWN,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(9)).await;
    // The channel's next serial is the one "third" was posted under without being stored: the
    // page takes that publish for a repeat. The one after it is new.
    for text in ["filler", "after the first token"] {
        page.eval(&format!("document.getElementById('text').value = '{text}'; document.getElementById('sendButton').click(); true")).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    page.wait_for(
        "a message sent after the first token's expiry",
        "[...document.querySelectorAll('#messages li.message')].some(l => l.innerText.includes('after the first token'))",
        SHOWN,
    )
    .await;
    let log = page
        .eval("document.getElementById('messages').innerText")
        .await;
    let log = log.as_str().unwrap_or_default();
    assert!(
        !log.contains("connection lost") && !log.contains("token_expired"),
        "the connection outlived its first token: {log}"
    );
    assert!(log.matches("token renewed").count() >= 2, "{log}");
}

/// Stores `text` as `channel`'s message `serial` (history item and counter), as a publish
/// whose fan-out has not arrived yet leaves it.
async fn store_unsent(dev: &Dev, channel: &str, serial: u64, text: &str) {
    use aws_sdk_dynamodb::types::AttributeValue::{N, S};
    let db = dev.dynamodb();
    let data = json!({"text": text}).to_string();
    db.put_item()
        .table_name("chat-dev-history")
        .item("channel", S(channel.into()))
        .item("serial", N(serial.to_string()))
        .item("id", S(format!("unsent-{serial}")))
        .item("from", S("server".into()))
        .item("data", S(data))
        .item("ts", N("1".into()))
        .send()
        .await
        .expect("history item");
    db.put_item()
        .table_name("chat-dev-counters")
        .item("channel", S(channel.into()))
        .item("serial", N(serial.to_string()))
        .send()
        .await
        .expect("counter");
}

/// The id of the page's connection: the one open connection that is not `client`'s.
async fn page_connection(dev: &Dev, client: &mut Client) -> String {
    let ids: Vec<String> = serde_json::from_str::<Value>(
        &http_get(&format!("{}/_wsctl/connections", dev.base())).await,
    )
    .expect("ids")["connections"]
        .as_array()
        .expect("list")
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    let probe = json!({"probe": ids[0]});
    http(
        &format!("{}/{}", dev.field("connections_url"), ids[0]),
        "POST",
        probe.to_string().as_bytes(),
    )
    .await;
    let mine = client
        .expect_or_none(|v| v["probe"] == ids[0].as_str(), Duration::from_secs(2))
        .await
        .is_some();
    if mine { ids[1].clone() } else { ids[0].clone() }
}
