//! A bare tokio WebSocket server that speaks the functions' protocol and nothing more:
//! `subscribe` (answered `subscribed` with the channel's serial), `publish` (answered `ack`,
//! then the `message` to every subscriber under the channel's next serial). It is the baseline
//! `wsctl bench` is measured against, and, with [`Faults`], a stage that loses, repeats and
//! reorders messages on purpose so the bench's checks are seen to catch them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// Deliberate faults, by serial (the same in every channel).
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Not delivered to the channel's first subscriber.
    pub lose: Option<u64>,
    /// Delivered twice to every subscriber.
    pub repeat: Option<u64>,
    /// Held back and delivered after the next serial.
    pub delay: Option<u64>,
}

#[derive(Default)]
struct Channel {
    serial: u64,
    subscribers: Vec<mpsc::UnboundedSender<Message>>,
    held: Option<Message>,
}

type Channels = Arc<Mutex<HashMap<String, Channel>>>;

/// Starts the server on a free loopback port; its `ws://` URL. It runs until the runtime ends.
pub async fn pubsub_server(faults: Faults) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let channels: Channels = Arc::default();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(serve(stream, channels.clone(), faults));
        }
    });
    format!("ws://{addr}/bare")
}

async fn serve(stream: tokio::net::TcpStream, channels: Channels, faults: Faults) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
    });
    while let Some(Ok(frame)) = stream.next().await {
        let Message::Text(text) = frame else { continue };
        let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        let channel = frame["channel"].as_str().unwrap_or_default().to_string();
        match frame["action"].as_str() {
            Some("subscribe") => {
                let mut all = channels.lock().unwrap();
                let c = all.entry(channel.clone()).or_default();
                c.subscribers.push(tx.clone());
                let answer = json!({"type": "subscribed", "channel": channel, "serial": c.serial});
                let _ = tx.send(Message::text(answer.to_string()));
            }
            Some("publish") => {
                let mut all = channels.lock().unwrap();
                let c = all.entry(channel.clone()).or_default();
                c.serial += 1;
                let serial = c.serial;
                let ack = json!({"type": "ack", "id": format!("m{serial}"), "channel": channel, "serial": serial});
                let _ = tx.send(Message::text(ack.to_string()));
                let message = Message::text(
                    json!({"type": "message", "channel": channel, "serial": serial, "id": format!("m{serial}"), "from": "bare", "data": frame["data"], "ts": 0})
                        .to_string(),
                );
                if faults.delay == Some(serial) {
                    c.held = Some(message);
                    continue;
                }
                let held = c.held.take();
                for (i, s) in c.subscribers.iter().enumerate() {
                    if faults.lose == Some(serial) && i == 0 {
                        continue;
                    }
                    let _ = s.send(message.clone());
                    if faults.repeat == Some(serial) {
                        let _ = s.send(message.clone());
                    }
                    if let Some(held) = &held {
                        let _ = s.send(held.clone());
                    }
                }
            }
            _ => {}
        }
    }
}
