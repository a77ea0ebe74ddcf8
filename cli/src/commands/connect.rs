//! `wsctl connect`: a WebSocket client for the stack. Each stdin line is sent as a frame; each
//! frame that arrives is printed on its own line. Interactive on a terminal; with stdin from a
//! pipe or file it sends every line, waits `--wait` for answers, then closes, so scripts can use it.
//!
//! It runs on `wsctl-client`: a dropped connection comes back (with a fresh minted token when
//! needed), the channels subscribed with a `subscribe` line resume where they stopped, and the
//! connection is kept alive past API Gateway's idle timeout.

use std::io::IsTerminal;
use std::time::Duration;

use serde_json::Value;
use wsctl_client::{Client, Event, State};

use crate::args::ConnectArgs;
use crate::aws::AwsArgs;
use crate::config::Config;
use crate::error::Error;
use crate::output::Printer;
use crate::stack::Stack;

pub async fn run(
    config: &Config,
    aws: &AwsArgs,
    args: &ConnectArgs,
    printer: &Printer,
) -> Result<(), Error> {
    let stack = Stack::open(config, aws).await?;
    let client = stack
        .client(&args.user, args.token.as_deref(), args.url.as_deref())
        .await?;
    let url = args
        .url
        .clone()
        .unwrap_or_else(|| format!("the {} stage", config.stage));
    let interactive = std::io::stdin().is_terminal();
    printer.note(format!(
        "connected to {url} as {}; type JSON frames, one per line{}",
        args.user,
        if interactive { ", Ctrl-D to close" } else { "" }
    ));
    let out = *printer;
    let mut frames = client.frames();
    tokio::spawn(async move {
        while let Some(text) = frames.recv().await {
            out.verbatim(&text);
        }
    });
    let mut events = client.events();
    let notes = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                Event::State(s) if s.state == State::Disconnected => out.note(format!(
                    "disconnected: {}; reconnecting in {} ms",
                    s.reason.unwrap_or_default(),
                    s.retry_in.unwrap_or_default().as_millis()
                )),
                Event::State(s) if s.state == State::Connected => out.note("reconnected"),
                Event::State(s) if s.state == State::Closed => {
                    out.note(format!("closed: {}", s.reason.unwrap_or_default()))
                }
                _ => {}
            }
        }
    });
    // Stdin on a plain thread: it blocks, and a terminal read cannot be cancelled anyway.
    let (tx, mut lines) = tokio::sync::mpsc::channel::<String>(64);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = lines.recv().await {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Ok(frame) = serde_json::from_str::<Value>(line) else {
            printer.note(format!(
                "not sent: {line:?} is not JSON; e.g. {{\"action\":\"subscribe\",\"channel\":\"room-1\"}}"
            ));
            continue;
        };
        if !send(&client, frame).await {
            break;
        }
    }
    if !interactive {
        tokio::time::sleep(args.wait).await;
    }
    notes.abort();
    client.close().await;
    Ok(())
}

/// Sends one typed frame; false once the client is closed. A `subscribe` or `unsubscribe` of a
/// channel goes through the client, so a reconnect resumes it; anything else goes as typed,
/// after waiting for a connection if there is none.
async fn send(client: &Client, frame: Value) -> bool {
    if let (Some(action), Some(channel)) = (frame["action"].as_str(), frame["channel"].as_str()) {
        let channel = client.channel(channel);
        match action {
            "subscribe" => {
                let since = frame["since"].as_u64();
                // The client prints nothing itself: the frames tap shows what arrives.
                tokio::spawn(async move {
                    let subscribed = match since {
                        Some(s) => channel.subscribe_since(s).await,
                        None => channel.subscribe().await,
                    };
                    if let Ok(mut messages) = subscribed {
                        while messages.recv().await.is_some() {}
                    }
                });
                return true;
            }
            "unsubscribe" => {
                channel.unsubscribe();
                return true;
            }
            _ => {}
        }
    }
    let mut states = client.states();
    loop {
        let state = states.borrow_and_update().state;
        match state {
            State::Closed => return false,
            State::Connected if client.send_frame(frame.clone()).await => return true,
            _ => {}
        }
        // A send refused while connected races a drop: look again at least once a minute.
        let _ = tokio::time::timeout(Duration::from_secs(60), states.changed()).await;
    }
}
