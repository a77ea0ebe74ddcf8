//! Parameter Store's throughput, which moto does not limit: "Standard throughput: 40
//! transactions per second" for GetParameter, GetParameters and GetParametersByPath together,
//! per account and region ("AWS Systems Manager endpoints and quotas"; "Changing Parameter
//! Store throughput"); above it SSM answers `ThrottlingException: Rate exceeded`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::proxy::{Behaviour, Call, Exchange, Reply};

/// A token bucket over the account's parameter reads: `per_second` a second, as many at once.
pub struct ParameterThroughput {
    per_second: f64,
    bucket: Mutex<(f64, Instant)>,
    refused: AtomicUsize,
    served: AtomicUsize,
}

impl ParameterThroughput {
    pub fn per_second(per_second: u32) -> ParameterThroughput {
        ParameterThroughput {
            per_second: f64::from(per_second),
            bucket: Mutex::new((f64::from(per_second), Instant::now())),
            refused: AtomicUsize::new(0),
            served: AtomicUsize::new(0),
        }
    }

    /// Reads refused with `ThrottlingException`.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    /// Reads let through.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
}

impl Behaviour for ParameterThroughput {
    fn answer(&self, call: &Call, _req: &Exchange) -> Option<Reply> {
        if call.service != "ssm"
            || !matches!(
                call.operation.as_str(),
                "GetParameter" | "GetParameters" | "GetParametersByPath"
            )
        {
            return None;
        }
        let mut bucket = self.bucket.lock().unwrap();
        let (tokens, at) = &mut *bucket;
        *tokens = (*tokens + at.elapsed().as_secs_f64() * self.per_second).min(self.per_second);
        *at = Instant::now();
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            self.served.fetch_add(1, Ordering::SeqCst);
            return None;
        }
        self.refused.fetch_add(1, Ordering::SeqCst);
        Some(Reply::error(400, "ThrottlingException", "Rate exceeded"))
    }
}

/// Changes that meet another change of the same thing: SSM answers PutParameter with
/// `TooManyUpdates` ("There are concurrent updates for a resource that supports one update at
/// a time", API reference, PutParameter) and IAM a change with 409 `ConcurrentModification`
/// ("multiple requests to change this object were submitted simultaneously", IAM API
/// reference, Common errors). The first PutParameter and the first PutRolePolicy are refused.
#[derive(Default)]
pub struct ConcurrentUpdates {
    refused: Mutex<Vec<String>>,
}

impl ConcurrentUpdates {
    /// The operations refused so far.
    pub fn refused(&self) -> Vec<String> {
        self.refused.lock().unwrap().clone()
    }
}

impl Behaviour for ConcurrentUpdates {
    fn answer(&self, call: &Call, _req: &Exchange) -> Option<Reply> {
        let reply = match (call.service.as_str(), call.operation.as_str()) {
            ("ssm", "PutParameter") => Reply::error(
                400,
                "TooManyUpdates",
                "There are concurrent updates for a resource that supports one update at a time.",
            ),
            ("iam", "PutRolePolicy") => Reply::xml_error(
                409,
                "ConcurrentModification",
                "Rate exceeded: multiple requests to change this object were submitted simultaneously",
            ),
            _ => return None,
        };
        let mut refused = self.refused.lock().unwrap();
        if refused.contains(&call.operation) {
            return None;
        }
        refused.push(call.operation.clone());
        Some(reply)
    }
}
