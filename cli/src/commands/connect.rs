//! `wsctl connect`: a WebSocket client for the stack. Each stdin line is sent as a frame; each
//! frame that arrives is printed on its own line. Interactive on a terminal; with stdin from a
//! pipe or file it sends every line, waits `--wait` for answers, then closes, so scripts can use it.

use std::io::IsTerminal;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

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
    let ws = stack
        .socket(&args.user, args.token.as_deref(), args.url.as_deref())
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
    let (mut sink, mut stream) = ws.split();
    let out = *printer;
    let reader = tokio::spawn(async move {
        while let Some(frame) = stream.next().await {
            match frame {
                Ok(Message::Text(t)) => out.verbatim(t.as_str()),
                Ok(Message::Binary(b)) => out.verbatim(&format!("(binary, {} bytes)", b.len())),
                Ok(Message::Close(f)) => {
                    return f.map(|f| (u16::from(f.code), f.reason.to_string()));
                }
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
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
        if sink.send(Message::text(line.to_string())).await.is_err() {
            break;
        }
    }
    if !interactive {
        tokio::time::sleep(args.wait).await;
    }
    let _ = sink.send(Message::Close(None)).await;
    if let Ok(Ok(Some((code, reason)))) = tokio::time::timeout(Duration::from_secs(2), reader).await
        && code != 1000
        && code != 1005
    {
        printer.note(format!("closed by the server: {code} {reason}"));
    }
    Ok(())
}
