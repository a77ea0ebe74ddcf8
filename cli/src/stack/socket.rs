//! A client of the stage, through its authorizer: what `connect` and `tail` use. It runs on
//! `wsctl-client`, so it reconnects, resumes its channels and renews its token like any
//! application's client.

use std::time::Duration;

use wsctl_client::{Client, Options, State};
use wsctl_functions::auth::{Capabilities, Claims, mint};

use super::Stack;
use crate::error::Error;

/// How long a minted token lives; the client renews it at 80% of that.
const MINTED_TTL: Duration = Duration::from_secs(3600);

impl Stack<'_> {
    /// A client connected to the stage (or to `url`) as `user`, with `token` or with tokens
    /// minted with every grant as they are needed (at connect, renewal and after a refusal).
    /// The first handshake's failure is an error naming the fix; later drops are the client's to
    /// recover from.
    pub async fn client(
        &self,
        user: &str,
        token: Option<&str>,
        url: Option<&str>,
    ) -> Result<Client, Error> {
        let url = match url {
            Some(url) => url.to_string(),
            None => self.gateway().await?.websocket,
        };
        let options = match token {
            Some(t) => Options::new(&url).token(t),
            None => {
                // Read once: later tokens are minted here, with no AWS call.
                let keys = self.keys().await?;
                let audience = self.audience().map(str::to_string);
                let user = user.to_string();
                Options::new(&url).get_token(move || {
                    let claims = Claims::issue(&user, Capabilities::everything(), MINTED_TTL)
                        .with_audience(audience.as_deref());
                    let token = mint(&keys.current, &claims);
                    async move { Ok::<_, std::convert::Infallible>(token) }
                })
            }
        };
        let client = Client::new(options).map_err(|e| Error::Usage {
            usage: format!("{e}\nhint: pass the stage's URL with --url wss://…/STAGE"),
        })?;
        let mut states = client.states();
        let first = states
            .wait_for(|s| s.state != State::Connecting)
            .await
            .map(|s| s.clone());
        let Ok(first) = first else {
            return Err(Error::Io(format!("the client of {url} stopped")));
        };
        if first.state == State::Connected {
            return Ok(client);
        }
        client.close().await;
        let reason = first.reason.unwrap_or_default();
        Err(match first.status {
            Some(status @ (401 | 403)) => Error::Refused(format!(
                "{url}: {} ({status})\nhint: mint one with `wsctl token --user NAME` and pass it with --token",
                if status == 401 {
                    "no token reached the authorizer"
                } else {
                    "the token was refused (forged, expired, or for another stack)"
                }
            )),
            Some(status) => Error::Refused(format!("{url}: the handshake was refused ({status})")),
            None => Error::Io(format!(
                "cannot connect to {url}: {reason}\nhint: check that the stack is up (`wsctl status`, or `wsctl dev` running) and the URL"
            )),
        })
    }
}
