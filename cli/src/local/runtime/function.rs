//! One deployed function as its callers and its processes share it: the definition, the
//! schedule, and the signals that wake whoever waits on the schedule.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::schedule::Schedule;

/// Where a function's log lines go: `(function, line)`.
pub type LogSink = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// A deployed function, as read back from the control plane.
#[derive(Debug, Clone)]
pub struct FunctionDef {
    /// The key in wsctl.yaml, used as the log prefix.
    pub key: String,
    pub arn: String,
    pub bootstrap: PathBuf,
    /// The whole environment of the process: the function's own variables and the runtime's.
    pub env: BTreeMap<String, String>,
    pub timeout: Duration,
}

pub struct Function {
    pub def: FunctionDef,
    schedule: Mutex<Schedule>,
    /// Rung once for each event queued: one `/next` waiting for work takes it.
    pub arrived: Notify,
    /// One a slot, rung when its process's deadline may have moved, for its supervisor.
    rearm: Box<[Notify]>,
    logs: LogSink,
    pub stop: watch::Receiver<bool>,
}

impl Function {
    pub fn new(
        def: FunctionDef,
        cap: usize,
        logs: LogSink,
        stop: watch::Receiver<bool>,
    ) -> Function {
        let cap = cap.max(1);
        Function {
            schedule: Mutex::new(Schedule::new(cap, def.timeout)),
            def,
            arrived: Notify::new(),
            rearm: (0..cap).map(|_| Notify::new()).collect(),
            logs,
            stop,
        }
    }

    /// Held for one call at a time: nothing awaits while holding it.
    pub fn schedule(&self) -> MutexGuard<'_, Schedule> {
        self.schedule.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn rearm(&self, slot: usize) -> &Notify {
        &self.rearm[slot]
    }

    pub fn log(&self, line: &str) {
        (self.logs)(&self.def.key, line);
    }
}
