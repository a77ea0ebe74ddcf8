//! What only `wsctl dev` can tell a bench. `--virtual N`: subscribers without sockets, added to
//! each channel through its `/_wsctl/virtual`, so a fan-out to 100,000 subscribers can be
//! measured on one machine; the dev server records when each message reached each of them, and
//! the bench matches those arrivals to its publishes by channel and serial. And what the run
//! used of what AWS bills (`/_wsctl/stats`): Lambda requests, GB-seconds and concurrency, API
//! Gateway messages and connection-minutes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};

/// `wsctl dev`'s virtual subscribers of the bench's channels.
pub struct Crowd {
    /// `http://host:port` of the dev gateway.
    base: String,
    pub per_channel: usize,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// One message's arrivals, as the dev server reports them.
#[derive(Debug, Clone, Deserialize)]
pub struct Line {
    pub serial: Option<u64>,
    pub received: u64,
    pub duplicates: u64,
    pub first_us: Option<u64>,
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
    pub last_us: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct Tally {
    #[serde(default)]
    messages: Vec<Line>,
}

/// What the virtual subscribers got, for the report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VirtualDelivery {
    pub per_channel: usize,
    /// Adding them (their items written as the functions write them).
    pub setup_seconds: f64,
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    /// Per publish: sent → its first, median, 99th-percentile and last virtual subscriber.
    pub publishes: Vec<VirtualPublish>,
    /// Why they could not be added, if they could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VirtualPublish {
    pub channel: String,
    pub serial: u64,
    pub received: u64,
    pub first_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub last_ms: Option<f64>,
}

impl Crowd {
    pub fn new(base: &str, per_channel: usize) -> Crowd {
        Crowd {
            base: base.trim_end_matches('/').to_string(),
            per_channel,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn call(&self, method: &str, query: &str) -> Result<Bytes, String> {
        self.request(method, &format!("virtual?{query}")).await
    }

    /// What the dev server metered since the last reset (`/_wsctl/stats`), resetting it when
    /// `reset`.
    pub async fn stats(&self, reset: bool) -> Result<serde_json::Value, String> {
        let path = if reset { "stats?reset=1" } else { "stats" };
        let body = self.request("GET", path).await?;
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    }

    async fn request(&self, method: &str, path: &str) -> Result<Bytes, String> {
        let uri = format!("{}/_wsctl/{path}", self.base);
        let request = hyper::Request::builder()
            .method(method)
            .uri(&uri)
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("{method} {uri}: {e}"))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("{method} {uri}: {e}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| format!("{method} {uri}: {e}"))?;
        if !status.is_success() {
            return Err(format!(
                "{method} {uri}: {status} {}\nhint: this needs `wsctl dev` (--endpoint-url its address)",
                String::from_utf8_lossy(&body)
            ));
        }
        Ok(body)
    }

    /// Adds the subscribers to `channel`.
    pub async fn add(&self, channel: &str) -> Result<(), String> {
        self.call(
            "POST",
            &format!("channel={channel}&count={}", self.per_channel),
        )
        .await
        .map(|_| ())
    }

    /// The arrivals in `channel` so far, by serial.
    pub async fn arrivals(&self, channel: &str) -> Result<HashMap<u64, Line>, String> {
        let body = self.call("GET", &format!("channel={channel}")).await?;
        let tally: Tally = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        Ok(tally
            .messages
            .into_iter()
            .filter_map(|l| Some((l.serial?, l)))
            .collect())
    }

    /// Waits until each of `serials` (per channel) reached every subscriber, or `within` ran
    /// out.
    pub async fn settle(
        &self,
        serials: &[(String, Vec<u64>)],
        within: Duration,
    ) -> Vec<(String, HashMap<u64, Line>)> {
        let until = Instant::now() + within;
        loop {
            let mut all = Vec::new();
            let mut done = true;
            for (channel, wanted) in serials {
                let got = self.arrivals(channel).await.unwrap_or_default();
                done &= wanted.iter().all(|s| {
                    got.get(s)
                        .is_some_and(|l| l.received >= self.per_channel as u64)
                });
                all.push((channel.clone(), got));
            }
            if done || Instant::now() >= until {
                return all;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Removes them and their items.
    pub async fn remove(&self, channel: &str) {
        let _ = self.call("DELETE", &format!("channel={channel}")).await;
    }
}

/// The report's figures: each publish's serial matched to its arrivals; `sent` gives a
/// publish's send time (µs since the epoch) by channel and serial.
pub fn tally(
    per_channel: usize,
    setup_seconds: f64,
    arrivals: &[(String, HashMap<u64, Line>)],
    serials: &[(String, Vec<u64>)],
    sent: impl Fn(&str, u64) -> Option<u64>,
) -> VirtualDelivery {
    let mut out = VirtualDelivery {
        per_channel,
        setup_seconds,
        ..Default::default()
    };
    let ms = |at: Option<u64>, from: Option<u64>| Some(at?.saturating_sub(from?) as f64 / 1000.0);
    for (channel, wanted) in serials {
        let got = arrivals.iter().find(|(c, _)| c == channel).map(|(_, g)| g);
        for &serial in wanted {
            out.expected += per_channel as u64;
            let line = got.and_then(|g| g.get(&serial));
            let received = line.map_or(0, |l| l.received);
            out.delivered += received;
            out.lost += (per_channel as u64).saturating_sub(received);
            out.duplicated += line.map_or(0, |l| l.duplicates);
            let from = sent(channel, serial);
            out.publishes.push(VirtualPublish {
                channel: channel.clone(),
                serial,
                received,
                first_ms: ms(line.and_then(|l| l.first_us), from),
                p50_ms: ms(line.and_then(|l| l.p50_us), from),
                p99_ms: ms(line.and_then(|l| l.p99_us), from),
                last_ms: ms(line.and_then(|l| l.last_us), from),
            });
        }
    }
    out
}
