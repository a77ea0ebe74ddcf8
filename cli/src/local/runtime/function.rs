//! One deployed function as its callers and its processes share it: the definition, the
//! schedule, and the signals that wake whoever waits on the schedule.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use super::schedule::Schedule;
use crate::local::meter::Meter;

/// A function's billing: where it goes, under which name and memory, and whether each
/// invocation's `REPORT` line is shown on the terminal too.
pub struct Metering {
    pub meter: Arc<Meter>,
    report: bool,
    name: String,
    memory_mb: u64,
}

/// Where a function's log lines go: `(function, line, echo)`.
pub type LogSink = Arc<dyn Fn(&str, &str, Echo) + Send + Sync>;

/// Whether a line is shown on `wsctl dev`'s terminal as well as kept in the function's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    Terminal,
    /// The lines Lambda's platform writes around each invocation (`START`, `END`): in the
    /// log, as on AWS, but they would drown the function's own lines on the terminal.
    LogOnly,
}

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
    /// Where each invocation's billed duration goes.
    pub meter: OnceLock<Metering>,
    /// When each event in flight was handed to its process.
    pub started: Mutex<HashMap<String, Instant>>,
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
            meter: OnceLock::new(),
            started: Mutex::default(),
        }
    }

    /// Bills each invocation on `meter`; its `REPORT` line is shown on the terminal when
    /// `report`.
    pub fn metered(&self, meter: Arc<Meter>, report: bool) {
        let env = &self.def.env;
        let _ = self.meter.set(Metering {
            meter,
            report,
            name: env
                .get("AWS_LAMBDA_FUNCTION_NAME")
                .cloned()
                .unwrap_or_else(|| self.def.key.clone()),
            memory_mb: env
                .get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
                .and_then(|m| m.parse().ok())
                .unwrap_or(128),
        });
    }

    /// Event `id` was handed to its process.
    pub fn began(&self, id: &str) {
        self.log_as(
            &format!("START RequestId: {id} Version: $LATEST"),
            Echo::LogOnly,
        );
        if self.meter.get().is_some() {
            self.started
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id.to_string(), Instant::now());
        }
    }

    /// Event `id` was answered: billed as Lambda bills it. Returns Lambda's `END` and `REPORT`
    /// lines, for the log after what the process wrote while it ran.
    pub fn ended(&self, id: &str) -> Vec<(String, Echo)> {
        let Some(m) = self.meter.get() else {
            return Vec::new();
        };
        let Some(at) = self
            .started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)
        else {
            return Vec::new();
        };
        let ran = at.elapsed();
        m.meter.bill(&m.name, m.memory_mb, ran);
        vec![
            (format!("END RequestId: {id}"), Echo::LogOnly),
            (
                format!(
                    "REPORT RequestId: {id}\tDuration: {:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB",
                    ran.as_secs_f64() * 1000.0,
                    (ran.as_micros() as u64).div_ceil(1000).max(1),
                    m.memory_mb
                ),
                match m.report {
                    true => Echo::Terminal,
                    false => Echo::LogOnly,
                },
            ),
        ]
    }

    /// Event `id` was answered with an error: counted as Lambda's `Errors`.
    pub fn failed(&self) {
        if let Some(m) = self.meter.get() {
            m.meter.failed(&m.name);
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
        self.log_as(line, Echo::Terminal);
    }

    /// A line the function's process wrote: its metrics (embedded metric format, one JSON
    /// document an invocation) go to the log only, as they would crowd the terminal.
    pub fn output(&self, line: &str) {
        let metrics = line.contains("\"_aws\":{") && line.contains("\"CloudWatchMetrics\"");
        let echo = match metrics {
            true => Echo::LogOnly,
            false => Echo::Terminal,
        };
        self.log_as(line, echo);
    }

    pub fn log_as(&self, line: &str, echo: Echo) {
        (self.logs)(&self.def.key, line, echo);
    }
}
