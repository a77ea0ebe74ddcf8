//! API Gateway V2 stages and deployments, which moto 5.2.5 lacks: its UpdateStage answers 500,
//! tagging a stage's ARN and every `/deployments` URL answer 404, and its stages never deploy
//! (no `deploymentId`, no `lastDeploymentStatusMessage`). The rest of a stage (create, read,
//! delete) is moto's; what is played here is kept per stage and laid over moto's GetStage and
//! GetStages replies, so a read-back sees it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::dev::percent_decode;
use crate::proxy::{Behaviour, Call, Exchange, Reply};

/// How long a played auto-deployment takes (AWS: seconds).
const DEPLOY_AFTER: Duration = Duration::from_secs(1);

/// What a stage with AutoDeploy does after a change under its API.
#[derive(Debug, Clone, PartialEq)]
pub enum AutoDeploy {
    /// Deploys it, as AWS does.
    Succeeds,
    /// Never deploys: only CreateDeployment makes the stage serve the change.
    Never,
    /// Tries and fails with this message, in `lastDeploymentStatusMessage` (and CreateDeployment
    /// is refused with it too).
    Fails(String),
}

/// Stages and deployments as API Gateway V2 has them, over moto.
///
/// - UpdateStage (API reference, "Stage": PATCH `/v2/apis/{apiId}/stages/{stageName}`) changes
///   `autoDeploy`, `defaultRouteSettings` and `accessLogSettings` (an empty one turns access
///   logging off) in place and answers the stage.
/// - TagResource / UntagResource (API reference, "Tags": `/v2/tags/{resource-arn}`) accept a
///   stage's ARN `arn:aws:apigateway:REGION::/apis/API/stages/STAGE`; GetStage's `tags` show it.
/// - Auto-deployment (developer guide, "Stages for HTTP APIs": "If you enable automatic
///   deployments, changes to an API are automatically released for you"; "Deploy WebSocket APIs
///   in API Gateway": routes, integrations and authorizers need a redeployment): after a change
///   under an API, or a new stage, each of its stages with `autoDeploy` names a new
///   `deploymentId` with `lastDeploymentStatusMessage` set, asynchronously ([`DEPLOY_AFTER`]).
/// - Deployments (API reference, "Deployments"/"Deployment"): CreateDeployment with
///   `stageName` deploys to the stage; GetDeployment(s) read `deploymentStatus`
///   (PENDING, FAILED, DEPLOYED) and `deploymentStatusMessage`.
pub struct Stages {
    auto: AutoDeploy,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// (api, stage) → what is played over moto's stage.
    stages: HashMap<(String, String), Stage>,
    /// api → its deployments, oldest first.
    deployments: HashMap<String, Vec<Value>>,
    /// api → when its pending auto-deployment lands.
    pending: HashMap<String, Instant>,
    next: u32,
}

#[derive(Default)]
struct Stage {
    auto_deploy: Option<bool>,
    route_settings: serde_json::Map<String, Value>,
    /// Set by UpdateStage: the new settings, or `None` once an empty object turned them off.
    access_log: Option<Option<Value>>,
    tags_set: BTreeMap<String, Value>,
    tags_removed: BTreeSet<String>,
    deployment_id: Option<String>,
    message: Option<String>,
}

impl Default for Stages {
    fn default() -> Self {
        Stages::new(AutoDeploy::Succeeds)
    }
}

impl Stages {
    pub fn new(auto: AutoDeploy) -> Stages {
        Stages {
            auto,
            state: Mutex::new(State::default()),
        }
    }
}

/// `/v2/apis/API/REST` → (API, REST); `None` outside one API.
fn under_api(path: &str) -> Option<(&str, &str)> {
    let rest = path.split('?').next()?.strip_prefix("/v2/apis/")?;
    Some(rest.split_once('/').unwrap_or((rest, "")))
}

/// A stage's tagging URL → (api, stage).
fn tagged_stage(path: &str) -> Option<(String, String)> {
    let arn = percent_decode(path.split('?').next()?.strip_prefix("/v2/tags/")?);
    let rest = arn.split("::/apis/").nth(1)?;
    let (api, stage) = rest.split_once("/stages/")?;
    Some((api.to_string(), stage.to_string()))
}

fn now_iso() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl State {
    fn deployment(&mut self, api: &str, status: &str, message: Option<&str>, auto: bool) -> String {
        self.next += 1;
        let id = format!("dep{:05}", self.next);
        let mut d = json!({
            "deploymentId": id, "deploymentStatus": status, "createdDate": now_iso(),
            "autoDeployed": auto,
        });
        if let Some(m) = message {
            d["deploymentStatusMessage"] = json!(m);
        }
        self.deployments.entry(api.to_string()).or_default().push(d);
        id
    }

    /// Lands the API's auto-deployment once it is due.
    fn settle(&mut self, api: &str, auto: &AutoDeploy) {
        let due = self.pending.get(api).is_some_and(|t| *t <= Instant::now());
        if !due {
            return;
        }
        self.pending.remove(api);
        let stages: Vec<String> = self
            .stages
            .iter()
            .filter(|((a, _), s)| a == api && s.auto_deploy == Some(true))
            .map(|((_, s), _)| s.clone())
            .collect();
        for stage in stages {
            let (id, message) = match auto {
                AutoDeploy::Never => continue,
                AutoDeploy::Succeeds => {
                    let id = self.deployment(api, "DEPLOYED", None, true);
                    let message = format!("Successfully deployed stage with deployment ID '{id}'");
                    (Some(id), message)
                }
                AutoDeploy::Fails(m) => (None, m.clone()),
            };
            let s = self.stages.entry((api.to_string(), stage)).or_default();
            if id.is_some() {
                s.deployment_id = id;
            }
            s.message = Some(message);
        }
    }

    /// Lays what is played over one stage of moto's reply.
    fn overlay(&self, api: &str, stage: &mut Value) {
        let Some(name) = stage["stageName"].as_str() else {
            return;
        };
        let Some(s) = self.stages.get(&(api.to_string(), name.to_string())) else {
            return;
        };
        if let Some(a) = s.auto_deploy {
            stage["autoDeploy"] = json!(a);
        }
        if !s.route_settings.is_empty() {
            if !stage["defaultRouteSettings"].is_object() {
                stage["defaultRouteSettings"] = json!({});
            }
            for (k, v) in &s.route_settings {
                stage["defaultRouteSettings"][k] = v.clone();
            }
        }
        if !s.tags_set.is_empty() || !s.tags_removed.is_empty() {
            let mut tags = stage["tags"].as_object().cloned().unwrap_or_default();
            tags.retain(|k, _| !s.tags_removed.contains(k));
            tags.extend(s.tags_set.clone());
            stage["tags"] = Value::Object(tags);
        }
        match &s.access_log {
            Some(Some(settings)) => stage["accessLogSettings"] = settings.clone(),
            Some(None) => {
                if let Some(stage) = stage.as_object_mut() {
                    stage.remove("accessLogSettings");
                }
            }
            None => {}
        }
        if let Some(id) = &s.deployment_id {
            stage["deploymentId"] = json!(id);
        }
        if let Some(m) = &s.message {
            stage["lastDeploymentStatusMessage"] = json!(m);
        }
    }
}

impl Behaviour for Stages {
    fn answer(&self, call: &Call, req: &Exchange) -> Option<Reply> {
        if call.service != "apigateway" {
            return None;
        }
        let mut state = self.state.lock().unwrap();
        let method = req.method.as_str();
        if let Some((api, stage)) = tagged_stage(&req.path) {
            let s = state.stages.entry((api, stage)).or_default();
            return match method {
                "POST" => {
                    let tags = req.json()["tags"].as_object().cloned().unwrap_or_default();
                    for (k, v) in tags {
                        s.tags_removed.remove(&k);
                        s.tags_set.insert(k, v);
                    }
                    Some(Reply::json(201, &json!({})))
                }
                "DELETE" => {
                    let query = req.path.split_once('?').map(|(_, q)| q).unwrap_or("");
                    for kv in query.split('&') {
                        if let Some(k) = kv.strip_prefix("tagKeys=") {
                            let k = percent_decode(k);
                            s.tags_set.remove(&k);
                            s.tags_removed.insert(k);
                        }
                    }
                    Some(Reply::json(204, &json!({})))
                }
                _ => None,
            };
        }
        let (api, rest) = under_api(&req.path)?;
        let api = api.to_string();
        let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
        match (method, parts.as_slice()) {
            ("PATCH", ["stages", stage]) => {
                let body = req.json();
                let s = state
                    .stages
                    .entry((api.clone(), percent_decode(stage)))
                    .or_default();
                if let Some(a) = body["autoDeploy"].as_bool() {
                    s.auto_deploy = Some(a);
                }
                if let Some(settings) = body["defaultRouteSettings"].as_object() {
                    s.route_settings.extend(settings.clone());
                }
                if let Some(settings) = body["accessLogSettings"].as_object() {
                    let on = settings.get("destinationArn").is_some_and(|d| d != "");
                    s.access_log = Some(on.then(|| Value::Object(settings.clone())));
                }
                let mut reply =
                    json!({"stageName": percent_decode(stage), "lastUpdatedDate": now_iso()});
                state.overlay(&api, &mut reply);
                Some(Reply::json(200, &reply))
            }
            ("POST", ["deployments"]) => {
                if let AutoDeploy::Fails(m) = &self.auto {
                    return Some(Reply::error(400, "BadRequestException", m));
                }
                let body = req.json();
                let id = state.deployment(&api, "DEPLOYED", None, false);
                if let Some(stage) = body["stageName"].as_str() {
                    let s = state
                        .stages
                        .entry((api.clone(), stage.to_string()))
                        .or_default();
                    s.deployment_id = Some(id.clone());
                }
                let d = state.deployments[&api].last().cloned().unwrap_or_default();
                Some(Reply::json(201, &d))
            }
            ("GET", ["deployments"]) => {
                state.settle(&api, &self.auto);
                let items = state.deployments.get(&api).cloned().unwrap_or_default();
                Some(Reply::json(200, &json!({ "items": items })))
            }
            ("GET", ["deployments", id]) => {
                state.settle(&api, &self.auto);
                let found = state
                    .deployments
                    .get(&api)
                    .and_then(|ds| ds.iter().find(|d| d["deploymentId"] == *id).cloned());
                Some(match found {
                    Some(d) => Reply::json(200, &d),
                    None => Reply::error(
                        404,
                        "NotFoundException",
                        &format!("Invalid Deployment identifier specified {id}"),
                    ),
                })
            }
            _ => None,
        }
    }

    fn rewrite(&self, call: &Call, req: &Exchange, reply: &mut Reply) {
        if call.service != "apigateway" || !(200..300).contains(&reply.status) {
            return;
        }
        let Some((api, rest)) = under_api(&req.path) else {
            return;
        };
        let api = api.to_string();
        let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
        let mut state = self.state.lock().unwrap();
        match (req.method.as_str(), parts.as_slice()) {
            ("GET", ["stages", ..]) => {
                state.settle(&api, &self.auto);
                let Ok(mut body) = serde_json::from_slice::<Value>(&reply.body) else {
                    return;
                };
                if let Some(items) = body["items"].as_array_mut() {
                    for stage in items {
                        state.overlay(&api, stage);
                    }
                } else {
                    state.overlay(&api, &mut body);
                }
                reply.body = body.to_string().into();
            }
            ("POST", ["stages"]) => {
                let body = req.json();
                let stage = body["stageName"].as_str().unwrap_or_default().to_string();
                let auto = body["autoDeploy"].as_bool();
                state.stages.insert(
                    (api.clone(), stage),
                    Stage {
                        auto_deploy: auto,
                        ..Stage::default()
                    },
                );
                if auto == Some(true) {
                    state.pending.insert(api, Instant::now() + DEPLOY_AFTER);
                }
            }
            ("DELETE", ["stages", stage]) => {
                state.stages.remove(&(api, percent_decode(stage)));
            }
            ("DELETE", []) => {
                state.stages.retain(|(a, _), _| *a != api);
                state.deployments.remove(&api);
                state.pending.remove(&api);
            }
            ("POST" | "PATCH" | "DELETE", ["routes" | "integrations" | "authorizers", ..] | []) => {
                state.pending.insert(api, Instant::now() + DEPLOY_AFTER);
            }
            _ => {}
        }
    }

    fn reset(&self) {
        *self.state.lock().unwrap() = State::default();
    }
}

/// API Gateway's control plane throttles reads as well as changes: "Total operations: 10
/// requests per second with a burst quota of 40 requests per second" per account, shared with
/// every CI job and console session of the account ("Amazon API Gateway quotas", quotas for
/// creating, deploying and managing an API). Each distinct read (method, path and query) is
/// answered 429 `TooManyRequestsException` once before it is served.
#[derive(Default)]
pub struct ThrottledReads {
    seen: Mutex<BTreeSet<String>>,
    refused: std::sync::atomic::AtomicUsize,
}

impl ThrottledReads {
    /// How many reads were refused.
    pub fn refused(&self) -> usize {
        self.refused.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Behaviour for ThrottledReads {
    fn answer(&self, call: &Call, req: &Exchange) -> Option<Reply> {
        if call.service != "apigateway" || req.method != hyper::Method::GET {
            return None;
        }
        if !self.seen.lock().unwrap().insert(req.path.clone()) {
            return None;
        }
        self.refused
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Some(Reply::error(
            429,
            "TooManyRequestsException",
            "Too Many Requests",
        ))
    }

    fn reset(&self) {
        self.seen.lock().unwrap().clear();
    }
}

/// An authorizer stays referenced while a route names it. UpdateRoute changes only the fields
/// it is sent, so `AuthorizationType: NONE` without `AuthorizerId` leaves the id on the route
/// (cloudformation-coverage-roadmap #2184: "users need to remove the AuthorizerId and set
/// AuthorizationType to 'NONE'"), and DeleteAuthorizer then answers 409 `ConflictException`
/// "Cannot delete authorizer '…', is referenced in route: …" (sst #5586,
/// terraform-provider-aws #37732). moto keeps the id the same way but deletes the authorizer.
#[derive(Default)]
pub struct AuthorizerReferences {
    /// (api, route id) → (route key, authorizer id).
    routes: Mutex<HashMap<(String, String), (String, String)>>,
    refused: std::sync::atomic::AtomicUsize,
}

impl AuthorizerReferences {
    /// How many deletes were refused.
    pub fn refused(&self) -> usize {
        self.refused.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Behaviour for AuthorizerReferences {
    fn answer(&self, call: &Call, req: &Exchange) -> Option<Reply> {
        if call.service != "apigateway" || req.method != hyper::Method::DELETE {
            return None;
        }
        let (api, rest) = under_api(&req.path)?;
        let id = rest.strip_prefix("authorizers/")?;
        let routes = self.routes.lock().unwrap();
        let (key, _) = routes
            .iter()
            .find(|((a, _), (_, auth))| a == api && auth == id)?
            .1;
        self.refused
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Some(Reply::error(
            409,
            "ConflictException",
            &format!("Cannot delete authorizer '{id}', is referenced in route: {key}"),
        ))
    }

    fn rewrite(&self, call: &Call, req: &Exchange, reply: &mut Reply) {
        if call.service != "apigateway" || !(200..300).contains(&reply.status) {
            return;
        }
        let Some((api, rest)) = under_api(&req.path) else {
            return;
        };
        let mut routes = self.routes.lock().unwrap();
        match (
            req.method.as_str(),
            rest.split('/').collect::<Vec<_>>().as_slice(),
        ) {
            ("POST", ["routes"]) | ("PATCH", ["routes", _]) => {
                let route: Value = serde_json::from_slice(&reply.body).unwrap_or_default();
                let (Some(id), Some(key)) = (route["routeId"].as_str(), route["routeKey"].as_str())
                else {
                    return;
                };
                let slot = (api.to_string(), id.to_string());
                match route["authorizerId"].as_str().filter(|a| !a.is_empty()) {
                    Some(auth) => routes.insert(slot, (key.to_string(), auth.to_string())),
                    None => routes.remove(&slot),
                };
            }
            ("DELETE", ["routes", id]) => {
                routes.remove(&(api.to_string(), id.to_string()));
            }
            ("DELETE", [""]) => routes.retain(|(a, _), _| a != api),
            _ => {}
        }
    }

    fn reset(&self) {
        self.routes.lock().unwrap().clear();
    }
}

/// CreateDeployment's own quota: "1 request every 5 seconds per account", not adjustable
/// ("Amazon API Gateway quotas", quotas for creating, deploying and managing an API), so two
/// stacks deploying at once collide. The first CreateDeployment finds the slot just taken (by
/// another stack of the account) and is refused 429 `TooManyRequestsException`; after that, one
/// is accepted every 5 s.
#[derive(Default)]
pub struct DeploymentQuota {
    slot: Mutex<Option<Instant>>,
    refused: std::sync::atomic::AtomicUsize,
}

/// CreateDeployment's rate: one every this long, per account.
pub const DEPLOYMENT_INTERVAL: Duration = Duration::from_secs(5);

impl DeploymentQuota {
    pub fn refused(&self) -> usize {
        self.refused.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Behaviour for DeploymentQuota {
    fn answer(&self, call: &Call, req: &Exchange) -> Option<Reply> {
        if call.service != "apigateway" || req.method != hyper::Method::POST {
            return None;
        }
        let (_, rest) = under_api(&req.path)?;
        if rest != "deployments" {
            return None;
        }
        let mut slot = self.slot.lock().unwrap();
        let taken = match *slot {
            None => {
                *slot = Some(Instant::now());
                true
            }
            Some(at) => at.elapsed() < DEPLOYMENT_INTERVAL,
        };
        if taken {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            return Some(Reply::error(
                429,
                "TooManyRequestsException",
                "Too Many Requests",
            ));
        }
        *slot = Some(Instant::now());
        None
    }
}
