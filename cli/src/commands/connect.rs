//! `wsctl connect`: a WebSocket client for the stack. Each stdin line is sent as a frame; each
//! frame that arrives is printed on its own line. Interactive on a terminal; with stdin from a
//! pipe or file it sends every line, waits `--wait` for answers, then closes, so scripts can use it.

use std::io::IsTerminal;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::args::ConnectArgs;
use crate::aws::{AwsArgs, Clients};
use crate::config::Config;
use crate::engine::desired::Names;
use crate::error::Error;
use crate::output::Printer;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket to the stack's stage as `user` (or with `token`), through its authorizer.
pub(super) async fn open(
    config: &Config,
    aws: &AwsArgs,
    clients: &Clients,
    user: &str,
    token: Option<&str>,
    url: Option<&str>,
) -> Result<Ws, Error> {
    let names = Names::new(config);
    let url = match (url, &aws.endpoint_url) {
        (Some(url), _) => url.to_string(),
        (None, Some(endpoint)) => format!(
            "{}/{}",
            endpoint.trim_end_matches('/').replacen("http", "ws", 1),
            config.stage
        ),
        (None, None) => {
            let api = crate::aws::apigw::find_api(clients, &names).await?.ok_or_else(|| Error::Usage {
                usage: format!("the stack {} is not deployed\nhint: run `wsctl deploy` first, or pass --url", names.api()),
            })?;
            format!(
                "wss://{api}.execute-api.{}.amazonaws.com/{}",
                clients.region, config.stage
            )
        }
    };
    let token = match token {
        Some(t) => t.to_string(),
        None => {
            use wsctl_functions::auth::{Capabilities, Claims, mint};
            let keys = crate::aws::ssm::token_keys(clients, &names.secret()).await?;
            mint(
                &keys.current,
                &Claims::issue(user, Capabilities::everything(), Duration::from_secs(3600))
                    .with_audience(
                        config
                            .authorizer
                            .as_ref()
                            .and_then(|a| a.audience.as_deref()),
                    ),
            )
        }
    };
    let full = format!(
        "{url}{}token={token}",
        if url.contains('?') { '&' } else { '?' }
    );
    match tokio_tungstenite::connect_async(full.as_str()).await {
        Ok((ws, _)) => Ok(ws),
        Err(WsError::Http(resp)) => {
            let why = match resp.status().as_u16() {
                401 => "401: no token reached the authorizer",
                403 => "403: the token was refused (forged, expired, or for another stack)",
                _ => "the handshake was refused",
            };
            Err(Error::Refused(format!(
                "{url}: {why} ({})\nhint: mint one with `wsctl token --user NAME` and pass it with --token",
                resp.status()
            )))
        }
        Err(e) => Err(Error::Io(format!(
            "cannot connect to {url}: {e}\nhint: check that the stack is up (`wsctl status`, or `wsctl dev` running) and the URL"
        ))),
    }
}

pub async fn run(
    config: &Config,
    aws: &AwsArgs,
    args: &ConnectArgs,
    printer: &Printer,
) -> Result<(), Error> {
    let (clients, _) = super::connect(config, aws).await?;
    let ws = open(
        config,
        aws,
        &clients,
        &args.user,
        args.token.as_deref(),
        args.url.as_deref(),
    )
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
    let reader = tokio::spawn(async move {
        while let Some(frame) = stream.next().await {
            match frame {
                Ok(Message::Text(t)) => println!("{}", t.as_str()),
                Ok(Message::Binary(b)) => println!("(binary, {} bytes)", b.len()),
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
