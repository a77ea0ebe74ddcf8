//! The client against servers that misbehave on purpose, on loopback: what it costs a stage
//! when the stage refuses, throttles or stops answering. The protocol's promises under drops
//! are tested against `wsctl dev` (examples/faults, run by the e2e suite).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::{Client, Error, Options, State};

/// A server that answers every handshake with `status`; counts the attempts.
async fn refusing(status: u16) -> (String, Arc<Mutex<u32>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/dev", listener.local_addr().expect("addr"));
    let attempts = Arc::new(Mutex::new(0));
    let count = attempts.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            *count.lock().unwrap() += 1;
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let answer = format!("HTTP/1.1 {status} No\r\ncontent-length: 0\r\n\r\n");
            let _ = socket.write_all(answer.as_bytes()).await;
        }
    });
    (url, attempts)
}

/// A server that accepts every connection and records each frame, per connection, and never
/// answers one.
async fn silent() -> (String, Arc<Mutex<Vec<Vec<Value>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/dev", listener.local_addr().expect("addr"));
    let frames: Arc<Mutex<Vec<Vec<Value>>>> = Arc::default();
    let record = frames.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(socket).await else {
                    return;
                };
                let n = {
                    let mut all = record.lock().unwrap();
                    all.push(Vec::new());
                    all.len() - 1
                };
                while let Some(Ok(m)) = ws.next().await {
                    if let WsMessage::Text(t) = m {
                        let v = serde_json::from_str(t.as_str()).unwrap_or_default();
                        record.lock().unwrap()[n].push(v);
                    }
                }
                let _ = ws.close(None).await;
            });
        }
    });
    (url, frames)
}

/// A client of `url` whose `get_token` counts its calls, with backoff from `min` to `max` ms.
fn counting_tokens(url: &str, min: u64, max: u64) -> (Client, Arc<Mutex<u32>>) {
    let asked = Arc::new(Mutex::new(0));
    let count = asked.clone();
    let options = Options::new(url)
        .get_token(move || {
            *count.lock().unwrap() += 1;
            async { Ok::<_, String>("t") }
        })
        .delays(Duration::from_millis(min), Duration::from_millis(max));
    (Client::new(options).expect("client"), asked)
}

/// What a scripted server does with one frame: the frames it answers with, and whether it
/// then closes the connection.
type Script = Arc<dyn Fn(usize, &Value) -> (Vec<Value>, bool) + Send + Sync>;

/// A server that answers each frame of connection `n` as `script` says.
async fn scripted(script: Script) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/dev", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((socket, _)) = listener.accept().await {
            let script = script.clone();
            let conn = n;
            n += 1;
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(socket).await else {
                    return;
                };
                while let Some(Ok(WsMessage::Text(t))) = ws.next().await {
                    let frame: Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                    let (answers, close) = script(conn, &frame);
                    for a in answers {
                        let _ = ws.send(WsMessage::text(a.to_string())).await;
                    }
                    if close {
                        let _ = ws.close(None).await;
                        return;
                    }
                }
            });
        }
    });
    url
}

fn message(serial: u64) -> Value {
    json!({"type": "message", "channel": "c", "serial": serial, "id": format!("m{serial}"),
           "from": "u", "data": serial, "ts": 1})
}

/// A resume whose replay is paged and has a hole that will never fill (serial 44 expired):
/// everything held above the hole is delivered, in order, once the pages are read. The server
/// stores 43 and 45 to 62 and answers 17 messages a page, as protocol.md's `history` does.
#[tokio::test]
async fn a_paged_replay_with_a_permanent_hole_delivers_what_it_holds() {
    let page = |since: u64| {
        let stored = [43].into_iter().chain(45..=62);
        let after: Vec<u64> = stored.filter(|s| *s > since).collect();
        let more = after.len() > 17;
        let messages: Vec<Value> = after.into_iter().take(17).map(message).collect();
        json!({"type": "history", "channel": "c", "messages": messages, "more": more})
    };
    let url = scripted(Arc::new(move |_, f| {
        let since = f["since"].as_u64().unwrap_or_default();
        match f["action"].as_str() {
            Some("subscribe") => {
                let subscribed = json!({"type": "subscribed", "channel": "c", "serial": 62,
                                        "more": page(since)["more"]});
                (vec![page(since), subscribed], false)
            }
            Some("history") => (vec![page(since)], false),
            _ => (vec![], false),
        }
    }))
    .await;
    let client = Client::new(Options::new(&url).token("t")).expect("client");
    let mut sub = client
        .channel("c")
        .subscribe_since(42)
        .await
        .expect("subscribed");
    let mut got = Vec::new();
    while got.len() < 19 {
        let m = tokio::time::timeout(Duration::from_secs(5), sub.recv())
            .await
            .unwrap_or_else(|_| panic!("stuck after {got:?}"))
            .expect("a message");
        got.push(m.serial);
    }
    let expected: Vec<u64> = [43].into_iter().chain(45..=62).collect();
    assert_eq!(got, expected);
    client.close().await;
}

/// A publish answered `token_expired` was not acted on, and the server closes the connection:
/// it goes again on the next one and resolves there, once.
#[tokio::test]
async fn a_publish_refused_for_an_expired_token_is_sent_again_after_reconnecting() {
    let url = scripted(Arc::new(|conn, f| {
        if f["action"] != "publish" {
            return (vec![], false);
        }
        if conn == 0 {
            let refusal = json!({"type": "error", "code": "token_expired", "action": "publish",
                                 "id": f["id"], "message": "the token expired"});
            return (vec![refusal], true);
        }
        let ack = json!({"type": "ack", "id": f["id"], "channel": f["channel"], "serial": 7});
        (vec![ack], false)
    }))
    .await;
    let (client, asked) = counting_tokens(&url, 50, 100);
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        client.channel("c").publish(json!(1)),
    )
    .await
    .expect("resolved");
    assert_eq!(r.expect("published").serial, 7);
    assert_eq!(
        *asked.lock().unwrap(),
        2,
        "a fresh token for the new connection"
    );
    client.close().await;
}

/// A ping with no pong means a socket that went half-open: the client starts over.
#[tokio::test]
async fn an_unanswered_ping_reconnects() {
    let (url, frames) = silent().await;
    let mut options = Options::new(&url)
        .token("t")
        .delays(Duration::from_millis(50), Duration::from_millis(100));
    options.ping_after = Duration::from_millis(200);
    options.request_timeout = Duration::from_millis(500);
    let client = Client::new(options).expect("client");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    client.close().await;
    let frames = frames.lock().unwrap().clone();
    assert!(frames.len() >= 2, "{frames:?}");
    assert!(
        frames[0].iter().any(|f| f["action"] == "ping"),
        "{frames:?}"
    );
}

/// What the server would refuse by closing the connection never leaves the client.
#[tokio::test]
async fn a_publish_over_the_limits_fails_at_once() {
    let (url, frames) = silent().await;
    let client = Client::new(Options::new(&url).token("t")).expect("client");
    let big = json!("x".repeat(121 * 1024));
    let err = client.publish("c", big, None).await.expect_err("refused");
    assert_eq!(err.code(), Some("too_large"), "{err}");
    let err = client
        .publish("c", json!(1), Some("i".repeat(129)))
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Some("bad_request"), "{err}");
    client.close().await;
    let sent: usize = frames.lock().unwrap().iter().map(Vec::len).sum();
    assert_eq!(sent, 0);
}

/// A `get_token` that panics is a failed attempt, retried with backoff, not a dead client.
#[tokio::test]
async fn a_panicking_get_token_is_a_failed_attempt() {
    let (url, _) = refusing(401).await;
    let calls = Arc::new(Mutex::new(0));
    let count = calls.clone();
    let options = Options::new(&url)
        .get_token(move || {
            *count.lock().unwrap() += 1;
            async { panic!("the token service is down") as Result<String, String> }
        })
        .delays(Duration::from_millis(50), Duration::from_millis(100));
    let client = Client::new(options).expect("client");
    let mut events = client.events();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(*calls.lock().unwrap() >= 2, "tried again");
    let mut reasons = Vec::new();
    while let Ok(crate::Event::State(s)) = events.try_recv() {
        reasons.extend(s.reason);
    }
    assert!(
        reasons.iter().any(|r| r.contains("panicked")),
        "{reasons:?}"
    );
    client.close().await;
}

#[tokio::test]
async fn a_refused_static_token_closes_after_one_attempt() {
    let (url, attempts) = refusing(403).await;
    let client = Client::new(Options::new(&url).token("forged")).expect("client");
    let mut states = client.states();
    let last = states
        .wait_for(|s| s.state == State::Closed)
        .await
        .expect("state")
        .clone();
    assert_eq!(last.status, Some(403), "{last:?}");
    assert!(last.reason.unwrap_or_default().contains("get_token"));
    assert_eq!(
        client.channel("c").publish(json!(1)).await,
        Err(Error::Closed)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        *attempts.lock().unwrap(),
        1,
        "no retry with a token that cannot change"
    );
}

/// A stage that throttles handshakes (429) is not hammered: attempts back off, four times
/// longer than after other failures.
#[tokio::test]
async fn a_throttled_handshake_backs_off() {
    let (url, attempts) = refusing(429).await;
    let (client, asked) = counting_tokens(&url, 100, 800);
    let mut events = client.events();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let n = *attempts.lock().unwrap();
    // At least 200, 400, 400… ms apart (100 ms × 2^(attempt+2), half jittered, capped at 800).
    assert!((2..=9).contains(&n), "{n} handshakes in 3 s");
    // A throttle is not a refused token: the one it has is kept.
    assert_eq!(*asked.lock().unwrap(), 1);
    let mut statuses = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let crate::Event::State(s) = e
            && s.state == State::Disconnected
        {
            statuses.push(s.status);
        }
    }
    assert!(statuses.iter().all(|s| *s == Some(429)), "{statuses:?}");
    client.close().await;
}

/// A refused token (401/403) is asked for again before the next attempt.
#[tokio::test]
async fn a_refused_token_is_asked_for_again() {
    let (url, attempts) = refusing(401).await;
    let (client, asked) = counting_tokens(&url, 50, 100);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    client.close().await;
    let (n, asked) = (*attempts.lock().unwrap(), *asked.lock().unwrap());
    assert!(n >= 3, "{n}");
    // The last token asked for may not have reached the server before the close.
    assert!(
        asked == n || asked == n + 1,
        "one fresh token per attempt: {asked} for {n}"
    );
}

/// 1,000 publishes made at once never reach the server at once: six are in flight, the rest
/// wait. When none is answered, the client starts over on a new connection and sends the same
/// six again, same ids, numbered from 1, instead of piling more on.
#[tokio::test]
async fn a_flood_of_publishes_is_windowed_and_resent_after_silence() {
    let (url, frames) = silent().await;
    let mut options = Options::new(&url)
        .token("t")
        .delays(Duration::from_millis(50), Duration::from_millis(100));
    options.request_timeout = Duration::from_millis(1500);
    let client = Client::new(options).expect("client");
    let acks: Vec<_> = (0..1000)
        .map(|i| client.publish("c", json!(i), Some(format!("p{i}"))))
        .collect();
    let mut states = client.states();
    states
        .wait_for(|s| s.state == State::Connected)
        .await
        .expect("connected");
    let publishes = |conn: &Vec<Value>| -> Vec<(String, u64)> {
        conn.iter()
            .filter(|f| f["action"] == "publish")
            .map(|f| {
                (
                    f["id"].as_str().unwrap().to_string(),
                    f["seq"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let expected: Vec<(String, u64)> = (0..6).map(|i| (format!("p{i}"), i + 1)).collect();
    // Past the request timeout and the watchdog's next second, until the second connection has
    // its window, however slow the machine.
    for _ in 0..300 {
        let second = frames.lock().unwrap().get(1).map(&publishes);
        if second.as_ref() == Some(&expected) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client.close().await;
    // The server's reader records what was sent before the close.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let frames = frames.lock().unwrap().clone();
    assert!(frames.len() >= 2, "reconnected after silence: {frames:?}");
    for (n, conn) in frames.iter().enumerate() {
        let got = publishes(conn);
        // A connection closed before it opened on the client's side sent nothing: only the last.
        let cut = got.is_empty() && n >= 2 && n == frames.len() - 1;
        assert!(got == expected || cut, "connection {n}: {got:?}");
    }
    for ack in acks {
        assert_eq!(ack.await, Err(Error::Closed));
    }
}

#[test]
fn options_that_cannot_work_are_refused_with_the_fix() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    let Err(Error::Options(why)) = Client::new(Options::new("https://x/dev").token("t")) else {
        panic!("an https URL was accepted");
    };
    assert!(why.contains("wss://"), "{why}");
    let Err(Error::Options(why)) = Client::new(Options::new("wss://x/dev")) else {
        panic!("no token was accepted");
    };
    assert!(why.contains("get_token"), "{why}");
}
