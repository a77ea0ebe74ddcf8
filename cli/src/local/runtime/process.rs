//! A slot's supervisor: starts the bootstrap as Lambda starts it, with a Runtime API of its
//! own, kills it at its deadline, tells the schedule how it ended, and starts the next one.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::api;
use super::function::{Echo, Function, FunctionDef};
use super::schedule::{End, Exit, Failure, Proc};
use crate::local::os::own_child;

/// Runs processes in slot `p` until wsctl dev stops.
pub async fn supervise(f: Arc<Function>, mut p: Proc) {
    let mut stop = f.stop.clone();
    let mut backoff = Duration::from_millis(100);
    loop {
        let started = Instant::now();
        let Some(end) = life(&f, p, &mut stop).await else {
            break;
        };
        let unstarted = matches!(end, End::Unstarted(_));
        let exit = f.schedule().down(p, end);
        let pause = match exit {
            Exit::Event(job, failure) => {
                f.log(&format!(
                    "request {} failed: {failure}; starting a new process",
                    job.request_id
                ));
                job.fail(failure);
                backoff = Duration::from_millis(100);
                false
            }
            Exit::Init { why, failed } => {
                if !unstarted {
                    f.log(&format!("process exited outside an event: {why}"));
                }
                if let Some((job, failure)) = failed {
                    job.fail(failure);
                }
                unstarted || started.elapsed() < Duration::from_secs(1)
            }
            Exit::Between { why } => {
                f.log(&format!("process exited outside an event: {why}"));
                started.elapsed() < Duration::from_secs(1)
            }
        };
        // A bootstrap that cannot start or dies at once would otherwise spin.
        if pause {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        if *stop.borrow() {
            break;
        }
        p = f.schedule().restart(p, Instant::now());
    }
    let held = f.schedule().stop();
    for job in held {
        job.fail(Failure::Stopped);
    }
}

/// One process from start to end; `None` when wsctl dev is stopping.
async fn life(f: &Arc<Function>, p: Proc, stop: &mut watch::Receiver<bool>) -> Option<End> {
    if *stop.borrow() {
        return None;
    }
    let listener = match TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => {
            let why = format!("cannot open a Runtime API port: {e}");
            f.log(&why);
            return Some(End::Unstarted(why));
        }
    };
    let addr = listener
        .local_addr()
        .expect("bound listener has an address");
    // Aborted when this returns, so a dead process's `/next` cannot take an event.
    let mut runtime_api = JoinSet::new();
    let (ends, ended) = tokio::sync::mpsc::unbounded_channel();
    runtime_api.spawn(api::serve(listener, f.clone(), p, ends));
    let mut child = match spawn(&f.def, &addr.to_string()) {
        Ok(c) => c,
        Err(e) => {
            f.log(&format!("cannot start {}: {e}", f.def.bootstrap.display()));
            return Some(End::Unstarted(format!("cannot start the bootstrap: {e}")));
        }
    };
    pipe_logs(f, &mut child, ended);
    loop {
        let deadline = f.schedule().deadline(p);
        tokio::select! {
            status = child.wait() => {
                let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                return Some(End::Exited(status));
            }
            _ = f.rearm(p.slot).notified() => {}
            _ = until(deadline) => {
                // The event may have been answered while the timer fired.
                if f.schedule().deadline(p).is_some_and(|d| d <= Instant::now()) {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    return Some(End::Killed);
                }
            }
            _ = stop.changed() => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return None;
            }
        }
    }
}

async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// The bootstrap in a clean environment, as Lambda starts it; it dies with this process.
fn spawn(def: &FunctionDef, runtime_api: &str) -> std::io::Result<Child> {
    let mut cmd = Command::new(&def.bootstrap);
    cmd.env_clear()
        .envs(&def.env)
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
        .current_dir(def.bootstrap.parent().unwrap_or(std::path::Path::new("/")))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    own_child(&mut cmd);
    cmd.spawn()
}

/// The process's output into the function's log, each answered event's `END` and `REPORT`
/// after the lines the process wrote before answering: they are in the pipe by then, so they
/// are read first, as Lambda's log has them.
fn pipe_logs(
    f: &Arc<Function>,
    child: &mut Child,
    mut ended: UnboundedReceiver<Vec<(String, Echo)>>,
) {
    if let Some(out) = child.stdout.take() {
        let f = f.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            loop {
                tokio::select! {
                    biased;
                    line = lines.next_line() => match line {
                        Ok(Some(line)) => f.output(&line),
                        _ => break,
                    },
                    Some(end) = ended.recv() => {
                        // `next_line` is cancel-safe: a line cut short is kept for the next call.
                        while let Some(Ok(Some(line))) = lines.next_line().now_or_never() {
                            f.output(&line);
                        }
                        for (line, echo) in end {
                            f.log_as(&line, echo);
                        }
                    }
                }
            }
            ended.close();
            while let Ok(end) = ended.try_recv() {
                for (line, echo) in end {
                    f.log_as(&line, echo);
                }
            }
        });
    }
    if let Some(err) = child.stderr.take() {
        let f = f.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(err).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                f.output(&line);
            }
        });
    }
}
