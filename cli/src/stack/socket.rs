//! A WebSocket client of the stage, through its authorizer: what `connect` and `tail` use.

use std::time::Duration;

use tokio_tungstenite::tungstenite::Error as WsError;
use wsctl_functions::auth::Capabilities;

use super::Stack;
use crate::error::Error;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl Stack<'_> {
    /// Opens a WebSocket to the stage (or to `url`) as `user`, with `token` or one minted for
    /// an hour with every grant.
    pub async fn socket(
        &self,
        user: &str,
        token: Option<&str>,
        url: Option<&str>,
    ) -> Result<Ws, Error> {
        let url = match url {
            Some(url) => url.to_string(),
            None => self.gateway().await?.websocket,
        };
        let token = match token {
            Some(t) => t.to_string(),
            None => {
                self.mint(user, Capabilities::everything(), Duration::from_secs(3600))
                    .await?
                    .0
            }
        };
        match tokio_tungstenite::connect_async(with_token(&url, &token)).await {
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
}

/// `url` with `token` as its `token` query parameter, where the stage's authorizer reads it.
pub fn with_token(url: &str, token: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}token={token}")
}
