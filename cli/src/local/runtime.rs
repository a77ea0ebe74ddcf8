//! Functions run as Lambda runs them: the deployed `bootstrap` binary, a pool of processes per
//! function, each process polling the Lambda Runtime API for one event at a time.
//!
//! Every process gets a Runtime API listener of its own, so a request always says which process
//! sent it; a process that crashed or timed out can then be failed and replaced without
//! touching its siblings. Events wait in one queue per function; a new process starts only when
//! an event is queued and no process is free, up to the pool's limit, which bounds memory under
//! any load (a queue, not a process per event).
//!
//! `schedule` decides which process gets which event and what a crash or a timeout costs;
//! `process` supervises one slot's processes; `api` is the Runtime API they call.

mod api;
mod function;
mod process;
mod schedule;
#[cfg(test)]
pub(super) mod tests;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{oneshot, watch};

use crate::local::meter::Running;
use function::Function;
pub use function::{Echo, FunctionDef, LogSink};
pub use schedule::{Failure, Outcome};
use schedule::{Job, Proc};

/// The processes of one function. Clones are the same pool.
#[derive(Clone)]
pub struct Pool(Arc<Function>);

impl Pool {
    /// A pool of at most `max` processes, none started yet.
    pub fn new(def: FunctionDef, max: usize, logs: LogSink, stop: watch::Receiver<bool>) -> Pool {
        Pool(Arc::new(Function::new(def, max, logs, stop)))
    }

    pub fn def(&self) -> &FunctionDef {
        &self.0.def
    }

    /// Bills each invocation on `meter`, with a `REPORT` line in the log when `report`.
    pub fn meter_with(&self, meter: Arc<crate::local::meter::Meter>, report: bool) {
        self.0.metered(meter, report);
    }

    /// Starts a process ahead of the first event, so that event does not wait for an init.
    pub fn warm(&self) {
        let first = self.0.schedule().warm(Instant::now());
        self.start(first);
    }

    /// Queues one event now, under `request_id` (the Lambda request id its process sees), and
    /// returns its outcome to wait for: events submitted one after another start in that
    /// order, as API Gateway starts a connection's frames in the order they arrive.
    pub fn submit(&self, request_id: String, payload: Bytes) -> Answer {
        self.submit_holding(request_id, payload, None)
    }

    /// As [`Pool::submit`], for an event that may already hold its place among the
    /// invocations in flight (taken against the account's concurrency); one without takes it
    /// here. In flight from now until answered: on Lambda it would hold an execution
    /// environment.
    pub fn submit_holding(
        &self,
        request_id: String,
        payload: Bytes,
        running: Option<Running>,
    ) -> Answer {
        let running = running.or_else(|| self.0.meter.get().and_then(|m| m.meter.enter(u64::MAX)));
        let (reply, answer) = oneshot::channel();
        let job = Job {
            request_id,
            payload,
            reply,
        };
        let submitted = self.0.schedule().submit(job, Instant::now());
        match submitted {
            Ok(slots) => {
                self.0.arrived.notify_one();
                self.start(slots);
            }
            Err(job) => job.fail(Failure::Stopped),
        }
        Answer {
            outcome: answer,
            _running: running,
        }
    }

    fn start(&self, slots: impl IntoIterator<Item = Proc>) {
        for p in slots {
            tokio::spawn(process::supervise(self.0.clone(), p));
        }
    }
}

/// The outcome of a submitted event, and its place among the invocations in flight, which
/// it holds until dropped.
pub struct Answer {
    outcome: oneshot::Receiver<Outcome>,
    _running: Option<Running>,
}

impl Future for Answer {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        // A job dropped unanswered was dropped by a pool that is going away.
        Pin::new(&mut self.outcome)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(Failure::Stopped)))
    }
}
