//! Tokens: fetched at connect, renewed at 80% of their life with an `auth` frame.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::link::{Link, Timer};
use crate::types::{Error, Event, State, TokenGrant, TokenSource};

use super::{Engine, Input};

impl Engine {
    pub(super) fn take(&mut self, grant: TokenGrant) {
        self.expires = grant.expires_at.or_else(|| jwt_expiry(&grant.token));
        self.token = Some(grant.token);
    }

    /// Renews at 80% of the token's remaining life, with an `auth` frame on the open connection.
    pub(super) fn schedule_renewal(&mut self) {
        self.renew_round += 1;
        let (Some(_), Some(expires)) = (&self.opts.get_token, self.expires) else {
            return;
        };
        let left = expires.saturating_mul(1000).saturating_sub(now_ms());
        let after = Duration::from_millis(left / 5 * 4).max(Duration::from_secs(1));
        let round = self.renew_round;
        self.conn.later(after, Timer::Renew { round });
    }

    pub(super) fn schedule_renew(&mut self, after: Duration) {
        self.renew_round += 1;
        let round = self.renew_round;
        self.conn.later(after, Timer::Renew { round });
    }

    pub(super) fn renew(&mut self) {
        let Some(source) = &self.opts.get_token else {
            return;
        };
        if self.conn.state != State::Connected {
            return;
        }
        let fetch = fetch(source, self.opts.request_timeout);
        let inputs = self.inputs.clone();
        let round = self.renew_round;
        tokio::spawn(async move {
            let grant = fetch.await;
            let _ = inputs.send(Input::Renewed { round, grant });
        });
    }

    pub(super) fn renewal_refused(&mut self, f: &Value) {
        if crate::link::retryable(f) {
            let after = crate::link::retry_delay(f).max(Duration::from_secs(1));
            return self.schedule_renew(after);
        }
        self.conn.emit(Event::Error(Error::server(f)));
        self.stale = true;
    }
}

/// A call of `get_token` that always ends: an answer, or why there is none (it panicked, or
/// took longer than `patience`), so the client goes on to its next attempt either way.
pub(super) fn fetch(
    source: &TokenSource,
    patience: Duration,
) -> impl Future<Output = Result<TokenGrant, String>> + Send + 'static {
    let call = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (source.0)()));
    async move {
        let Ok(future) = call else {
            return Err("get_token panicked".to_string());
        };
        match tokio::time::timeout(patience, tokio::spawn(future)).await {
            Err(_) => Err(format!(
                "get_token did not answer in {} s",
                patience.as_secs()
            )),
            Ok(Err(_)) => Err("get_token panicked".to_string()),
            Ok(Ok(grant)) => grant,
        }
    }
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// The `exp` of a JWT, or None when it has none or is not one.
pub fn jwt_expiry(token: &str) -> Option<u64> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<Value>(&bytes).ok()?["exp"].as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expiry_of_a_jwt_is_read_and_anything_else_has_none() {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let jwt = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"HS256"}"#),
            b64(r#"{"exp":1700000000}"#)
        );
        assert_eq!(jwt_expiry(&jwt), Some(1_700_000_000));
        assert_eq!(jwt_expiry("opaque"), None);
        assert_eq!(jwt_expiry("a.!!!.c"), None);
    }
}
