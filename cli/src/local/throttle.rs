//! The stage's throttle, as API Gateway applies it to a WebSocket API: one token bucket for
//! every frame of every client (`ThrottlingRateLimit`, `ThrottlingBurstLimit` of the stage's
//! default route settings). A frame over it is answered "Too Many Requests" and never reaches
//! a function ("Protect your WebSocket APIs in API Gateway": requests over the rate and burst
//! get 429 Too Many Requests). One client's flood therefore costs every other client its
//! share, as on AWS: what the functions' per-client limits and flood closing are for.

use std::sync::Mutex;
use std::time::Instant;

pub struct Throttle {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl Throttle {
    /// `None` when the stage sets no positive rate (API Gateway then applies the account's).
    pub fn new(rate: f64, burst: i32) -> Option<Throttle> {
        (rate > 0.0 && burst > 0).then(|| Throttle {
            rate,
            burst: f64::from(burst),
            state: Mutex::new((f64::from(burst), Instant::now())),
        })
    }

    /// Takes one request's token: false when the bucket is empty.
    pub fn take(&self) -> bool {
        let mut state = self.state.lock().unwrap();
        let (tokens, at) = *state;
        let now = Instant::now();
        let tokens = (tokens + now.duration_since(at).as_secs_f64() * self.rate).min(self.burst);
        let (left, taken) = if tokens >= 1.0 {
            (tokens - 1.0, true)
        } else {
            (tokens, false)
        };
        *state = (left, now);
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let t = Throttle::new(1.0, 3).unwrap();
        assert!((0..3).all(|_| t.take()));
        assert!(!t.take(), "the burst is spent");
        assert!(Throttle::new(0.0, 10).is_none());
    }
}
