//! The Lambda Runtime API of one process (`AWS_LAMBDA_RUNTIME_API`): `/next` hands it the
//! oldest waiting event, `/response` and `/error` answer it, `/init/error` reports a failed
//! init. Each process has a listener of its own, so every call says which process made it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::function::{Echo, Function};
use super::schedule::{Failure, Next, Outcome, Proc};
use crate::local::events;
use crate::local::http::{Body, collect, respond};

/// Where an answered event's `END` and `REPORT` lines go: to the reader of the process's
/// output, which logs them after what the process wrote before answering.
pub type Ends = mpsc::UnboundedSender<Vec<(String, Echo)>>;

/// Serves process `p` until this task is aborted, which ends its connections with it.
pub async fn serve(listener: TcpListener, f: Arc<Function>, p: Proc, ends: Ends) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        // Without it, keep-alive requests stall ~40 ms on delayed ACKs.
        let _ = stream.set_nodelay(true);
        let f = f.clone();
        let ends = ends.clone();
        connections.spawn(async move {
            let service =
                hyper::service::service_fn(move |req| handle(req, f.clone(), p, ends.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        while connections.try_join_next().is_some() {}
    }
}

fn reply(status: StatusCode, body: Value) -> Response<Body> {
    respond(status, body.to_string())
}

fn not_found(path: &str) -> Response<Body> {
    reply(
        StatusCode::NOT_FOUND,
        json!({"errorType": "NotFound", "errorMessage": path}),
    )
}

async fn handle(
    req: Request<Incoming>,
    f: Arc<Function>,
    p: Proc,
    ends: Ends,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let Some(rest) = path.strip_prefix("/2018-06-01/runtime/") else {
        return Ok(not_found(&path));
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let method = req.method().clone();
    let body = collect(req.into_body()).await;
    let text = |doc: &Value, k: &str| doc.get(k).and_then(Value::as_str).map(str::to_string);
    Ok(match (method, parts.as_slice()) {
        (Method::GET, ["invocation", "next"]) => next(&f, p).await,
        (Method::POST, ["invocation", id, "response"]) => answer(&f, p, id, Ok(body), &ends),
        (Method::POST, ["invocation", id, "error"]) => {
            let doc: Value = serde_json::from_slice(&body).unwrap_or_default();
            let failure = Failure::Handled {
                error_type: text(&doc, "errorType").unwrap_or_default(),
                message: text(&doc, "errorMessage").unwrap_or_default(),
            };
            answer(&f, p, id, Err(failure), &ends)
        }
        (Method::POST, ["init", "error"]) => {
            let doc: Value = serde_json::from_slice(&body).unwrap_or_default();
            let message = text(&doc, "errorMessage").unwrap_or_else(|| "init error".into());
            f.schedule().init_error(p, message);
            reply(StatusCode::ACCEPTED, json!({"status": "OK"}))
        }
        _ => not_found(&path),
    })
}

/// `/next`: waits until an event is queued, then hands it to this process.
async fn next(f: &Function, p: Proc) -> Response<Body> {
    let (request_id, payload) = loop {
        let arrived = f.arrived.notified();
        tokio::pin!(arrived);
        // A waiter before it looks, so an event queued in between still wakes it.
        arrived.as_mut().enable();
        let next = f.schedule().next(p, Instant::now());
        // Init is over, or an event now has a deadline: the supervisor looks again.
        f.rearm(p.slot).notify_one();
        match next {
            Next::Event {
                request_id,
                payload,
            } => {
                f.began(&request_id);
                break (request_id, payload);
            }
            Next::Wait => arrived.await,
            Next::Stale => {
                // A wake-up this replaced process cannot use goes on to one that can.
                f.arrived.notify_one();
                return reply(
                    StatusCode::GONE,
                    json!({"errorType": "Gone", "errorMessage": "this process was replaced"}),
                );
            }
        }
    };
    let deadline_ms = events::epoch_ms() + f.def.timeout.as_millis() as u64;
    let trace: String = request_id.chars().filter(|c| *c != '-').take(24).collect();
    let mut r = respond(StatusCode::OK, payload);
    let h = r.headers_mut();
    let header = |v: &str| HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static(""));
    h.insert("lambda-runtime-aws-request-id", header(&request_id));
    h.insert(
        "lambda-runtime-deadline-ms",
        header(&deadline_ms.to_string()),
    );
    h.insert("lambda-runtime-invoked-function-arn", header(&f.def.arn));
    h.insert(
        "lambda-runtime-trace-id",
        header(&format!("Root=1-{:08x}-{trace}", deadline_ms / 1000)),
    );
    h.insert("content-type", header("application/json"));
    r
}

/// `/response` or `/error` for event `id`.
fn answer(f: &Function, p: Proc, id: &str, outcome: Outcome, ends: &Ends) -> Response<Body> {
    let job = f.schedule().answer(p, id);
    let Some(job) = job else {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"errorType": "InvalidRequestID", "errorMessage": format!("request {id} is not in flight on this process")}),
        );
    };
    if outcome.is_err() {
        f.failed();
    }
    if let Err(unread) = ends.send(f.ended(id)) {
        for (line, echo) in unread.0 {
            f.log_as(&line, echo);
        }
    }
    let _ = job.reply.send(outcome);
    // Its supervisor must stop timing the event.
    f.rearm(p.slot).notify_one();
    reply(StatusCode::ACCEPTED, json!({"status": "OK"}))
}
