//! The socket: handshakes, the reader and writer tasks, backoff, planned and forced reconnects.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::link::{Link, Timer};
use crate::types::{Error, State};

use super::tokens::{fetch, now_ms};
use super::{Engine, Failure, Input, Socket};

/// A connection that lived this long was a success: the next reconnect starts from the
/// shortest delay.
const STABLE: Duration = Duration::from_secs(1);

impl Engine {
    pub(super) fn later_connect(&mut self, after: Duration) {
        self.connect_round += 1;
        let attempt = self.connect_round;
        self.conn.later(after, Timer::Connect { attempt });
    }

    pub(super) fn connect(&mut self) {
        if self.closed {
            return;
        }
        self.conn.set_state(State::Connecting, None, None);
        let soon = self
            .expires
            .is_some_and(|e| e.saturating_mul(1000) < now_ms() + 10_000);
        if let Some(source) = &self.opts.get_token
            && (self.stale || self.token.is_none() || soon)
        {
            let fetch = fetch(source, self.opts.request_timeout);
            let inputs = self.inputs.clone();
            let round = self.connect_round;
            tokio::spawn(async move {
                let grant = fetch.await;
                let _ = inputs.send(Input::Token { round, grant });
            });
            return;
        }
        self.dial();
    }

    pub(super) fn dial(&mut self) {
        let Some(token) = &self.token else {
            return self.retry(
                "there is no token: give the client one, or get_token".into(),
                0,
            );
        };
        self.generation += 1;
        let generation = self.generation;
        let url = with_token(&self.opts.url, token);
        let inputs = self.inputs.clone();
        let patience = self.opts.request_timeout;
        tokio::spawn(async move {
            let result =
                match tokio::time::timeout(patience, tokio_tungstenite::connect_async(url)).await {
                    Err(_) => Err(Failure::Other("the handshake timed out".into())),
                    Ok(Ok((socket, _))) => Ok(Box::new(socket)),
                    Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
                        Err(Failure::Status(response.status().as_u16()))
                    }
                    Ok(Err(e)) => Err(Failure::Other(format!("the handshake failed: {e}"))),
                };
            let _ = inputs.send(Input::Opened { generation, result });
        });
    }

    pub(super) fn opened(&mut self, socket: Box<Socket>) {
        let generation = self.generation;
        let (mut sink, mut stream) = socket.split();
        let (out, mut queue) = mpsc::unbounded_channel::<WsMessage>();
        let inputs = self.inputs.clone();
        tokio::spawn(async move {
            while let Some(message) = queue.recv().await {
                let closing = matches!(message, WsMessage::Close(_));
                if let Err(e) = sink.send(message).await {
                    // A socket that cannot be written to is gone, whatever the reader knows.
                    let reason = format!("the connection failed while sending: {e}");
                    let _ = inputs.send(Input::Closed {
                        generation,
                        code: 1006,
                        reason,
                    });
                    return;
                }
                if closing {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let inputs = self.inputs.clone();
        self.reader = Some(tokio::spawn(async move {
            let (mut code, mut reason) = (1006, String::new());
            while let Some(frame) = stream.next().await {
                match frame {
                    Ok(WsMessage::Text(text)) => {
                        let text = text.as_str().to_string();
                        if inputs.send(Input::Frame { generation, text }).is_err() {
                            return;
                        }
                    }
                    Ok(WsMessage::Close(frame)) => {
                        if let Some(f) = frame {
                            (code, reason) = (u16::from(f.code), f.reason.to_string());
                        } else {
                            code = 1005;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            let _ = inputs.send(Input::Closed {
                generation,
                code,
                reason,
            });
        }));
        self.conn.out = Some(out);
        self.opened_at = Instant::now();
        self.conn.last_sent = self.opened_at;
        self.conn.ping_at = None;
        self.conn.set_state(State::Connected, None, None);
        self.publishes.connected(&mut self.conn);
        for ch in self.channels.values_mut() {
            ch.connected(&mut self.conn);
        }
        self.schedule_renewal();
        let after = self.opts.max_connection;
        self.conn
            .later(after, Timer::PlannedReconnect { generation });
    }

    /// The socket closed, or never opened: say why and come back.
    pub(super) fn lost(&mut self, opened: bool, failure: Failure) {
        self.disconnected();
        if opened && self.opened_at.elapsed() >= STABLE {
            self.attempt = 0;
        }
        if let Failure::Status(status) = failure {
            self.conn.refusal = Some(status);
        }
        match failure {
            Failure::Status(status @ (401 | 403)) => {
                if self.opts.get_token.is_none() {
                    return self.close(&format!(
                        "the token was refused ({status}); give the client a get_token to renew it"
                    ));
                }
                self.stale = true;
                self.retry(format!("the token was refused ({status})"), 0);
            }
            // Too many connections for this user, or the account's throttle: wait longer.
            Failure::Status(429) => self.retry("too many connections (429)".into(), 2),
            Failure::Status(status) => {
                self.retry(format!("the handshake was refused ({status})"), 0)
            }
            Failure::Other(why) => self.retry(why, 0),
        }
    }

    pub(super) fn retry(&mut self, reason: String, extra: u32) {
        if self.closed {
            return;
        }
        let min = self.opts.min_delay.as_secs_f64();
        let base = (min * 2f64.powi((self.attempt + extra).min(30) as i32))
            .min(self.opts.max_delay.as_secs_f64());
        let delay = Duration::try_from_secs_f64(base * (0.5 + fastrand::f64() * 0.5))
            .unwrap_or(self.opts.max_delay);
        self.attempt += 1;
        self.conn
            .set_state(State::Disconnected, Some(reason), Some(delay));
        self.later_connect(delay);
    }

    pub(super) fn disconnected(&mut self) {
        for ch in self.channels.values_mut() {
            ch.disconnected();
        }
        self.publishes.disconnected();
    }

    /// Closes the open socket on purpose and reconnects after `delay` (None: with backoff).
    pub(super) fn drop_socket(&mut self, reason: &str, delay: Option<Duration>) {
        let Some(out) = self.conn.out.take() else {
            return;
        };
        let _ = out.send(WsMessage::Close(Some(CloseFrame {
            code: CloseCode::Library(4000),
            reason: "reconnecting".into(),
        })));
        if let Some(reader) = self.reader.take() {
            reader.abort();
        }
        self.generation += 1;
        self.disconnected();
        match delay {
            None => self.retry(reason.to_string(), 0),
            Some(delay) => {
                self.conn
                    .set_state(State::Disconnected, Some(reason.to_string()), Some(delay));
                self.later_connect(delay);
            }
        }
    }

    pub(super) fn close(&mut self, reason: &str) {
        if self.closed {
            return;
        }
        self.closed = true;
        if let Some(out) = self.conn.out.take() {
            let _ = out.send(WsMessage::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "closed by the application".into(),
            })));
        }
        if let Some(reader) = self.reader.take() {
            reader.abort();
        }
        self.disconnected();
        for ch in self.channels.values_mut() {
            ch.fail(Error::Closed);
        }
        self.publishes.fail(Error::Closed);
        self.conn.timers.clear();
        self.conn.due.clear();
        self.conn
            .set_state(State::Closed, Some(reason.to_string()), None);
    }
}

/// `url` with `token` as its `token` query parameter, where the stage's authorizer reads it.
pub fn with_token(url: &str, token: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    let mut encoded = String::with_capacity(token.len());
    for b in token.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{url}{separator}token={encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_goes_into_the_query_encoded() {
        assert_eq!(
            with_token("ws://h/dev", "a.b-c_d"),
            "ws://h/dev?token=a.b-c_d"
        );
        assert_eq!(
            with_token("ws://h/dev?x=1", "a+b/c="),
            "ws://h/dev?x=1&token=a%2Bb%2Fc%3D"
        );
    }
}
