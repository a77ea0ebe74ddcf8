//! The pool against a real process: a shell script that speaks the Runtime API with curl and
//! does what each event asks (fail, crash, hang, or answer with the request id it was given
//! and the event itself), or fails its init.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::{Failure, FunctionDef, Outcome, Pool};
use crate::local::events;

const BOOTSTRAP: &str = r#"#!/bin/sh
api="http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime"
if [ "$MODE" = init-error ]; then
  curl -sf -X POST -d '{"errorType":"Runtime.Init","errorMessage":"no table name"}' "$api/init/error"
  exit 1
fi
headers="$(mktemp)"
while :; do
  event="$(curl -sf -D "$headers" "$api/invocation/next")" || exit 2
  id="$(grep -i '^lambda-runtime-aws-request-id:' "$headers" | cut -d' ' -f2 | tr -d '\r')"
  echo "handling $id"
  case "$event" in
    *'"do":"crash"'*) exit 3 ;;
    *'"do":"hang"'*) exec sleep 30 ;;
    *'"do":"fail"'*) body='{"errorType":"Oops","errorMessage":"handled"}'; kind=error ;;
    *) body="{\"id\":\"$id\",\"pid\":$$,\"event\":$event}"; kind=response ;;
  esac
  curl -sf -X POST -d "$body" "$api/invocation/$id/$kind" >/dev/null
done
"#;

/// Written once, before any test starts a process: a script still open for writing while
/// another thread forks cannot be executed (ETXTBSY).
fn bootstrap() -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("bootstrap");
        std::fs::write(&path, BOOTSTRAP).expect("write the bootstrap");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .expect("make it executable");
        }
        dir
    });
    dir.path().join("bootstrap")
}

pub struct Rig {
    pub pool: Pool,
    logs: Arc<Mutex<Vec<String>>>,
    // Dropping it stops the pool, whose processes die with it.
    _stop: watch::Sender<bool>,
}

/// A pool of at most `max` processes of the script; `mode` `init-error` makes every init fail.
pub fn rig(mode: &str, timeout: Duration, max: usize) -> Rig {
    let env: BTreeMap<String, String> = [("PATH", "/usr/bin:/bin"), ("MODE", mode)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let def = FunctionDef {
        key: "script".into(),
        arn: "arn:aws:lambda:us-east-1:123456789012:function:script".into(),
        bootstrap: bootstrap(),
        env,
        timeout,
    };
    let logs = Arc::new(Mutex::new(Vec::new()));
    let sink = logs.clone();
    let (stop, stopped) = watch::channel(false);
    let pool = Pool::new(
        def,
        max,
        Arc::new(move |_: &str, line: &str, echo| {
            if echo == super::Echo::Terminal {
                sink.lock().unwrap().push(line.to_string())
            }
        }),
        stopped,
    );
    Rig {
        pool,
        logs,
        _stop: stop,
    }
}

impl Rig {
    async fn invoke(&self, event: Value) -> (String, Outcome) {
        let id = events::request_id();
        let outcome = tokio::time::timeout(
            Duration::from_secs(30),
            self.pool.submit(id.clone(), Bytes::from(event.to_string())),
        )
        .await
        .expect("an outcome within 30 s");
        (id, outcome)
    }

    /// A process's output arrives through a pipe, on its own time.
    async fn wait_log(&self, needle: &str) {
        for _ in 0..100 {
            if self.logs.lock().unwrap().iter().any(|l| l.contains(needle)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no {needle:?} in {:?}", self.logs.lock().unwrap());
    }

    /// The pid of the process that answered, after checking it answered under `id`.
    async fn echo(&self) -> u64 {
        let (id, outcome) = self.invoke(json!({"do": "echo"})).await;
        let body: Value = serde_json::from_slice(&outcome.expect("an answer")).unwrap();
        assert_eq!(
            body["id"],
            json!(id),
            "the process saw the caller's request id"
        );
        body["pid"].as_u64().expect("a pid")
    }
}

#[tokio::test]
async fn events_reach_the_process_under_the_callers_request_id() {
    let rig = rig("ok", Duration::from_secs(5), 1);
    let first = rig.echo().await;
    assert_eq!(
        rig.echo().await,
        first,
        "a warm process serves the next event"
    );
    let (id, outcome) = rig.invoke(json!({"do": "fail"})).await;
    assert_eq!(
        outcome,
        Err(Failure::Handled {
            error_type: "Oops".into(),
            message: "handled".into()
        })
    );
    rig.wait_log(&format!("handling {id}")).await;
}

#[tokio::test]
async fn a_crash_fails_its_event_and_a_new_process_takes_the_next() {
    let rig = rig("ok", Duration::from_secs(5), 1);
    let before = rig.echo().await;
    let (id, outcome) = rig.invoke(json!({"do": "crash"})).await;
    assert_eq!(outcome, Err(Failure::Crashed("exit status: 3".into())));
    assert_ne!(rig.echo().await, before, "the crashed process was replaced");
    let logs = rig.logs.lock().unwrap().join("\n");
    assert!(logs.contains(&format!("request {id} failed")), "{logs}");
}

#[tokio::test]
async fn an_event_past_its_timeout_fails_and_its_process_is_replaced() {
    let timeout = Duration::from_secs(1);
    let rig = rig("ok", timeout, 1);
    let before = rig.echo().await;
    let (_, outcome) = rig.invoke(json!({"do": "hang"})).await;
    assert_eq!(outcome, Err(Failure::TimedOut(timeout)));
    assert_ne!(rig.echo().await, before, "the hung process was killed");
}

#[tokio::test]
async fn an_init_error_fails_the_event_that_waited_for_it() {
    let rig = rig("init-error", Duration::from_secs(5), 1);
    let (_, outcome) = rig.invoke(json!({"do": "echo"})).await;
    assert_eq!(
        outcome,
        Err(Failure::Crashed("init failed: no table name".into()))
    );
}
