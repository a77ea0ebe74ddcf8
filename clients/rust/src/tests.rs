//! The client against servers that misbehave on purpose, on loopback: what it costs a stage
//! when the stage refuses, throttles or stops answering. The protocol's promises under drops
//! are tested against `wsctl dev` (examples/faults, run by the e2e suite).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
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
    assert_eq!(asked, n, "one fresh token per attempt");
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
    // Past the request timeout and the watchdog's next second.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    client.close().await;
    let frames = frames.lock().unwrap().clone();
    assert!(frames.len() >= 2, "reconnected after silence: {frames:?}");
    for (n, conn) in frames.iter().enumerate() {
        let publishes: Vec<(String, u64)> = conn
            .iter()
            .filter(|f| f["action"] == "publish")
            .map(|f| {
                (
                    f["id"].as_str().unwrap().to_string(),
                    f["seq"].as_u64().unwrap(),
                )
            })
            .collect();
        let expected: Vec<(String, u64)> = (0..6).map(|i| (format!("p{i}"), i + 1)).collect();
        assert_eq!(publishes, expected, "connection {n}");
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
