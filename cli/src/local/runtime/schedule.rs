//! Which process gets which event, as bookkeeping alone: no tasks, no I/O and no clock of its
//! own (the time comes in as an argument), so every rule of a pool can be tested by calling it.
//!
//! A pool has at most `cap` slots, each running one process at a time. Events wait in one FIFO
//! queue; a slot is added only while more events wait than processes are idle or starting.
//! Counts are never kept: they are read off the slots' states, so they cannot drift.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// Lambda gives init 10 s; after that the environment is replaced.
pub const INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an invocation produced no result.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The handler returned an error (`/invocation/{id}/error`).
    Handled { error_type: String, message: String },
    /// The process exited while handling the event, or before it was ready for one.
    Crashed(String),
    /// The event ran past the function's timeout; the process was killed.
    TimedOut(Duration),
    /// The pool is shutting down.
    Stopped,
}

impl Failure {
    /// The error document Lambda returns to a synchronous caller.
    pub fn payload(&self) -> Value {
        match self {
            Failure::Handled {
                error_type,
                message,
            } => json!({"errorType": error_type, "errorMessage": message}),
            Failure::Crashed(why) => json!({"errorType": "Runtime.ExitError", "errorMessage": why}),
            Failure::TimedOut(t) => {
                json!({"errorType": "Sandbox.Timedout", "errorMessage": format!("Task timed out after {:.2} seconds", t.as_secs_f64())})
            }
            Failure::Stopped => {
                json!({"errorType": "Runtime.Stopped", "errorMessage": "wsctl dev is stopping"})
            }
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Handled {
                error_type,
                message,
            } => write!(f, "{error_type}: {message}"),
            Failure::Crashed(why) => write!(f, "the process crashed ({why})"),
            Failure::TimedOut(t) => write!(f, "timed out after {} s", t.as_secs_f64()),
            Failure::Stopped => write!(f, "stopped"),
        }
    }
}

pub type Outcome = Result<Bytes, Failure>;

/// One invocation; its caller waits on `reply`.
#[derive(Debug)]
pub struct Job {
    pub request_id: String,
    pub payload: Bytes,
    pub reply: oneshot::Sender<Outcome>,
}

impl Job {
    pub fn fail(self, failure: Failure) {
        // The caller may have stopped waiting (a gateway timeout); nobody is left to tell.
        let _ = self.reply.send(Err(failure));
    }
}

/// One process in one slot. `life` counts the processes the slot has run, so a late call from a
/// replaced process is told from its successor's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proc {
    pub slot: usize,
    life: u32,
}

enum State {
    /// Running its init; it has not asked for an event yet.
    Init {
        since: Instant,
        error: Option<String>,
    },
    /// Asking for an event (`/next`); none waits.
    Idle,
    /// Working on `job` until `deadline`.
    Busy { job: Job, deadline: Instant },
    /// Answered its event and not yet asking for the next.
    Answered,
    /// Gone; its supervisor starts the next process in the slot.
    Down,
}

struct Slot {
    life: u32,
    state: State,
}

/// What a process's `/next` gets.
#[derive(Debug, PartialEq)]
pub enum Next {
    Event {
        request_id: String,
        payload: Bytes,
    },
    /// Nothing queued: wait until an event arrives.
    Wait,
    /// The process was replaced; its calls no longer count.
    Stale,
}

/// How a process ended, as far as its callers are concerned.
#[derive(Debug)]
pub enum Exit {
    /// It died with an event in hand, which fails with it.
    Event(Job, Failure),
    /// It died in init; as on Lambda, the event waiting longest fails with the init error.
    Init {
        why: String,
        failed: Option<(Job, Failure)>,
    },
    /// It died between events: no event is lost.
    Between { why: String },
}

/// What a supervisor saw of its process's end.
#[derive(Debug, Clone)]
pub enum End {
    /// The process exited (its status).
    Exited(String),
    /// It outran its deadline and was killed.
    Killed,
    /// It could not be started at all.
    Unstarted(String),
}

pub struct Schedule {
    cap: usize,
    timeout: Duration,
    slots: Vec<Slot>,
    queue: VecDeque<Job>,
    stopped: bool,
}

impl Schedule {
    /// `timeout` is the function's: how long a process may work on one event.
    pub fn new(cap: usize, timeout: Duration) -> Schedule {
        Schedule {
            cap: cap.max(1),
            timeout,
            slots: Vec::new(),
            queue: VecDeque::new(),
            stopped: false,
        }
    }

    /// A first process ahead of the first event, so it does not wait for an init.
    pub fn warm(&mut self, now: Instant) -> Option<Proc> {
        (self.slots.is_empty() && !self.stopped).then(|| self.add_slot(now))
    }

    /// Queues `job`; returns the slots to start for it, or the job itself once stopped.
    pub fn submit(&mut self, job: Job, now: Instant) -> Result<Vec<Proc>, Job> {
        if self.stopped {
            return Err(job);
        }
        self.queue.push_back(job);
        let mut started = Vec::new();
        while self.queue.len() > self.count(|s| matches!(s, State::Idle | State::Init { .. }))
            && self.slots.len() < self.cap
        {
            started.push(self.add_slot(now));
        }
        Ok(started)
    }

    /// A process asks for its next event (`/next`); the first ask ends its init.
    pub fn next(&mut self, p: Proc, now: Instant) -> Next {
        let timeout = self.timeout;
        let Some(slot) = self.live(p) else {
            return Next::Stale;
        };
        match &slot.state {
            State::Down => return Next::Stale,
            // Asked again without answering: the same event, as an HTTP retry would need.
            State::Busy { job, .. } => {
                return Next::Event {
                    request_id: job.request_id.clone(),
                    payload: job.payload.clone(),
                };
            }
            State::Init { .. } | State::Idle | State::Answered => {}
        }
        let Some(job) = self.queue.pop_front() else {
            self.slot_mut(p).state = State::Idle;
            return Next::Wait;
        };
        let next = Next::Event {
            request_id: job.request_id.clone(),
            payload: job.payload.clone(),
        };
        self.slot_mut(p).state = State::Busy {
            job,
            deadline: now + timeout,
        };
        next
    }

    /// The process answers `request_id` (`/response` or `/error`): the job to reply to, if that
    /// is the event it holds.
    pub fn answer(&mut self, p: Proc, request_id: &str) -> Option<Job> {
        let slot = self.live(p)?;
        if !matches!(&slot.state, State::Busy { job, .. } if job.request_id == request_id) {
            return None;
        }
        match std::mem::replace(&mut slot.state, State::Answered) {
            State::Busy { job, .. } => Some(job),
            _ => unreachable!("checked above"),
        }
    }

    /// `/init/error`: what the first waiting event fails with when this process dies.
    pub fn init_error(&mut self, p: Proc, message: String) {
        if let Some(Slot {
            state: State::Init { error, .. },
            ..
        }) = self.live(p)
        {
            *error = Some(message);
        }
    }

    /// When the process must be killed: the end of its init, or of its event.
    pub fn deadline(&self, p: Proc) -> Option<Instant> {
        let slot = self.slots.get(p.slot).filter(|s| s.life == p.life)?;
        match &slot.state {
            State::Init { since, .. } => Some(*since + INIT_TIMEOUT),
            State::Busy { deadline, .. } => Some(*deadline),
            _ => None,
        }
    }

    /// The process has ended (`end` says how); the slot is down until `restart`.
    pub fn down(&mut self, p: Proc, end: End) -> Exit {
        let timeout = self.timeout;
        let Some(slot) = self.live(p) else {
            return Exit::Between {
                why: "replaced already".into(),
            };
        };
        let failure = match &end {
            End::Exited(status) => Failure::Crashed(status.clone()),
            End::Killed => Failure::TimedOut(timeout),
            End::Unstarted(why) => Failure::Crashed(why.clone()),
        };
        match std::mem::replace(&mut slot.state, State::Down) {
            State::Busy { job, .. } => Exit::Event(job, failure),
            State::Init { error, .. } => {
                let (why, failure) = match end {
                    End::Unstarted(why) => (why.clone(), Failure::Crashed(why)),
                    End::Killed => {
                        let why =
                            format!("init did not finish within {} s", INIT_TIMEOUT.as_secs());
                        (why.clone(), Failure::Crashed(format!("init failed: {why}")))
                    }
                    End::Exited(_) => {
                        let why = error.unwrap_or_else(|| failure.to_string());
                        (why.clone(), Failure::Crashed(format!("init failed: {why}")))
                    }
                };
                let failed = self.queue.pop_front().map(|job| (job, failure));
                Exit::Init { why, failed }
            }
            State::Idle | State::Answered | State::Down => Exit::Between {
                why: failure.to_string(),
            },
        }
    }

    /// The next process of a slot that is down begins its init.
    pub fn restart(&mut self, p: Proc, now: Instant) -> Proc {
        let slot = &mut self.slots[p.slot];
        debug_assert!(matches!(slot.state, State::Down), "restart of a live slot");
        slot.life += 1;
        slot.state = State::Init {
            since: now,
            error: None,
        };
        Proc {
            slot: p.slot,
            life: slot.life,
        }
    }

    /// No more events: every job still held is handed back, to be failed.
    pub fn stop(&mut self) -> Vec<Job> {
        self.stopped = true;
        let mut jobs: Vec<Job> = self.queue.drain(..).collect();
        for slot in &mut self.slots {
            if let State::Busy { job, .. } = std::mem::replace(&mut slot.state, State::Down) {
                jobs.push(job);
            }
        }
        jobs
    }

    fn add_slot(&mut self, now: Instant) -> Proc {
        debug_assert!(self.slots.len() < self.cap, "a slot over the cap");
        self.slots.push(Slot {
            life: 0,
            state: State::Init {
                since: now,
                error: None,
            },
        });
        Proc {
            slot: self.slots.len() - 1,
            life: 0,
        }
    }

    fn count(&self, f: impl Fn(&State) -> bool) -> usize {
        self.slots.iter().filter(|s| f(&s.state)).count()
    }

    fn live(&mut self, p: Proc) -> Option<&mut Slot> {
        self.slots.get_mut(p.slot).filter(|s| s.life == p.life)
    }

    fn slot_mut(&mut self, p: Proc) -> &mut Slot {
        &mut self.slots[p.slot]
    }
}

#[cfg(test)]
mod tests;
