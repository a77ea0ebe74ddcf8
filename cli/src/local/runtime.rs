//! Functions run as Lambda runs them: the deployed `bootstrap` binary, a pool of processes per
//! function, each process polling the Lambda Runtime API for one event at a time.
//!
//! Every process gets a Runtime API listener of its own, so a request always says which process
//! sent it; a process that crashed or timed out can then be failed and replaced without
//! touching its siblings. Events wait in one queue per function; a new process starts only when
//! an event is queued and no process is free, up to the pool's limit, which bounds memory under
//! any load (a queue, not a process per event).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::{Notify, mpsc, oneshot, watch};

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

struct Job {
    request_id: String,
    payload: Bytes,
    reply: oneshot::Sender<Outcome>,
}

#[derive(Default)]
struct Counts {
    processes: usize,
    /// Processes started but not yet asking for their first event.
    starting: usize,
    /// Processes waiting in `/next`.
    idle: usize,
    /// Events in the queue.
    queued: usize,
}

/// The processes of one function.
pub struct Pool {
    pub def: FunctionDef,
    max: usize,
    queue: mpsc::UnboundedSender<Job>,
    next: tokio::sync::Mutex<mpsc::UnboundedReceiver<Job>>,
    counts: Mutex<Counts>,
    logs: LogSink,
    stop: watch::Receiver<bool>,
    ids: AtomicU64,
}

impl Pool {
    /// A pool with no process yet; `warm` starts one ahead of the first event.
    pub fn new(
        def: FunctionDef,
        max: usize,
        logs: LogSink,
        stop: watch::Receiver<bool>,
    ) -> Arc<Pool> {
        let (queue, rx) = mpsc::unbounded_channel();
        Arc::new(Pool {
            def,
            max: max.max(1),
            queue,
            next: tokio::sync::Mutex::new(rx),
            counts: Mutex::default(),
            logs,
            stop,
            ids: AtomicU64::new(0),
        })
    }

    pub fn warm(self: &Arc<Self>) {
        let mut c = self.counts.lock().unwrap();
        if c.processes == 0 {
            c.processes += 1;
            c.starting += 1;
            tokio::spawn(worker(self.clone()));
        }
    }

    /// Runs one event and waits for its result (a `RequestResponse` invocation).
    pub async fn invoke(self: &Arc<Self>, payload: Bytes) -> Outcome {
        self.submit(payload).await
    }

    /// Queues one event now and returns its result to wait for: events submitted one after
    /// another start in that order, as API Gateway starts a connection's frames in the order
    /// they arrive (the work itself then runs concurrently).
    pub fn submit(
        self: &Arc<Self>,
        payload: Bytes,
    ) -> impl std::future::Future<Output = Outcome> + use<> {
        let (reply, result) = oneshot::channel();
        let n = self.ids.fetch_add(1, Ordering::Relaxed);
        let request_id = super::events::request_id(n);
        self.counts.lock().unwrap().queued += 1;
        let queued = self
            .queue
            .send(Job {
                request_id,
                payload,
                reply,
            })
            .is_ok();
        if queued {
            self.scale();
        }
        async move {
            if !queued {
                return Err(Failure::Stopped);
            }
            result.await.unwrap_or(Err(Failure::Stopped))
        }
    }

    /// Starts processes while events wait and no process is free to take them.
    fn scale(self: &Arc<Self>) {
        let mut c = self.counts.lock().unwrap();
        while c.queued > c.idle + c.starting && c.processes < self.max {
            c.processes += 1;
            c.starting += 1;
            tokio::spawn(worker(self.clone()));
        }
    }

    fn log(&self, line: &str) {
        (self.logs)(&self.def.key, line);
    }
}

/// The event a process is working on.
struct InFlight {
    request_id: String,
    deadline: Instant,
    reply: oneshot::Sender<Outcome>,
}

/// What the Runtime API handlers of one process slot share with its supervisor.
#[derive(Default)]
struct Slot {
    inflight: Mutex<Option<InFlight>>,
    changed: Notify,
    init_error: Mutex<Option<String>>,
    /// Asked for its first event: the process finished its init.
    ready: std::sync::atomic::AtomicBool,
}

/// One process slot: a Runtime API listener and the process behind it, replaced when it dies.
async fn worker(pool: Arc<Pool>) {
    let listener = match TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => {
            pool.log(&format!("cannot open a Runtime API port: {e}"));
            fail_one_queued(
                &pool,
                Failure::Crashed(format!("cannot open a Runtime API port: {e}")),
            );
            let mut c = pool.counts.lock().unwrap();
            c.processes = c.processes.saturating_sub(1);
            c.starting = c.starting.saturating_sub(1);
            return;
        }
    };
    let addr = listener
        .local_addr()
        .expect("bound listener has an address");
    // Each process lifetime is a generation; handlers of a dead process's connections stop
    // waiting for events when the generation moves on.
    let (generation, generations) = watch::channel(0u64);
    let slot = Arc::new(Slot::default());
    tokio::spawn(serve_runtime_api(
        listener,
        pool.clone(),
        slot.clone(),
        generations,
    ));
    let mut stop = pool.stop.clone();
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    loop {
        if !first {
            pool.counts.lock().unwrap().starting += 1;
        }
        first = false;
        slot.ready.store(false, Ordering::SeqCst);
        let started = Instant::now();
        let mut child = match spawn(&pool.def, &addr.to_string()) {
            Ok(c) => c,
            Err(e) => {
                pool.log(&format!(
                    "cannot start {}: {e}",
                    pool.def.bootstrap.display()
                ));
                {
                    let mut c = pool.counts.lock().unwrap();
                    c.starting = c.starting.saturating_sub(1);
                }
                fail_one_queued(
                    &pool,
                    Failure::Crashed(format!("cannot start the bootstrap: {e}")),
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        pipe_logs(&pool, &mut child);
        let failure = loop {
            // Lambda gives init 10 s; after that the environment is replaced.
            let init = (!slot.ready.load(Ordering::SeqCst)).then_some(started + INIT_TIMEOUT);
            let deadline = slot
                .inflight
                .lock()
                .unwrap()
                .as_ref()
                .map(|f| f.deadline)
                .or(init);
            tokio::select! {
                status = child.wait() => {
                    let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                    break Failure::Crashed(status);
                }
                _ = slot.changed.notified() => continue,
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(far).into()), if deadline.is_some() => {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    if !slot.ready.load(Ordering::SeqCst) {
                        *slot.init_error.lock().unwrap() = Some(format!("init did not finish within {} s", INIT_TIMEOUT.as_secs()));
                    }
                    break Failure::TimedOut(pool.def.timeout);
                }
                _ = stop.changed() => {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    if let Some(f) = slot.inflight.lock().unwrap().take() {
                        let _ = f.reply.send(Err(Failure::Stopped));
                    }
                    return;
                }
            }
        };
        let inflight = {
            // Under the in-flight lock, so a `/next` of the dead process cannot hand it an event now.
            let mut guard = slot.inflight.lock().unwrap();
            generation.send_modify(|g| *g += 1);
            guard.take()
        };
        let was_ready = slot.ready.load(Ordering::SeqCst);
        if !was_ready {
            {
                let mut c = pool.counts.lock().unwrap();
                c.starting = c.starting.saturating_sub(1);
            }
        }
        match inflight {
            Some(f) => {
                pool.log(&format!(
                    "request {} failed: {failure}; starting a new process",
                    f.request_id
                ));
                let _ = f.reply.send(Err(failure));
                backoff = Duration::from_millis(100);
            }
            None => {
                // Died between events or during init: Lambda fails the event that was waiting
                // for this environment with the init error.
                let why = slot
                    .init_error
                    .lock()
                    .unwrap()
                    .take()
                    .unwrap_or_else(|| failure.to_string());
                pool.log(&format!("process exited outside an event: {why}"));
                if !was_ready {
                    fail_one_queued(&pool, Failure::Crashed(format!("init failed: {why}")));
                }
                if started.elapsed() < Duration::from_secs(1) {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        if *stop.borrow() {
            return;
        }
    }
}

const INIT_TIMEOUT: Duration = Duration::from_secs(10);

fn far() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365)
}

fn fail_one_queued(pool: &Pool, failure: Failure) {
    if let Ok(mut rx) = pool.next.try_lock()
        && let Ok(job) = rx.try_recv()
    {
        {
            let mut c = pool.counts.lock().unwrap();
            c.queued = c.queued.saturating_sub(1);
        }
        let _ = job.reply.send(Err(failure));
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
    super::own_child(&mut cmd);
    cmd.spawn()
}

fn pipe_logs(pool: &Arc<Pool>, child: &mut Child) {
    fn forward<R: tokio::io::AsyncRead + Unpin + Send + 'static>(pool: Arc<Pool>, r: R) {
        tokio::spawn(async move {
            let mut lines = BufReader::new(r).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                pool.log(&line);
            }
        });
    }
    if let Some(out) = child.stdout.take() {
        forward(pool.clone(), out);
    }
    if let Some(err) = child.stderr.take() {
        forward(pool.clone(), err);
    }
}

async fn serve_runtime_api(
    listener: TcpListener,
    pool: Arc<Pool>,
    slot: Arc<Slot>,
    generations: watch::Receiver<u64>,
) {
    let mut stop = pool.stop.clone();
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
            _ = stop.changed() => return,
        };
        // Without it, keep-alive requests stall ~40 ms on delayed ACKs.
        let _ = stream.set_nodelay(true);
        let generation = *generations.borrow();
        let (pool, slot, generations) = (pool.clone(), slot.clone(), generations.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                runtime_api(
                    req,
                    pool.clone(),
                    slot.clone(),
                    generation,
                    generations.clone(),
                )
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

type Body = Full<Bytes>;

fn reply(status: StatusCode, body: Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r
}

async fn runtime_api(
    req: Request<Incoming>,
    pool: Arc<Pool>,
    slot: Arc<Slot>,
    generation: u64,
    generations: watch::Receiver<u64>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let Some(rest) = path.strip_prefix("/2018-06-01/runtime/") else {
        return Ok(reply(
            StatusCode::NOT_FOUND,
            json!({"errorType": "NotFound", "errorMessage": path}),
        ));
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let method = req.method().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Ok(match (method, parts.as_slice()) {
        (Method::GET, ["invocation", "next"]) => next(&pool, &slot, generation, generations).await,
        (Method::POST, ["invocation", id, "response"]) => finish(&slot, id, Ok(body)),
        (Method::POST, ["invocation", id, "error"]) => {
            let doc: Value = serde_json::from_slice(&body).unwrap_or_default();
            let text = |k: &str| {
                doc.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            finish(
                &slot,
                id,
                Err(Failure::Handled {
                    error_type: text("errorType"),
                    message: text("errorMessage"),
                }),
            )
        }
        (Method::POST, ["init", "error"]) => {
            let doc: Value = serde_json::from_slice(&body).unwrap_or_default();
            let message = doc
                .get("errorMessage")
                .and_then(Value::as_str)
                .unwrap_or("init error")
                .to_string();
            *slot.init_error.lock().unwrap() = Some(message);
            reply(StatusCode::ACCEPTED, json!({"status": "OK"}))
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            json!({"errorType": "NotFound", "errorMessage": path}),
        ),
    })
}

/// `/next`: blocks until an event is queued, then hands it to this process.
async fn next(
    pool: &Arc<Pool>,
    slot: &Slot,
    generation: u64,
    mut generations: watch::Receiver<u64>,
) -> Response<Body> {
    {
        let mut c = pool.counts.lock().unwrap();
        if *generations.borrow() == generation && !slot.ready.swap(true, Ordering::SeqCst) {
            c.starting = c.starting.saturating_sub(1);
            // Init is over: the supervisor drops its init deadline.
            slot.changed.notify_one();
        }
        c.idle += 1;
    }
    // Also undone when hyper drops this handler because the process went away.
    let idle = IdleGuard(pool);
    let dead = async {
        let _ = generations.wait_for(|g| *g != generation).await;
    };
    let job = tokio::select! {
        job = async { pool.next.lock().await.recv().await } => job,
        _ = dead => None,
    };
    drop(idle);
    let Some(job) = job else {
        return reply(
            StatusCode::GONE,
            json!({"errorType": "Gone", "errorMessage": "this process was replaced"}),
        );
    };
    {
        let mut c = pool.counts.lock().unwrap();
        c.queued = c.queued.saturating_sub(1);
    }
    let deadline = Instant::now() + pool.def.timeout;
    let deadline_ms = super::events::epoch_ms() + pool.def.timeout.as_millis() as u64;
    let mut r = Response::new(Full::new(job.payload.clone()));
    let h = r.headers_mut();
    let header = |v: &str| {
        hyper::header::HeaderValue::from_str(v)
            .unwrap_or(hyper::header::HeaderValue::from_static(""))
    };
    h.insert("lambda-runtime-aws-request-id", header(&job.request_id));
    h.insert(
        "lambda-runtime-deadline-ms",
        header(&deadline_ms.to_string()),
    );
    h.insert("lambda-runtime-invoked-function-arn", header(&pool.def.arn));
    h.insert(
        "lambda-runtime-trace-id",
        header(&format!(
            "Root=1-{:08x}-{}",
            deadline_ms / 1000,
            &job.request_id.replace('-', "")[..24]
        )),
    );
    h.insert("content-type", header("application/json"));
    {
        let mut inflight = slot.inflight.lock().unwrap();
        if *generations.borrow() != generation {
            // The process died while this event was being handed over: queue it again.
            drop(inflight);
            pool.counts.lock().unwrap().queued += 1;
            let _ = pool.queue.send(job);
            return reply(
                StatusCode::GONE,
                json!({"errorType": "Gone", "errorMessage": "this process was replaced"}),
            );
        }
        *inflight = Some(InFlight {
            request_id: job.request_id,
            deadline,
            reply: job.reply,
        });
    }
    slot.changed.notify_one();
    r
}

struct IdleGuard<'a>(&'a Pool);

impl Drop for IdleGuard<'_> {
    fn drop(&mut self) {
        let mut c = self.0.counts.lock().unwrap();
        c.idle = c.idle.saturating_sub(1);
    }
}

fn finish(slot: &Slot, id: &str, outcome: Outcome) -> Response<Body> {
    let mut inflight = slot.inflight.lock().unwrap();
    match inflight.take_if(|f| f.request_id == id) {
        Some(f) => {
            drop(inflight);
            let _ = f.reply.send(outcome);
            slot.changed.notify_one();
            reply(StatusCode::ACCEPTED, json!({"status": "OK"}))
        }
        None => reply(
            StatusCode::BAD_REQUEST,
            json!({"errorType": "InvalidRequestID", "errorMessage": format!("request {id} is not in flight on this process")}),
        ),
    }
}
