use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::*;

const TIMEOUT: Duration = Duration::from_secs(3);

fn job(id: &str) -> Job {
    // The receiver is dropped: these tests read what the schedule hands back, not the reply.
    let (reply, _) = oneshot::channel();
    Job {
        request_id: id.into(),
        payload: Bytes::from(format!("{{\"id\":\"{id}\"}}")),
        reply,
    }
}

fn event(id: &str) -> Next {
    Next::Event {
        request_id: id.into(),
        payload: Bytes::from(format!("{{\"id\":\"{id}\"}}")),
    }
}

fn submit(s: &mut Schedule, id: &str, now: Instant) -> Vec<Proc> {
    s.submit(job(id), now)
        .unwrap_or_else(|_| panic!("refused {id}"))
}

#[test]
fn the_pool_grows_to_its_cap_and_no_further() {
    let now = Instant::now();
    let mut s = Schedule::new(2, TIMEOUT);
    let started: Vec<Proc> = (0..5)
        .flat_map(|i| submit(&mut s, &format!("r{i}"), now))
        .collect();
    assert_eq!(started.len(), 2, "two slots for five events: {started:?}");
    assert_ne!(started[0], started[1]);
    assert!(submit(&mut s, "r5", now).is_empty());
}

#[test]
fn a_process_that_is_idle_or_starting_counts_as_free() {
    let now = Instant::now();
    let mut s = Schedule::new(4, TIMEOUT);
    let warm = s.warm(now).expect("a first process");
    assert_eq!(s.warm(now), None, "warm starts one process, once");
    assert!(
        submit(&mut s, "a", now).is_empty(),
        "the starting process takes it"
    );
    let started = submit(&mut s, "b", now);
    assert_eq!(started.len(), 1, "one more waits than start");

    assert_eq!(s.next(warm, now), event("a"));
    assert!(s.answer(warm, "a").is_some());
    // `b` went to a new process; the warm one waits in `/next` and takes `c` as it comes.
    let other = started[0];
    assert_eq!(s.next(other, now), event("b"));
    assert_eq!(s.next(warm, now), Next::Wait);
    assert!(
        submit(&mut s, "c", now).is_empty(),
        "an idle process is free"
    );
    assert_eq!(s.next(warm, now), event("c"));
}

#[test]
fn events_start_in_the_order_they_were_submitted() {
    let now = Instant::now();
    let mut s = Schedule::new(1, TIMEOUT);
    let p = submit(&mut s, "a", now)[0];
    for id in ["b", "c", "d"] {
        assert!(submit(&mut s, id, now).is_empty());
    }
    for id in ["a", "b", "c", "d"] {
        assert_eq!(s.next(p, now), event(id));
        assert_eq!(s.answer(p, id).map(|j| j.request_id), Some(id.to_string()));
    }
    assert_eq!(s.next(p, now), Next::Wait);
}

#[test]
fn an_answer_must_name_the_event_in_hand() {
    let now = Instant::now();
    let mut s = Schedule::new(1, TIMEOUT);
    let p = submit(&mut s, "a", now)[0];
    assert!(s.answer(p, "a").is_none(), "not handed out yet");
    assert_eq!(s.next(p, now), event("a"));
    assert!(s.answer(p, "zzz").is_none());
    assert_eq!(s.next(p, now), event("a"), "asked again: the same event");
    assert!(s.answer(p, "a").is_some());
    assert!(s.answer(p, "a").is_none(), "answered once only");
}

#[test]
fn an_init_error_fails_the_event_that_waited_for_the_process() {
    let now = Instant::now();
    let mut s = Schedule::new(1, TIMEOUT);
    let p = submit(&mut s, "a", now)[0];
    submit(&mut s, "b", now);
    s.init_error(p, "the table name is missing".into());
    match s.down(p, End::Exited("exit status: 1".into())) {
        Exit::Init {
            why,
            failed: Some((job, failure)),
        } => {
            assert_eq!(why, "the table name is missing");
            assert_eq!(job.request_id, "a", "the longest waiting");
            assert_eq!(
                failure,
                Failure::Crashed("init failed: the table name is missing".into())
            );
        }
        other => panic!("{other:?}"),
    }
    // `b` waits for the next process.
    let p = s.restart(p, now);
    assert_eq!(s.next(p, now), event("b"));
}

#[test]
fn an_init_that_dies_silently_or_hangs_is_reported_too() {
    let now = Instant::now();
    let mut s = Schedule::new(1, TIMEOUT);
    let p = submit(&mut s, "a", now)[0];
    match s.down(p, End::Exited("signal: 11".into())) {
        Exit::Init {
            why,
            failed: Some((_, failure)),
        } => {
            assert_eq!(why, "the process crashed (signal: 11)");
            assert_eq!(failure, Failure::Crashed(format!("init failed: {why}")));
        }
        other => panic!("{other:?}"),
    }
    let p = s.restart(p, now);
    submit(&mut s, "b", now);
    assert_eq!(s.deadline(p), Some(now + INIT_TIMEOUT));
    match s.down(p, End::Killed) {
        Exit::Init {
            failed: Some((job, failure)),
            ..
        } => {
            assert_eq!(job.request_id, "b");
            assert_eq!(
                failure,
                Failure::Crashed("init failed: init did not finish within 10 s".into())
            );
        }
        other => panic!("{other:?}"),
    }
    let p = s.restart(p, now);
    submit(&mut s, "c", now);
    match s.down(
        p,
        End::Unstarted("cannot start the bootstrap: denied".into()),
    ) {
        Exit::Init {
            failed: Some((_, failure)),
            ..
        } => assert_eq!(
            failure,
            Failure::Crashed("cannot start the bootstrap: denied".into())
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_crash_fails_its_event_and_frees_the_slot_for_the_next() {
    let now = Instant::now();
    let mut s = Schedule::new(1, TIMEOUT);
    let p = submit(&mut s, "a", now)[0];
    submit(&mut s, "b", now);
    assert_eq!(s.next(p, now), event("a"));
    match s.down(p, End::Exited("exit status: 101".into())) {
        Exit::Event(job, failure) => {
            assert_eq!(job.request_id, "a");
            assert_eq!(failure, Failure::Crashed("exit status: 101".into()));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.next(p, now), Next::Stale, "the dead process gets nothing");
    let fresh = s.restart(p, now);
    assert_eq!(fresh.slot, p.slot);
    assert_eq!(s.next(p, now), Next::Stale, "nor does it once replaced");
    assert!(s.answer(p, "a").is_none());
    assert_eq!(s.next(fresh, now), event("b"));
    assert!(
        submit(&mut s, "c", now).is_empty(),
        "still one slot, at the cap"
    );
}

#[test]
fn an_event_past_its_deadline_times_out() {
    let t0 = Instant::now();
    let mut s = Schedule::new(1, TIMEOUT);
    let p = submit(&mut s, "a", t0)[0];
    assert_eq!(
        s.deadline(p),
        Some(t0 + INIT_TIMEOUT),
        "init has its own limit"
    );
    let t1 = t0 + Duration::from_millis(40);
    assert_eq!(s.next(p, t1), event("a"));
    assert_eq!(
        s.deadline(p),
        Some(t1 + TIMEOUT),
        "from when the event was handed over"
    );
    match s.down(p, End::Killed) {
        Exit::Event(job, failure) => {
            assert_eq!(job.request_id, "a");
            assert_eq!(failure, Failure::TimedOut(TIMEOUT));
        }
        other => panic!("{other:?}"),
    }
    let p = s.restart(p, t1);
    assert_eq!(s.next(p, t1), Next::Wait);
    assert_eq!(s.deadline(p), None, "an idle process has no deadline");
}

#[test]
fn a_process_that_dies_between_events_loses_none() {
    let now = Instant::now();
    let mut s = Schedule::new(1, TIMEOUT);
    let p = s.warm(now).unwrap();
    assert_eq!(s.next(p, now), Next::Wait);
    submit(&mut s, "a", now);
    assert!(matches!(
        s.down(p, End::Exited("exit status: 0".into())),
        Exit::Between { .. }
    ));
    let p = s.restart(p, now);
    assert_eq!(s.next(p, now), event("a"));
}

#[test]
fn stopping_hands_back_every_job_and_refuses_new_ones() {
    let now = Instant::now();
    let mut s = Schedule::new(1, TIMEOUT);
    let p = submit(&mut s, "a", now)[0];
    submit(&mut s, "b", now);
    assert_eq!(s.next(p, now), event("a"));
    let mut held: Vec<String> = s.stop().into_iter().map(|j| j.request_id).collect();
    held.sort();
    assert_eq!(held, ["a", "b"]);
    assert!(s.submit(job("c"), now).is_err());
    assert!(s.stop().is_empty());
}
