//! Lambda behaviours moto lacks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;

use super::iam::NewRoles;
use crate::proxy::{Behaviour, Call, Exchange, Reply};

/// What a Lambda REST call acts on: `("POST", None, None)` for CreateFunction,
/// `("PUT", Some(name), Some("configuration"))` for UpdateFunctionConfiguration, and so on.
fn route(call: &Call) -> Option<(&str, Option<&str>, Option<&str>)> {
    if call.service != "lambda" {
        return None;
    }
    let (method, path) = call.operation.split_once(' ')?;
    // Any API version: `/2015-03-31/functions`, `/2017-10-31/functions/NAME/concurrency`.
    let (_, rest) = path.strip_prefix('/')?.split_once('/')?;
    let rest = rest.strip_prefix("functions")?;
    let mut parts = rest.trim_start_matches('/').split('/');
    let name = parts.next().filter(|n| !n.is_empty());
    Some((method, name, parts.next()))
}

/// CreateFunction and UpdateFunctionConfiguration naming a role IAM created moments ago fail
/// as Lambda fails them: 400 InvalidParameterValueException "The role defined for the function
/// cannot be assumed by Lambda." (Lambda API reference, CreateFunction and
/// UpdateFunctionConfiguration, Errors; the role is not yet visible to Lambda because IAM is
/// eventually consistent). Roles come from [`super::iam::RoleCreation`].
pub struct RoleNotYetAssumable {
    pub roles: NewRoles,
}

impl Behaviour for RoleNotYetAssumable {
    fn answer(&self, call: &Call, req: &Exchange) -> Option<Reply> {
        let names_role = matches!(
            route(call)?,
            ("POST", None, None) | ("PUT", Some(_), Some("configuration"))
        );
        let role = req.json()["Role"].as_str().map(str::to_string)?;
        (names_role && self.roles.propagating(&role)).then(|| {
            Reply::error(
                400,
                "InvalidParameterValueException",
                "The role defined for the function cannot be assumed by Lambda.",
            )
        })
    }
}

/// How long an update of an idle function stays `InProgress` here.
const UPDATE: Duration = Duration::from_secs(1);

#[derive(Clone, Copy)]
enum Phase {
    Idle,
    /// Updated at this moment; `LastUpdateStatus` is `InProgress` for [`UPDATE`].
    Updated(Instant),
}

/// Functions a test has marked idle: Lambda reclaimed their resources, so GetFunction and
/// GetFunctionConfiguration report `State: Inactive`, `StateReasonCode: Idle` ("Lambda
/// function states", Lambda developer guide: a function becomes inactive when it has been idle
/// long enough for Lambda to reclaim the external resources configured for it).
///
/// An update is accepted ("functions can only be updated if they are in the Active or Inactive
/// state", AWS Compute Blog, "Tracking the state of AWS Lambda functions") and runs with
/// `LastUpdateStatus: InProgress` (other updates refused with ResourceConflictException
/// meanwhile), then `Successful`; the state stays `Inactive`: per the developer guide it is an
/// invocation that sends an inactive function to `Pending` while Lambda re-creates its
/// resources, and wsctl invokes nothing. Counts the state reads of marked functions, so a test
/// can tell a prompt deploy from one that polled until its timeout.
#[derive(Clone, Default)]
pub struct Idle {
    functions: Arc<Mutex<HashMap<String, Phase>>>,
    polls: Arc<AtomicUsize>,
}

impl Idle {
    /// Makes `function` inactive from now on.
    pub fn mark(&self, function: &str) {
        self.functions
            .lock()
            .unwrap()
            .insert(function.to_string(), Phase::Idle);
    }

    /// GetFunction and GetFunctionConfiguration calls on marked functions so far.
    pub fn polls(&self) -> usize {
        self.polls.load(Ordering::SeqCst)
    }

    fn phase(&self, function: &str) -> Option<Phase> {
        self.functions.lock().unwrap().get(function).copied()
    }
}

/// Sets the state fields of a FunctionConfiguration (a reply's top level, or GetFunction's
/// `Configuration`).
fn set_state(
    reply: &mut Reply,
    configuration: impl Fn(&mut Value) -> Option<&mut Value>,
    in_progress: bool,
) {
    let Ok(mut body) = serde_json::from_slice::<Value>(&reply.body) else {
        return;
    };
    if let Some(Value::Object(c)) = configuration(&mut body) {
        c.insert("State".into(), "Inactive".into());
        c.insert("StateReason".into(), "The function is idle.".into());
        c.insert("StateReasonCode".into(), "Idle".into());
        c.insert(
            "LastUpdateStatus".into(),
            if in_progress {
                "InProgress"
            } else {
                "Successful"
            }
            .into(),
        );
    }
    reply.body = Bytes::from(body.to_string());
}

impl Behaviour for Idle {
    fn answer(&self, call: &Call, _req: &Exchange) -> Option<Reply> {
        let ("PUT", Some(name), Some("code" | "configuration")) = route(call)? else {
            return None;
        };
        match self.phase(name)? {
            Phase::Updated(at) if at.elapsed() < UPDATE => Some(Reply::error(
                409,
                "ResourceConflictException",
                &format!(
                    "The operation cannot be performed at this time. An update is in progress for resource: {name}"
                ),
            )),
            _ => None,
        }
    }

    fn rewrite(&self, call: &Call, _req: &Exchange, reply: &mut Reply) {
        let Some((method, Some(name), what)) = route(call) else {
            return;
        };
        let Some(phase) = self.phase(name) else {
            return;
        };
        if reply.status != 200 {
            return;
        }
        match (method, what) {
            ("PUT", Some("code" | "configuration")) => {
                self.functions
                    .lock()
                    .unwrap()
                    .insert(name.to_string(), Phase::Updated(Instant::now()));
                set_state(reply, |b| Some(b), true);
            }
            ("GET", None | Some("configuration")) => {
                self.polls.fetch_add(1, Ordering::SeqCst);
                let in_progress = matches!(phase, Phase::Updated(at) if at.elapsed() < UPDATE);
                if what.is_none() {
                    set_state(reply, |b| b.get_mut("Configuration"), in_progress);
                } else {
                    set_state(reply, |b| Some(b), in_progress);
                }
            }
            _ => {}
        }
    }

    fn reset(&self) {
        self.functions.lock().unwrap().clear();
        self.polls.store(0, Ordering::SeqCst);
    }
}

/// How long a function stays busy here after a mutating control-plane call.
const BUSY: Duration = Duration::from_millis(300);

/// Lambda serialises the mutating control-plane calls of one function: a call that arrives
/// while another is in progress gets 409 ResourceConflictException "The operation cannot be
/// performed at this time. An update is in progress for resource: ARN" (Lambda API reference,
/// AddPermission, RemovePermission, UpdateFunctionCode, UpdateFunctionConfiguration,
/// PutFunctionConcurrency, DeleteFunctionConcurrency: Errors, ResourceConflictException "…or
/// another operation is in progress"; reported by terraform-provider-aws #5154 and #789, sst
/// #6923 and #6933). Here each such call keeps its function busy for [`BUSY`]; one arriving
/// meanwhile is refused, and counted.
#[derive(Clone, Default)]
pub struct BusyFunctions {
    last: Arc<Mutex<HashMap<String, Instant>>>,
    refused: Arc<AtomicUsize>,
}

impl BusyFunctions {
    /// Calls refused with 409 so far.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }
}

impl Behaviour for BusyFunctions {
    fn answer(&self, call: &Call, _req: &Exchange) -> Option<Reply> {
        let mutating = matches!(
            route(call)?,
            ("POST" | "DELETE", Some(_), Some("policy" | "url"))
                | (
                    "PUT",
                    Some(_),
                    Some("code" | "configuration" | "concurrency" | "url")
                )
                | ("DELETE", Some(_), Some("concurrency"))
        );
        let (_, Some(name), _) = route(call)? else {
            return None;
        };
        if !mutating {
            return None;
        }
        let mut last = self.last.lock().unwrap();
        if last.get(name).is_some_and(|at| at.elapsed() < BUSY) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Some(Reply::error(
                409,
                "ResourceConflictException",
                &format!(
                    "The operation cannot be performed at this time. An update is in progress for resource: arn:aws:lambda:us-east-1:123456789012:function:{name}"
                ),
            ));
        }
        last.insert(name.to_string(), Instant::now());
        None
    }

    fn reset(&self) {
        self.last.lock().unwrap().clear();
    }
}

/// The account's concurrency, which moto neither reports nor enforces. GetAccountSettings
/// (`GET /2016-08-19/account-settings/`) answers `AccountLimit.ConcurrentExecutions` and
/// `UnreservedConcurrentExecutions` (the limit less every function's reservation), and
/// PutFunctionConcurrency is refused with 400 InvalidParameterValueException "Specified
/// ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution
/// below its minimum value of [100]." when it would leave less than the minimum unreserved
/// (API reference, PutFunctionConcurrency: "as long as you leave at least 100 simultaneous
/// executions unreserved"; an account whose limit is below 100 keeps it all).
#[derive(Clone)]
pub struct AccountConcurrency {
    limit: i64,
    reserved: Arc<Mutex<HashMap<String, i64>>>,
}

impl Default for AccountConcurrency {
    /// Lambda's default quota: 1,000 concurrent executions per region.
    fn default() -> Self {
        AccountConcurrency::with_limit(1000)
    }
}

impl AccountConcurrency {
    pub fn with_limit(limit: i64) -> AccountConcurrency {
        AccountConcurrency {
            limit,
            reserved: Arc::default(),
        }
    }

    fn unreserved(&self, except: Option<&str>) -> i64 {
        let reserved = self.reserved.lock().unwrap();
        self.limit
            - reserved
                .iter()
                .filter(|(f, _)| Some(f.as_str()) != except)
                .map(|(_, n)| n)
                .sum::<i64>()
    }
}

/// A function named in a path by name or ARN → its name.
fn function_name(named: &str) -> String {
    let named = crate::dev::percent_decode(named);
    match named.split_once(":function:") {
        Some((_, rest)) => rest.split(':').next().unwrap_or_default().to_string(),
        None => named,
    }
}

impl Behaviour for AccountConcurrency {
    fn answer(&self, call: &Call, req: &Exchange) -> Option<Reply> {
        if call.service != "lambda" {
            return None;
        }
        if req.method == hyper::Method::GET && req.path.contains("/account-settings") {
            return Some(Reply::json(
                200,
                &serde_json::json!({
                    "AccountLimit": {
                        "ConcurrentExecutions": self.limit,
                        "UnreservedConcurrentExecutions": self.unreserved(None),
                        "TotalCodeSize": 80_530_636_800i64,
                        "CodeSizeUnzipped": 262_144_000,
                        "CodeSizeZipped": 52_428_800,
                    },
                    "AccountUsage": {"TotalCodeSize": 0, "FunctionCount": 0},
                }),
            ));
        }
        let ("PUT", Some(name), Some("concurrency")) = route(call)? else {
            return None;
        };
        let want = req.json()["ReservedConcurrentExecutions"].as_i64()?;
        let minimum = self.limit.min(100);
        if self.unreserved(Some(&function_name(name))) - want < minimum {
            return Some(Reply::error(
                400,
                "InvalidParameterValueException",
                &format!(
                    "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [{minimum}]."
                ),
            ));
        }
        None
    }

    fn rewrite(&self, call: &Call, req: &Exchange, reply: &mut Reply) {
        if !(200..300).contains(&reply.status) {
            return;
        }
        let Some((method, Some(name), what)) = route(call) else {
            return;
        };
        let name = function_name(name);
        let mut reserved = self.reserved.lock().unwrap();
        match (method, what) {
            ("PUT", Some("concurrency")) => {
                if let Some(n) = req.json()["ReservedConcurrentExecutions"].as_i64() {
                    reserved.insert(name, n);
                }
            }
            ("DELETE", Some("concurrency")) | ("DELETE", None) => {
                reserved.remove(&name);
            }
            _ => {}
        }
    }

    fn reset(&self) {
        self.reserved.lock().unwrap().clear();
    }
}

/// A function's resource-based policy holds at most 20 KB ("Lambda quotas": "Function
/// resource-based policy: 20 KB", not adjustable); moto takes any number of statements.
/// AddPermission that would pass it is refused with 400 PolicyLengthExceededException "The
/// final policy size (N) is bigger than the limit (20480)." (Lambda API reference,
/// AddPermission, Errors). Sizes are kept from moto's answers (each statement as it stores
/// it); a new statement is taken to be as long as the function's longest so far.
#[derive(Clone, Default)]
pub struct PolicyLimit {
    /// function → statement id → bytes.
    statements: Arc<Mutex<HashMap<String, HashMap<String, usize>>>>,
    refused: Arc<AtomicUsize>,
}

/// Lambda's limit on a function's policy document.
pub const POLICY_BYTES: usize = 20 * 1024;

impl PolicyLimit {
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }
}

impl Behaviour for PolicyLimit {
    fn answer(&self, call: &Call, req: &Exchange) -> Option<Reply> {
        let ("POST", Some(name), Some("policy")) = route(call)? else {
            return None;
        };
        let statements = self.statements.lock().unwrap();
        let held = statements.get(&function_name(name));
        let next = held
            .and_then(|h| h.values().max().copied())
            .unwrap_or(req.body.len() + 150);
        // `{"Version":"2012-10-17","Id":"default","Statement":[…]}` and the commas.
        let total = 52 + held.map_or(0, |h| h.values().sum::<usize>() + h.len()) + next;
        if total <= POLICY_BYTES {
            return None;
        }
        self.refused.fetch_add(1, Ordering::SeqCst);
        Some(Reply::error(
            400,
            "PolicyLengthExceededException",
            &format!("The final policy size ({total}) is bigger than the limit ({POLICY_BYTES})."),
        ))
    }

    fn rewrite(&self, call: &Call, req: &Exchange, reply: &mut Reply) {
        if !(200..300).contains(&reply.status) {
            return;
        }
        let Some((method, Some(name), what)) = route(call) else {
            return;
        };
        let name = function_name(name);
        let mut statements = self.statements.lock().unwrap();
        if (method, what) == ("DELETE", None) {
            statements.remove(&name);
            return;
        }
        if what != Some("policy") {
            return;
        }
        match method {
            "POST" => {
                let body: Value = serde_json::from_slice(&reply.body).unwrap_or_default();
                let sid = req.json()["StatementId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                // Measured as Lambda keeps it, without the spaces moto's JSON has.
                if let Some(statement) = body["Statement"]
                    .as_str()
                    .and_then(|s| serde_json::from_str::<Value>(s).ok())
                {
                    let bytes = statement.to_string().len();
                    statements.entry(name).or_default().insert(sid, bytes);
                }
            }
            "DELETE" => {
                let path = req.path.split('?').next().unwrap_or_default();
                let sid = crate::dev::percent_decode(path.rsplit('/').next().unwrap_or_default());
                if let Some(held) = statements.get_mut(&name) {
                    held.remove(&sid);
                }
            }
            _ => {}
        }
    }

    fn reset(&self) {
        self.statements.lock().unwrap().clear();
    }
}
