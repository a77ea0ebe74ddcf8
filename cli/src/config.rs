//! `wsctl.yaml`: parsed strictly (unknown keys are errors), then validated as a whole so
//! that one run reports every problem, each naming the file, the field and what is allowed.
//!
//! Loading never talks to AWS: a bad config fails before any credential is looked up.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use wsctl_functions::layout;

/// Route selection over JSON bodies, as the bundled functions expect.
pub const DEFAULT_ROUTE_SELECTION: &str = "$request.body.action";
/// Browsers cannot set headers on a WebSocket, so the token travels in the query string.
pub const DEFAULT_IDENTITY_SOURCE: &str = "route.request.querystring.token";
/// CloudWatch Logs accepts only these retention periods.
pub const LOG_RETENTION_DAYS: &[u32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];
const SPECIAL_ROUTES: &[&str] = &["$connect", "$disconnect", "$default"];
/// Keys Lambda sets itself and refuses in a function's configuration ("Defined runtime
/// environment variables", Lambda Developer Guide). `TZ`, `LANG`, `PATH` and the like are
/// not reserved and may be set.
pub const LAMBDA_RESERVED_ENV: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];
/// Lambda: "the total size of all environment variables doesn't exceed 4 KB" (Lambda quotas).
pub const LAMBDA_ENV_BYTES: usize = 4 * 1024;
/// Lambda's quota for a function's resource-based policy ("Lambda quotas"), not adjustable.
pub const LAMBDA_POLICY_BYTES: usize = 20 * 1024;
/// Tags per resource: 50 on API Gateway, Lambda, DynamoDB ("The maximum number of tags per
/// resource is 50", "Tagging restrictions in DynamoDB"), IAM, CloudWatch Logs and SSM.
pub const MAX_TAGS: usize = 50;
/// Tags wsctl puts on a table besides the stack's (`wsctl:ttl-changed`): they count too.
const TABLE_OWN_TAGS: usize = 1;
/// "Access log template size: 3 KB", not adjustable ("Amazon API Gateway quotas for
/// configuring and running a WebSocket API").
pub const ACCESS_LOG_FORMAT_BYTES: usize = 3 * 1024;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    Arm64,
    #[serde(rename = "x86_64")]
    #[value(name = "x86_64")]
    X86_64,
    /// The architecture of the machine running wsctl (for local runs).
    Host,
}

impl Arch {
    /// The Lambda architecture name this resolves to.
    pub fn lambda_name(self) -> &'static str {
        match self.resolve() {
            Arch::Arm64 => "arm64",
            _ => "x86_64",
        }
    }

    /// `host` becomes the concrete architecture of this machine.
    pub fn resolve(self) -> Arch {
        match self {
            Arch::Host if cfg!(target_arch = "aarch64") => Arch::Arm64,
            Arch::Host => Arch::X86_64,
            other => other,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Arch::Arm64 => "arm64",
            Arch::X86_64 => "x86_64",
            Arch::Host => "host",
        })
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    Read,
    Write,
    ReadWrite,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Lower-case name shared by every resource of the stack.
    #[schemars(length(min = 1, max = 20), regex(pattern = r"^[a-z][a-z0-9-]*$"))]
    pub stack: String,
    #[serde(default = "default_stage")]
    #[schemars(length(min = 1, max = 16), regex(pattern = r"^[a-z][a-z0-9-]*$"))]
    pub stage: String,
    /// Falls back to the credential chain's region (profile, `AWS_REGION`).
    #[serde(default)]
    pub region: Option<String>,
    /// Default architecture of every function.
    #[serde(default = "default_arch")]
    pub architecture: Arch,
    pub functions: BTreeMap<String, FunctionConfig>,
    pub routes: BTreeMap<String, String>,
    #[serde(default = "default_route_selection")]
    pub route_selection_expression: String,
    #[serde(default)]
    pub authorizer: Option<AuthorizerConfig>,
    #[serde(default)]
    pub tables: BTreeMap<String, TableConfig>,
    #[serde(default)]
    pub throttling: Throttling,
    /// Days the functions' logs are kept: one of the periods CloudWatch Logs accepts.
    #[serde(default = "default_retention")]
    #[schemars(extend("enum" = LOG_RETENTION_DAYS))]
    pub log_retention_days: u32,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// A custom domain for the stage: `wss://NAME/PATH`.
    #[serde(default)]
    pub domain: Option<DomainConfig>,
    /// The stage's access log: one line per connect, message and disconnect.
    #[serde(default)]
    pub access_logs: Option<AccessLogsConfig>,
    /// What one connection or one user may use, enforced by the bundled functions (each key
    /// left out keeps its default).
    #[serde(default)]
    pub limits: wsctl_functions::limits::Limits,
    /// The ARN of a managed policy your administrator made, set as the permissions boundary
    /// of every role of the stack. Left out, wsctl creates and keeps the stack's own boundary
    /// (`policy/wsctl/STACK/STAGE/STACK-STAGE-boundary`).
    #[serde(default)]
    #[schemars(regex(pattern = r"^arn:aws[a-z-]*:iam::(\d{12}|aws):policy/.+$"))]
    pub permissions_boundary: Option<String>,
}

/// API Gateway writes a WebSocket stage's access log through one CloudWatch Logs role set in
/// the account's API Gateway settings of the region ("Set up CloudWatch logging for REST APIs
/// in API Gateway": the role is an account-level setting; without it CreateStage/UpdateStage
/// answer "CloudWatch Logs role ARN must be set in account settings to enable logging").
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessLogsConfig {
    /// Days the access log keeps its lines; default: `log_retention_days`.
    #[serde(default)]
    pub retention_days: Option<u32>,
    /// The line API Gateway writes, with `$context` variables; default: [`ACCESS_LOG_FORMAT`].
    #[serde(default)]
    pub format: Option<String>,
    /// The account's API Gateway CloudWatch role: absent, the one the account has (an error
    /// when it has none); `create`, that one or else a role wsctl creates and sets; a role ARN,
    /// that role, set in the account's settings.
    #[serde(default)]
    pub account_role: Option<String>,
}

/// JSON, one object per line: who (connection, source IP), what (event, route), and how it
/// went (status, integration and authorizer latency, errors). Every variable is one API
/// Gateway documents for WebSocket APIs ("Configure logging for WebSocket APIs in API
/// Gateway").
pub const ACCESS_LOG_FORMAT: &str = concat!(
    r#"{"requestId":"$context.requestId","#,
    r#""extendedRequestId":"$context.extendedRequestId","#,
    r#""connectionId":"$context.connectionId","#,
    r#""eventType":"$context.eventType","#,
    r#""routeKey":"$context.routeKey","#,
    r#""status":"$context.status","#,
    r#""requestTime":"$context.requestTimeEpoch","#,
    r#""sourceIp":"$context.identity.sourceIp","#,
    r#""integrationLatency":"$context.integrationLatency","#,
    r#""authorizerLatency":"$context.authorizer.latency","#,
    r#""error":"$context.error.message","#,
    r#""authorizerError":"$context.authorizer.error"}"#
);

/// `arn:PARTITION:iam::ACCOUNT:policy/PATH/NAME`, the form IAM accepts as a boundary.
fn is_policy_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    matches!(parts.as_slice(), ["arn", partition, "iam", "", account, resource]
        if partition.starts_with("aws")
            && (*account == "aws" || (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())))
            && resource.strip_prefix("policy/").is_some_and(|name| !name.is_empty() && !name.ends_with('/')))
}

/// What `access_logs.account_role` asks of the account's API Gateway settings.
#[derive(Debug, Clone, PartialEq)]
pub enum AccountRole<'a> {
    /// Whatever role the account has; none is an error.
    Existing,
    /// The account's role, or one wsctl creates when it has none.
    Create,
    /// This role.
    Arn(&'a str),
}

impl AccessLogsConfig {
    pub fn account_role(&self) -> AccountRole<'_> {
        match self.account_role.as_deref() {
            None => AccountRole::Existing,
            Some("create") => AccountRole::Create,
            Some(arn) => AccountRole::Arn(arn),
        }
    }

    pub fn format(&self) -> &str {
        self.format.as_deref().unwrap_or(ACCESS_LOG_FORMAT)
    }

    fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut bad = |field: &str, message: String| {
            out.push(Problem {
                field: format!("access_logs.{field}"),
                message,
            })
        };
        if let Some(days) = self.retention_days
            && !LOG_RETENTION_DAYS.contains(&days)
        {
            bad(
                "retention_days",
                format!(
                    "{days} is not a CloudWatch Logs retention; allowed: {}",
                    list(LOG_RETENTION_DAYS.iter())
                ),
            );
        }
        if let Some(format) = &self.format {
            // API Gateway refuses a format without a request id, and one line is one event.
            if !format.contains("$context.requestId")
                && !format.contains("$context.extendedRequestId")
            {
                bad(
                    "format",
                    "must contain `$context.requestId` or `$context.extendedRequestId` (API Gateway's rule); leave it out for wsctl's JSON line".into(),
                );
            }
            if format.len() > ACCESS_LOG_FORMAT_BYTES {
                bad(
                    "format",
                    format!(
                        "is {} bytes; API Gateway's access log template size is at most 3 KB ({ACCESS_LOG_FORMAT_BYTES} bytes, not adjustable): leave out some fields",
                        format.len()
                    ),
                );
            }
            if format.contains('\n') || format.contains('\r') {
                bad(
                    "format",
                    "must be one line: each access log event is one line".into(),
                );
            }
        }
        if let AccountRole::Arn(arn) = self.account_role() {
            // arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME
            let parts: Vec<&str> = arn.splitn(6, ':').collect();
            let ok = parts.len() == 6
                && parts[0] == "arn"
                && parts[1].starts_with("aws")
                && parts[2] == "iam"
                && parts[3].is_empty()
                && parts[4].len() == 12
                && parts[4].chars().all(|c| c.is_ascii_digit())
                && parts[5]
                    .strip_prefix("role/")
                    .is_some_and(|r| !r.is_empty() && !r.ends_with('/'));
            if !ok {
                bad(
                    "account_role",
                    format!(
                        "`{arn}` is neither `create` nor an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME): leave it out to use the role the account's API Gateway settings already have, write `create` to let wsctl create one when there is none, or name a role API Gateway may assume"
                    ),
                );
            }
        }
        out
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DomainConfig {
    /// The host clients connect to, e.g. `ws.example.com`.
    pub name: String,
    /// An ACM certificate for `name`, issued in the stack's region (WebSocket APIs take only
    /// regional custom domains).
    pub certificate_arn: String,
    /// The API mapping key: the stage is served at `wss://NAME/PATH`. Default: the stage's name,
    /// so the URLs keep the stage path (`""` maps the stage at the root).
    #[serde(default)]
    pub path: Option<String>,
}

impl DomainConfig {
    /// The API mapping key the stage is served under.
    pub fn mapping_key<'a>(&'a self, stage: &'a str) -> &'a str {
        self.path.as_deref().unwrap_or(stage)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FunctionConfig {
    /// Directory of the function's crate, relative to the config file.
    #[serde(rename = "crate")]
    pub crate_path: PathBuf,
    /// Binary to ship when the crate has several; defaults to the crate directory's name.
    #[serde(default)]
    pub bin: Option<String>,
    /// Lambda's `Handler` setting, which a custom runtime reads as `_HANDLER`: the bundled
    /// functions are one binary that serves the role it names. Default `bootstrap`.
    #[serde(default)]
    pub handler: Option<String>,
    /// MB, 128 to 10,240.
    #[serde(default = "default_memory")]
    #[schemars(range(min = 128, max = 10240))]
    pub memory: u32,
    /// Seconds, 1 to 900.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 900))]
    pub timeout: u32,
    #[serde(default)]
    pub architecture: Option<Arch>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Tables this function may use, and how: the role grants exactly that.
    #[serde(default)]
    pub tables: BTreeMap<String, Access>,
    /// May post to, read and close connections through this stage's `@connections` API.
    #[serde(default)]
    pub manage_connections: bool,
    /// Functions of this stack it may invoke.
    #[serde(default)]
    pub invoke: Vec<String>,
    /// May read the stack's token secret from SSM.
    #[serde(default)]
    pub read_secret: bool,
    /// Concurrent executions reserved for (and capping) this function; none by default.
    #[serde(default)]
    pub reserved_concurrency: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizerConfig {
    pub function: String,
    #[serde(default = "default_identity_source")]
    pub identity_source: Vec<String>,
    /// When set, tokens signed with the stack's secret must carry this `aud`.
    #[serde(default)]
    pub audience: Option<String>,
    /// An identity provider whose RS256/ES256 tokens are accepted besides the stack's own.
    #[serde(default)]
    pub oidc: Option<OidcConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The `iss` of its tokens, e.g. `https://id.example.com/`; required in every token.
    pub issuer: String,
    /// The `aud` its tokens must carry (one of, when `aud` is a list).
    pub audience: String,
    /// Where its key set is; default: `jwks_uri` of `<issuer>/.well-known/openid-configuration`.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// A claim holding the user's capabilities (an object glob → operations, or a list of
    /// `glob:op,op` rules).
    #[serde(default)]
    pub capabilities_claim: Option<String>,
    /// What users whose token lacks that claim may do: glob → operations.
    #[serde(default)]
    pub default_capabilities: BTreeMap<String, Vec<String>>,
    /// Put before the provider's `sub` with a `|` to make the user id (default: the issuer's
    /// host and path, e.g. `id.example.com|ana`), so that no provider user shares an id with
    /// a user of the stack's own tokens. `""` keeps `sub` as it is.
    #[serde(default)]
    pub user_prefix: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// `name` (string) or `name:N` / `name:B`.
    pub partition_key: String,
    #[serde(default)]
    pub sort_key: Option<String>,
    #[serde(default = "default_ttl_attribute")]
    pub ttl_attribute: String,
    #[serde(default)]
    pub indexes: BTreeMap<String, IndexConfig>,
    /// Point-in-time recovery: DynamoDB keeps continuous backups from which the table can be
    /// restored to any second of the last 35 days (billed per GB-month of table size).
    /// Default: on for `history` (what clients cannot send again), off for the others.
    #[serde(default)]
    pub point_in_time_recovery: Option<bool>,
    /// Deletion protection: DynamoDB refuses to delete the table, so neither `wsctl destroy`
    /// nor a replacement can until it is turned off here and deployed. Default: on for
    /// `history` on a stage named like production (`prod`, `production`, `live`, or starting
    /// with `prod-`), off otherwise.
    #[serde(default)]
    pub deletion_protection: Option<bool>,
}

impl TableConfig {
    /// Whether the table keeps point-in-time backups, `logical` being its key in `tables`.
    pub fn point_in_time_recovery(&self, logical: &str) -> bool {
        self.point_in_time_recovery.unwrap_or(logical == "history")
    }

    /// Whether DynamoDB refuses to delete the table.
    pub fn deletion_protection(&self, logical: &str, stage: &str) -> bool {
        let production =
            matches!(stage, "prod" | "production" | "live") || stage.starts_with("prod-");
        self.deletion_protection
            .unwrap_or(logical == "history" && production)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IndexConfig {
    pub partition_key: String,
    #[serde(default)]
    pub sort_key: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Throttling {
    #[serde(default = "default_burst")]
    pub burst: i32,
    #[serde(default = "default_rate")]
    pub rate: f64,
}

impl Default for Throttling {
    fn default() -> Self {
        Throttling {
            burst: default_burst(),
            rate: default_rate(),
        }
    }
}

/// The file `wsctl init` writes beside the config, and the template's first line points editors
/// to (the YAML language server reads `# yaml-language-server: $schema=…`).
pub const SCHEMA_FILE: &str = "wsctl.schema.json";

/// The JSON Schema of wsctl.yaml, derived from the types it is parsed into: the keys an
/// editor completes are the keys wsctl accepts. Checks beyond one field's shape (names that
/// must exist, grants a function needs) stay with `wsctl plan`.
pub fn json_schema() -> String {
    let mut schema = serde_json::to_value(schemars::schema_for!(Config)).expect("a schema is JSON");
    schema["title"] = "wsctl.yaml".into();
    serde_json::to_string_pretty(&schema).expect("a schema is JSON") + "\n"
}

fn default_stage() -> String {
    "dev".into()
}
fn default_arch() -> Arch {
    Arch::Arm64
}
fn default_route_selection() -> String {
    DEFAULT_ROUTE_SELECTION.into()
}
fn default_identity_source() -> Vec<String> {
    vec![DEFAULT_IDENTITY_SOURCE.into()]
}
fn default_retention() -> u32 {
    14
}
fn default_memory() -> u32 {
    128
}
fn default_timeout() -> u32 {
    10
}
fn default_ttl_attribute() -> String {
    "ttl".into()
}
fn default_burst() -> i32 {
    500
}
fn default_rate() -> f64 {
    1000.0
}

/// One problem in the config: where it is and what would be accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "cannot read {path}: {source}\nhint: run `wsctl init` to write a commented wsctl.yaml, or pass --config PATH"
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{}", render_problems(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

fn render_problems(path: &Path, problems: &[Problem]) -> String {
    let mut out = format!("{} has {} problem(s):", path.display(), problems.len());
    for p in problems {
        out.push_str(&format!("\n  - {}: {}", p.field, p.message));
    }
    out
}

/// A key attribute of a table or index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct KeyAttr {
    pub name: String,
    /// `S`, `N` or `B`.
    #[serde(rename = "type")]
    pub kind: String,
}

impl KeyAttr {
    pub fn parse(spec: &str) -> Result<KeyAttr, String> {
        let (name, kind) = match spec.split_once(':') {
            Some((n, k)) => (n, k),
            None => (spec, "S"),
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            return Err(format!(
                "`{spec}` is not a key attribute; write `name` (string) or `name:N` / `name:B`"
            ));
        }
        if !["S", "N", "B"].contains(&kind) {
            return Err(format!(
                "`{spec}` has type `{kind}`; allowed types are S, N and B"
            ));
        }
        Ok(KeyAttr {
            name: name.into(),
            kind: kind.into(),
        })
    }
}

impl Config {
    /// Reads and validates `path`. Relative crate paths are resolved against its directory.
    /// The stack's naming scheme.
    pub fn names(&self) -> crate::names::Names {
        crate::names::Names::new(&self.stack, &self.stage)
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Config::parse(path, &text)?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        for function in config.functions.values_mut() {
            if function.crate_path.is_relative() {
                function.crate_path = base.join(&function.crate_path);
            }
        }
        Ok(config)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let config: Config = serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                problems,
            })
        }
    }

    /// The architecture `function` is built and deployed for.
    pub fn arch_of(&self, function: &FunctionConfig) -> Arch {
        function.architecture.unwrap_or(self.architecture)
    }

    /// Every problem, not just the first, so one edit can fix them all.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        {
            let mut bad = |field: String, message: String| out.push(Problem { field, message });
            self.name_problems(&mut bad);
            self.function_problems(&mut bad);
            self.route_problems(&mut bad);
            self.authorizer_problems(&mut bad);
            self.table_problems(&mut bad);
            self.stage_problems(&mut bad);
            self.tag_problems(&mut bad);
        }
        if let Some(domain) = &self.domain {
            out.extend(domain.problems(self.region.as_deref()));
        }
        if let Some(logs) = &self.access_logs {
            out.extend(logs.problems());
        }
        if let Some(arn) = &self.permissions_boundary
            && !is_policy_arn(arn)
        {
            out.push(Problem {
                field: "permissions_boundary".into(),
                message: format!(
                    "`{arn}` is not a managed policy's ARN (arn:aws:iam::ACCOUNT:policy/NAME): name the policy your administrator made, or leave the key out and wsctl keeps the stack's own boundary"
                ),
            });
        }
        out.extend(
            self.limits
                .problems()
                .into_iter()
                .map(|(field, message)| Problem {
                    field: format!("limits.{field}"),
                    message,
                }),
        );
        out.extend(self.bundled_function_problems());
        out
    }

    /// The stack's and stage's names and the region.
    fn name_problems(&self, bad: &mut impl FnMut(String, String)) {
        if !is_name(&self.stack, 20) {
            bad(
                "stack".into(),
                format!(
                    "`{}` is not allowed: use 1-20 characters, lower-case letters, digits and `-`, starting with a letter",
                    self.stack
                ),
            );
        }
        if !is_name(&self.stage, 16) {
            bad(
                "stage".into(),
                format!(
                    "`{}` is not allowed: use 1-16 characters, lower-case letters, digits and `-`, starting with a letter",
                    self.stage
                ),
            );
        }
        if let Some(region) = &self.region {
            let ok = region.split('-').count() >= 3
                && region
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !ok {
                bad(
                    "region".into(),
                    format!("`{region}` is not an AWS region name such as `eu-west-1`"),
                );
            }
        }
    }

    /// Each function: its name, memory, timeout, handler, environment, tables and the functions it invokes.
    fn function_problems(&self, bad: &mut impl FnMut(String, String)) {
        if self.functions.is_empty() {
            bad(
                "functions".into(),
                "at least one function is required".into(),
            );
        }
        for (name, f) in &self.functions {
            let at = format!("functions.{name}");
            if !is_name(name, 24) {
                bad(at.clone(), "function names use 1-24 characters, lower-case letters, digits and `-`, starting with a letter".into());
            }
            if !(128..=10240).contains(&f.memory) {
                bad(
                    format!("{at}.memory"),
                    format!(
                        "{} MB is out of range: Lambda allows 128 to 10240",
                        f.memory
                    ),
                );
            }
            if !(1..=900).contains(&f.timeout) {
                bad(
                    format!("{at}.timeout"),
                    format!("{} s is out of range: Lambda allows 1 to 900", f.timeout),
                );
            }
            for key in f.environment.keys() {
                // Lambda's pattern for a key: `[a-zA-Z]([a-zA-Z0-9_])+` (Environment, API reference).
                let valid = key.len() >= 2
                    && key.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                    && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    bad(
                        format!("{at}.environment.{key}"),
                        "variable names are 2 or more letters, digits and `_`, starting with a letter (Lambda's rule)".into(),
                    );
                } else if LAMBDA_RESERVED_ENV.contains(&key.as_str()) {
                    bad(
                        format!("{at}.environment.{key}"),
                        format!("`{key}` is reserved: Lambda sets it in every function; remove it"),
                    );
                } else if key.starts_with("AWS_") || key.starts_with("WSCTL_") {
                    bad(format!("{at}.environment.{key}"), "names starting with AWS_ or WSCTL_ are reserved (Lambda and the AWS SDK read AWS_*, wsctl sets WSCTL_* itself)".into());
                }
            }
            for table in f.tables.keys() {
                if !self.tables.contains_key(table) {
                    bad(
                        format!("{at}.tables.{table}"),
                        format!(
                            "no table `{table}` is declared under `tables`; declared: {}",
                            list(self.tables.keys())
                        ),
                    );
                }
            }
            for target in &f.invoke {
                if !self.functions.contains_key(target) {
                    bad(
                        format!("{at}.invoke"),
                        format!(
                            "no function `{target}`; declared: {}",
                            list(self.functions.keys())
                        ),
                    );
                }
            }
            if f.reserved_concurrency.is_some_and(|n| n == 0 || n > 10_000) {
                bad(
                    format!("{at}.reserved_concurrency"),
                    "1 to 10000 (0 would throttle every call; stay below the account's limit, 1000 by default)"
                        .into(),
                );
            }
            // Lambda's Handler: at most 128 characters matching `[^\s]+` (CreateFunction).
            if let Some(h) = &f.handler
                && (h.is_empty() || h.chars().count() > 128 || h.chars().any(char::is_whitespace))
            {
                bad(
                    format!("{at}.handler"),
                    "1 to 128 characters, no spaces (Lambda's rule); omit it for `bootstrap`"
                        .into(),
                );
            }
            if f.bin.as_deref().is_some_and(str::is_empty) {
                bad(
                    format!("{at}.bin"),
                    "must not be empty; omit it to use the crate's name".into(),
                );
            }
        }
    }

    /// The routes, and the functions they name.
    fn route_problems(&self, bad: &mut impl FnMut(String, String)) {
        if self.routes.is_empty() {
            bad(
                "routes".into(),
                "at least one route is required, e.g. `$default: message`".into(),
            );
        }
        for (key, function) in &self.routes {
            let at = format!("routes.{key}");
            if key.starts_with('$') {
                if !SPECIAL_ROUTES.contains(&key.as_str()) {
                    bad(
                        at.clone(),
                        format!(
                            "`{key}` is not a route key: the only keys starting with `$` are $connect, $disconnect and $default"
                        ),
                    );
                }
            } else if key.is_empty()
                || key.len() > 128
                || !key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c))
            {
                bad(
                    at.clone(),
                    format!(
                        "`{key}` is not a route key: use 1-128 letters, digits, `_`, `-`, `.` or `:` (it is matched against the `action` field of a frame)"
                    ),
                );
            }
            if !self.functions.contains_key(function) {
                bad(
                    at,
                    format!(
                        "no function `{function}`; declared: {}",
                        list(self.functions.keys())
                    ),
                );
            }
        }
        if !self
            .route_selection_expression
            .starts_with("$request.body.")
        {
            bad(
                "route_selection_expression".into(),
                format!(
                    "`{}` is not allowed: it must select a body field, e.g. `$request.body.action`",
                    self.route_selection_expression
                ),
            );
        }
    }

    /// The `$connect` authorizer: its function, identity source, audience and identity provider.
    fn authorizer_problems(&self, bad: &mut impl FnMut(String, String)) {
        if let Some(auth) = &self.authorizer {
            if !self.functions.contains_key(&auth.function) {
                bad(
                    "authorizer.function".into(),
                    format!(
                        "no function `{}`; declared: {}",
                        auth.function,
                        list(self.functions.keys())
                    ),
                );
            }
            if !self.routes.contains_key("$connect") {
                bad(
                    "authorizer".into(),
                    "an authorizer runs on `$connect`, so `routes` must have a `$connect` route"
                        .into(),
                );
            }
            if auth.identity_source.is_empty() {
                bad(
                    "authorizer.identity_source".into(),
                    format!("at least one source is required, e.g. `{DEFAULT_IDENTITY_SOURCE}`"),
                );
            }
            for source in &auth.identity_source {
                let ok = [
                    "route.request.querystring.",
                    "route.request.header.",
                    "stageVariables.",
                    "context.",
                ]
                .iter()
                .any(|p| source.starts_with(p) && source.len() > p.len());
                if !ok {
                    bad(
                        "authorizer.identity_source".into(),
                        format!(
                            "`{source}` is not an identity source: use route.request.querystring.NAME or route.request.header.NAME"
                        ),
                    );
                }
            }
            if auth.audience.as_deref().is_some_and(str::is_empty) {
                bad(
                    "authorizer.audience".into(),
                    "must not be empty; omit it to accept tokens without `aud`".into(),
                );
            }
            if let Some(oidc) = &auth.oidc {
                // The same rule the authorizer applies before fetching keys.
                let url = wsctl_functions::http::is_trusted_url;
                if !url(&oidc.issuer) {
                    bad(
                        "authorizer.oidc.issuer".into(),
                        format!(
                            "`{}` is not an https:// URL (the `iss` of the provider's tokens)",
                            oidc.issuer
                        ),
                    );
                }
                if oidc.audience.is_empty() {
                    bad(
                        "authorizer.oidc.audience".into(),
                        "required: the `aud` the provider puts in tokens for this application"
                            .into(),
                    );
                }
                if let Some(u) = &oidc.jwks_url
                    && !url(u)
                {
                    bad(
                        "authorizer.oidc.jwks_url".into(),
                        format!("`{u}` is not an https:// URL (plain http only to this machine)"),
                    );
                }
                if oidc
                    .capabilities_claim
                    .as_deref()
                    .is_some_and(str::is_empty)
                {
                    bad(
                        "authorizer.oidc.capabilities_claim".into(),
                        "must not be empty; omit it to give every user `default_capabilities`"
                            .into(),
                    );
                }
                if let Some(prefix) = &oidc.user_prefix
                    && (prefix.contains('|') || prefix.chars().count() > 64)
                {
                    bad(
                        "authorizer.oidc.user_prefix".into(),
                        format!(
                            "`{prefix}` must be at most 64 characters without `|` (the separator before `sub`)"
                        ),
                    );
                }
                for (glob, ops) in &oidc.default_capabilities {
                    let rule = format!("{glob}:{}", ops.join(","));
                    if let Err(why) = wsctl_functions::auth::Capabilities::parse_rule(&rule) {
                        bad(format!("authorizer.oidc.default_capabilities.{glob}"), why);
                    }
                }
            }
        }
    }

    /// Each table: its name, keys and indexes.
    fn table_problems(&self, bad: &mut impl FnMut(String, String)) {
        for (name, t) in &self.tables {
            let at = format!("tables.{name}");
            if !is_name(name, 24) {
                bad(at.clone(), "table names use 1-24 characters, lower-case letters, digits and `-`, starting with a letter".into());
            }
            let mut keys = vec![
                (format!("{at}.partition_key"), Some(&t.partition_key)),
                (format!("{at}.sort_key"), t.sort_key.as_ref()),
            ];
            for (index, i) in &t.indexes {
                // DynamoDB's IndexName: 3-255 characters of `[a-zA-Z0-9_.-]` (CreateTable, API
                // reference). Table names need no such check: `is_name` above keeps the
                // physical `STACK-STAGE-NAME` within the same rule.
                let ok = (3..=255).contains(&index.len())
                    && index
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
                if !ok {
                    bad(
                        format!("{at}.indexes.{index}"),
                        "index names are 3-255 letters, digits, `_`, `.` or `-` (DynamoDB's rule)"
                            .into(),
                    );
                }
                keys.push((
                    format!("{at}.indexes.{index}.partition_key"),
                    Some(&i.partition_key),
                ));
                keys.push((
                    format!("{at}.indexes.{index}.sort_key"),
                    i.sort_key.as_ref(),
                ));
            }
            let mut types: BTreeMap<String, String> = BTreeMap::new();
            for (field, spec) in keys {
                let Some(spec) = spec else { continue };
                match KeyAttr::parse(spec) {
                    Err(e) => bad(field, e),
                    Ok(k) => {
                        if let Some(prev) = types.insert(k.name.clone(), k.kind.clone())
                            && prev != k.kind
                        {
                            bad(
                                field,
                                format!(
                                    "attribute `{}` is used as {} elsewhere in this table; one attribute has one type",
                                    k.name, prev
                                ),
                            );
                        }
                    }
                }
            }
            if t.ttl_attribute.is_empty() {
                bad(
                    format!("{at}.ttl_attribute"),
                    "must name the attribute holding the expiry (epoch seconds), e.g. `ttl`".into(),
                );
            }
        }
    }

    /// The stage's throttling and the log retention.
    fn stage_problems(&self, bad: &mut impl FnMut(String, String)) {
        if self.throttling.burst < 0 || self.throttling.burst > 5000 {
            bad(
                "throttling.burst".into(),
                format!(
                    "{} is out of range: 0 to 5000 (the account's burst limit)",
                    self.throttling.burst
                ),
            );
        }
        if !(0.0..=10000.0).contains(&self.throttling.rate) {
            bad(
                "throttling.rate".into(),
                format!(
                    "{} is out of range: 0 to 10000 requests/s (the account's limit)",
                    self.throttling.rate
                ),
            );
        }
        if !LOG_RETENTION_DAYS.contains(&self.log_retention_days) {
            bad(
                "log_retention_days".into(),
                format!(
                    "{} is not a CloudWatch Logs retention; allowed: {}",
                    self.log_retention_days,
                    list(LOG_RETENTION_DAYS.iter())
                ),
            );
        }
    }

    /// The stack's tags, by the narrowest rule of the services that carry them.
    fn tag_problems(&self, bad: &mut impl FnMut(String, String)) {
        for (key, value) in &self.tags {
            let at = format!("tags.{key}");
            if key.starts_with("wsctl:") || key.to_ascii_lowercase().starts_with("aws:") {
                bad(
                    at.clone(),
                    "keys starting with `wsctl:` or `aws:` are reserved".into(),
                );
            }
            if key.is_empty() || key.chars().count() > 128 {
                bad(at.clone(), "tag keys are 1-128 characters".into());
            }
            if value.chars().count() > 256 {
                bad(at.clone(), "tag values are at most 256 characters".into());
            }
            if let Some(c) = key.chars().chain(value.chars()).find(|&c| !is_tag_char(c)) {
                bad(
                    at,
                    format!(
                        "{c:?} is not allowed in a tag: use letters, digits, spaces and `_ . : / = + -` (DynamoDB's rule, the narrowest of the services wsctl tags: \"letters, white space, and numbers, plus the following special characters: + - = . _ : /\")"
                    ),
                );
            }
        }
        let tags = self.names().tags(&self.tags);
        // A table carries one tag more than the rest: when its TTL last changed.
        if tags.len() + TABLE_OWN_TAGS > MAX_TAGS {
            let own = tags.len() - self.tags.len() + TABLE_OWN_TAGS;
            bad(
                "tags".into(),
                format!(
                    "{} tags is too many: AWS allows {MAX_TAGS} per resource and wsctl adds {own} of its own, so at most {}",
                    self.tags.len(),
                    MAX_TAGS - own
                ),
            );
        }
    }
}

impl DomainConfig {
    fn problems(&self, region: Option<&str>) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut bad = |field: &str, message: String| {
            out.push(Problem {
                field: format!("domain.{field}"),
                message,
            })
        };
        // A DNS host name: labels of 1-63 letters, digits or `-` (not at either end), at most
        // 253 characters, at least two labels. API Gateway stores it in lower case.
        let name = &self.name;
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        };
        if name.len() > 253 || name.split('.').count() < 2 || !name.split('.').all(label_ok) {
            bad(
                "name",
                format!(
                    "`{name}` is not a host name: use lower-case labels of letters, digits and `-` separated by dots, e.g. `ws.example.com`"
                ),
            );
        }
        // arn:PARTITION:acm:REGION:ACCOUNT:certificate/ID
        let parts: Vec<&str> = self.certificate_arn.splitn(6, ':').collect();
        let arn_ok = parts.len() == 6
            && parts[0] == "arn"
            && parts[1].starts_with("aws")
            && parts[2] == "acm"
            && !parts[3].is_empty()
            && parts[4].len() == 12
            && parts[4].chars().all(|c| c.is_ascii_digit())
            && parts[5]
                .strip_prefix("certificate/")
                .is_some_and(|id| !id.is_empty());
        if !arn_ok {
            bad(
                "certificate_arn",
                format!(
                    "`{}` is not an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID); request one for `{name}` in AWS Certificate Manager",
                    self.certificate_arn
                ),
            );
        } else if let Some(region) = region
            && parts[3] != region
        {
            bad(
                "certificate_arn",
                format!(
                    "the certificate is in {}, the stack in {region}: a WebSocket API takes a regional certificate from its own region; request or import one there",
                    parts[3]
                ),
            );
        }
        // CreateApiMapping: letters, digits and `$-_.+!*'()`, `/` between levels, at most 300.
        if let Some(path) = &self.path {
            let ok = path.len() <= 300
                && !path.starts_with('/')
                && !path.ends_with('/')
                && !path.contains("//")
                && path
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "$-_.+!*'()/".contains(c));
            if !ok {
                bad(
                    "path",
                    format!(
                        "`{path}` is not an API mapping path: at most 300 letters, digits and `$-_.+!*'()`, levels separated by single `/`, none at either end; `\"\"` serves the stage at the root"
                    ),
                );
            }
        }
        out
    }
}

// ---- What the bundled functions need of the stack ----------------------------------------
//
// Their code reads fixed key and index names (`wsctl_functions::layout`), so tables that differ
// would deploy and then fail on every call; a missing grant would leave out a variable the
// function needs, and it would fail at cold start. Both are refused here, before any AWS call.

/// The crate directories of the functions wsctl ships, as `wsctl init`'s template names them
/// (relative to wsctl.yaml, or absolute once loaded).
const BUNDLED_PUBSUB: &str = "functions/pubsub";
const BUNDLED_AUTHORIZER: &str = "functions/authorizer";

/// `name` or `name:N`, as wsctl.yaml writes a key.
fn key_spec(a: &layout::Attr) -> String {
    match a.kind {
        layout::AttrType::S => a.name.to_string(),
        kind => format!("{}:{}", a.name, kind.code()),
    }
}

/// What a key field must be: `field` is `partition_key` or `sort_key`.
fn key_need(field: &str, a: &layout::Attr) -> String {
    format!(
        "the bundled functions need \"{}\" ({}); write `{field}: {}`",
        a.name,
        a.kind.code(),
        key_spec(a)
    )
}

/// Whether the configured key `spec` (already checked on its own) is `want`.
fn key_is(spec: Option<&String>, want: Option<&layout::Attr>) -> bool {
    let have = spec.and_then(|s| KeyAttr::parse(s).ok());
    match (have, want) {
        (None, None) => true,
        (Some(h), Some(w)) => h.name == w.name && h.kind == w.kind.code(),
        _ => false,
    }
}

impl FunctionConfig {
    fn is_bundled(&self, dir: &str) -> bool {
        self.crate_path.ends_with(dir)
    }
}

impl Config {
    fn bundled_function_problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut bad = |field: String, message: String| out.push(Problem { field, message });
        let mut used: Vec<&layout::Table> = Vec::new();
        for (name, f) in &self.functions {
            let at = format!("functions.{name}");
            if f.is_bundled(BUNDLED_AUTHORIZER) && !f.read_secret {
                bad(
                    format!("{at}.read_secret"),
                    "the bundled authorizer reads the token secret from SSM; set `read_secret: true`"
                        .into(),
                );
            }
            if f.is_bundled(BUNDLED_AUTHORIZER) {
                used.push(&layout::COUNTERS);
                if !f.tables.contains_key(layout::COUNTERS.name) {
                    bad(
                        format!("{at}.tables.{}", layout::COUNTERS.name),
                        format!(
                            "the bundled authorizer reads revocations (`wsctl revoke`) from it; add `tables: {{ {}: read }}`",
                            layout::COUNTERS.name
                        ),
                    );
                }
            }
            if !f.is_bundled(BUNDLED_PUBSUB) {
                continue;
            }
            let handlers = || list(layout::ROLES.iter().map(|r| r.handler));
            let Some(role) = f.handler.as_deref().and_then(layout::role) else {
                bad(
                    format!("{at}.handler"),
                    format!(
                        "the bundled {BUNDLED_PUBSUB} binary serves one of {}; set `handler:` to the one this function is",
                        handlers()
                    ),
                );
                continue;
            };
            for (table, need) in role.tables {
                used.push(*table);
                let enough = matches!(
                    (f.tables.get(table.name), need),
                    (Some(Access::ReadWrite), _)
                        | (Some(Access::Read), layout::Use::Read)
                        | (Some(Access::Write), layout::Use::Write)
                );
                if !enough {
                    bad(
                        format!("{at}.tables.{}", table.name),
                        format!(
                            "the bundled `{}` function needs `{}: {}`",
                            role.handler,
                            table.name,
                            need.grant()
                        ),
                    );
                }
            }
            if role.invokes_publish && !f.invoke.iter().any(|i| i == layout::PUBLISH_FUNCTION) {
                bad(
                    format!("{at}.invoke"),
                    format!(
                        "the bundled `{}` function hands fan-out to the `{p}` function; add `invoke: [{p}]`",
                        role.handler,
                        p = layout::PUBLISH_FUNCTION
                    ),
                );
            }
            if role.manages_connections && !f.manage_connections {
                bad(
                    format!("{at}.manage_connections"),
                    format!(
                        "the bundled `{}` function posts to connections; set `manage_connections: true`",
                        role.handler
                    ),
                );
            }
        }
        used.sort_by_key(|t| t.name);
        used.dedup();
        for want in used {
            let at = format!("tables.{}", want.name);
            let Some(t) = self.tables.get(want.name) else {
                bad(
                    at,
                    format!(
                        "the bundled functions need this table; declare `{}: {{ partition_key: {}{} }}`",
                        want.name,
                        key_spec(&want.partition_key),
                        want.sort_key
                            .map(|k| format!(", sort_key: {}", key_spec(&k)))
                            .unwrap_or_default()
                    ),
                );
                continue;
            };
            if !key_is(Some(&t.partition_key), Some(&want.partition_key)) {
                bad(
                    format!("{at}.partition_key"),
                    key_need("partition_key", &want.partition_key),
                );
            }
            if !key_is(t.sort_key.as_ref(), want.sort_key.as_ref()) {
                bad(
                    format!("{at}.sort_key"),
                    match &want.sort_key {
                        Some(k) => key_need("sort_key", k),
                        None => "the bundled functions read this table by its partition key alone; remove `sort_key`".into(),
                    },
                );
            }
            for index in want.indexes {
                let at = format!("{at}.indexes.{}", index.name);
                let Some(i) = t.indexes.get(index.name) else {
                    bad(
                        at,
                        format!(
                            "the bundled functions query this index; add `{}: {{ partition_key: {}{} }}` under `indexes`",
                            index.name,
                            key_spec(&index.partition_key),
                            index
                                .sort_key
                                .map(|k| format!(", sort_key: {}", key_spec(&k)))
                                .unwrap_or_default()
                        ),
                    );
                    continue;
                };
                if !key_is(Some(&i.partition_key), Some(&index.partition_key)) {
                    bad(
                        format!("{at}.partition_key"),
                        key_need("partition_key", &index.partition_key),
                    );
                }
                if !key_is(i.sort_key.as_ref(), index.sort_key.as_ref()) {
                    bad(
                        format!("{at}.sort_key"),
                        match &index.sort_key {
                            Some(k) => key_need("sort_key", k),
                            None => "the bundled functions need no sort key here; remove it".into(),
                        },
                    );
                }
            }
        }
        out
    }
}

/// A character every service wsctl tags allows: API Gateway's `^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$`
/// (TagResource, API reference; separators `\p{Z}` are the whitespace that is not a control
/// character) less `@`, which DynamoDB's tag characters ("Tagging restrictions in DynamoDB"), which every table of the
/// stack carries: API Gateway and Lambda would take `@` as well, DynamoDB does not.
fn is_tag_char(c: char) -> bool {
    c.is_alphanumeric() || (c.is_whitespace() && !c.is_control()) || "_.:/=+-".contains(c)
}

fn is_name(s: &str, max: usize) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && s.len() <= max
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.ends_with('-')
}

fn list<T: fmt::Display>(items: impl Iterator<Item = T>) -> String {
    let v: Vec<String> = items.map(|i| i.to_string()).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const GOOD: &str = r#"
stack: chat
functions:
  connect: { crate: fn/connect, tables: { connections: read-write } }
  message: { crate: fn/message, memory: 256 }
routes:
  $connect: connect
  $default: message
  sendmessage: message
tables:
  connections: { partition_key: pk, sort_key: "serial:N" }
"#;

    fn problems(text: &str) -> Vec<Problem> {
        match Config::parse(Path::new("wsctl.yaml"), text) {
            Err(ConfigError::Invalid { problems, .. }) => problems,
            other => panic!("expected validation problems, got {other:?}"),
        }
    }

    #[test]
    fn good_config_gets_defaults() {
        let c = Config::parse(Path::new("wsctl.yaml"), GOOD).unwrap();
        assert_eq!(c.stage, "dev");
        assert_eq!(c.architecture, Arch::Arm64);
        assert_eq!(c.functions["connect"].memory, 128);
        assert_eq!(c.functions["message"].memory, 256);
        assert_eq!(c.route_selection_expression, DEFAULT_ROUTE_SELECTION);
        assert_eq!(c.tables["connections"].ttl_attribute, "ttl");
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err =
            Config::parse(Path::new("wsctl.yaml"), &format!("{GOOD}colour: blue\n")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("colour"), "{text}");
        assert!(text.contains("wsctl.yaml"), "{text}");
    }

    #[test]
    fn wrong_type_is_a_parse_error() {
        let err = Config::parse(
            Path::new("w.yaml"),
            &GOOD.replace("memory: 256", "memory: lots"),
        )
        .unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
        assert!(err.to_string().contains("lots"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let text = GOOD.replace("memory: 256", "memory: 64").replace(
            "sendmessage: message",
            "$sendmessage: message\n  ok: nowhere",
        );
        let p = problems(&text);
        let fields: Vec<&str> = p.iter().map(|p| p.field.as_str()).collect();
        assert!(fields.contains(&"functions.message.memory"), "{p:?}");
        assert!(fields.contains(&"routes.$sendmessage"), "{p:?}");
        assert!(fields.contains(&"routes.ok"), "{p:?}");
        assert_eq!(p.len(), 3, "{p:?}");
    }

    #[test]
    fn key_types_and_references_are_checked() {
        let text = GOOD
            .replace("read-write", "read-write, history: read")
            .replace("serial:N", "serial:X");
        let p = problems(&text);
        assert!(
            p.iter()
                .any(|p| p.field == "functions.connect.tables.history"),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|p| p.field == "tables.connections.sort_key"
                    && p.message.contains("S, N and B")),
            "{p:?}"
        );
    }

    #[test]
    fn authorizer_needs_a_connect_route() {
        let text =
            GOOD.replace("  $connect: connect\n", "") + "authorizer: { function: connect }\n";
        let p = problems(&text);
        assert!(p.iter().any(|p| p.field == "authorizer"), "{p:?}");
    }

    #[test]
    fn the_init_template_is_a_valid_config() {
        let c = Config::parse(
            Path::new("wsctl.yaml"),
            include_str!("../../templates/wsctl.yaml"),
        )
        .unwrap();
        assert_eq!(c.functions.len(), 5);
        assert_eq!(c.authorizer.unwrap().function, "authorizer");
    }

    #[test]
    fn the_template_with_every_commented_option_is_valid() {
        // Uncommenting the optional settings must give a config that loads as documented.
        let template = include_str!("../../templates/wsctl.yaml");
        let text: String = template
            .lines()
            .map(|l| {
                let t = l.trim_start();
                let optional = [
                    "# reserved_concurrency",
                    "# audience",
                    "# oidc",
                    "#   issuer",
                    "#   audience",
                    "#   capabilities_claim",
                    "#   default_capabilities",
                ];
                if optional.iter().any(|o| t.starts_with(o)) {
                    l.replacen("# ", "", 1)
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let c =
            Config::parse(Path::new("wsctl.yaml"), &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let auth = c.authorizer.unwrap();
        let oidc = auth.oidc.expect("oidc");
        assert_eq!(
            (auth.audience.as_deref(), oidc.audience.as_str()),
            (Some("chat"), "chat-app")
        );
        assert_eq!(c.functions["publish"].reserved_concurrency, Some(100));
    }

    #[test]
    fn reserved_concurrency_is_at_least_one() {
        let zero = GOOD.replace("memory: 256 }", "memory: 256, reserved_concurrency: 0 }");
        let p = problems(&zero);
        assert!(
            p.iter()
                .any(|p| p.field == "functions.message.reserved_concurrency"),
            "{p:?}"
        );
        let one = GOOD.replace("memory: 256 }", "memory: 256, reserved_concurrency: 1 }");
        assert!(Config::parse(Path::new("wsctl.yaml"), &one).is_ok());
    }

    #[test]
    fn a_handler_is_lambdas_handler_setting() {
        for bad in ["\"\"", "\"two words\"", &"h".repeat(129)] {
            let text = GOOD.replace("memory: 256 }", &format!("memory: 256, handler: {bad} }}"));
            let p = problems(&text);
            assert!(
                p.iter().any(|p| p.field == "functions.message.handler"),
                "{bad}: {p:?}"
            );
        }
        let good = GOOD.replace("memory: 256 }", "memory: 256, handler: message }");
        let c = Config::parse(Path::new("wsctl.yaml"), &good).unwrap();
        assert_eq!(c.functions["message"].handler.as_deref(), Some("message"));
        assert_eq!(c.functions["connect"].handler, None);
    }

    #[test]
    fn oidc_settings_are_checked() {
        let text = GOOD.to_string()
            + "authorizer:\n  function: connect\n  audience: ''\n  oidc:\n    issuer: ftp://id\n    audience: ''\n    jwks_url: http://id.example.com/keys\n    default_capabilities: { 'room-*': [subscribe, dance] }\n";
        let fields: Vec<String> = problems(&text).into_iter().map(|p| p.field).collect();
        for f in [
            "authorizer.audience",
            "authorizer.oidc.issuer",
            "authorizer.oidc.audience",
            "authorizer.oidc.jwks_url",
            "authorizer.oidc.default_capabilities.room-*",
        ] {
            assert!(fields.iter().any(|x| x == f), "{f} not in {fields:?}");
        }
    }

    fn fields(text: &str) -> Vec<(String, String)> {
        problems(text)
            .into_iter()
            .map(|p| (p.field, p.message))
            .collect()
    }

    #[test]
    fn index_names_follow_dynamodbs_rule() {
        let with_index = |name: &str| {
            GOOD.replace(
                "sort_key: \"serial:N\" }",
                &format!(
                    "sort_key: \"serial:N\", indexes: {{ '{name}': {{ partition_key: serial:N }} }} }}"
                ),
            )
        };
        for bad in ["ab", "by connection", "by/x", &"i".repeat(256)] {
            let p = fields(&with_index(bad));
            assert!(
                p.iter()
                    .any(|(f, m)| f == &format!("tables.connections.indexes.{bad}")
                        && m.contains("3-255")),
                "{bad}: {p:?}"
            );
        }
        for good in ["ByConnection", "by_connection.v2", "abc", "by-connection"] {
            assert!(
                Config::parse(Path::new("wsctl.yaml"), &with_index(good)).is_ok(),
                "{good}"
            );
        }
    }

    #[test]
    fn tags_follow_api_gateways_rules_and_count() {
        let with_tags = |tags: &str| format!("{GOOD}tags: {{ {tags} }}\n");
        for (tags, field, says) in [
            ("'team#1': x", "tags.team#1", "'#'"),
            ("team: 'a,b'", "tags.team", "','"),
            ("owner: 'ana@example.com'", "tags.owner", "DynamoDB"),
            ("'AWS:x': y", "tags.AWS:x", "reserved"),
            ("'wsctl:stack': y", "tags.wsctl:stack", "reserved"),
            (&format!("'{}': y", "k".repeat(129)), "tags.kkk", "1-128"),
            (&format!("team: '{}'", "v".repeat(257)), "tags.team", "256"),
        ] {
            let p = fields(&with_tags(tags));
            assert!(
                p.iter()
                    .any(|(f, m)| f.starts_with(field) && m.contains(says)),
                "{tags}: {p:?}"
            );
        }
        let fine = with_tags("'team name': 'Équipe temps-réel', 'a.b:c/d=e+f-g_i': '日本 1'");
        assert!(Config::parse(Path::new("wsctl.yaml"), &fine).is_ok());

        // wsctl adds its own two, and a table one more: 47 of the user's is the most.
        let many = |n: usize| {
            with_tags(
                &(0..n)
                    .map(|i| format!("t{i}: v"))
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        };
        assert!(Config::parse(Path::new("wsctl.yaml"), &many(47)).is_ok());
        let p = fields(&many(48));
        assert!(
            p.iter()
                .any(|(f, m)| f == "tags" && m.contains("50") && m.contains("at most 47")),
            "{p:?}"
        );
    }

    #[test]
    fn lambdas_reserved_variables_are_refused_and_tz_is_not() {
        let with_env = |env: &str| {
            GOOD.replace(
                "memory: 256 }",
                &format!("memory: 256, environment: {{ {env} }} }}"),
            )
        };
        for key in [
            "LAMBDA_TASK_ROOT",
            "LAMBDA_RUNTIME_DIR",
            "AWS_REGION",
            "AWS_LAMBDA_RUNTIME_API",
            "_HANDLER",
            "X",
        ] {
            let p = fields(&with_env(&format!("{key}: v")));
            assert!(
                p.iter()
                    .any(|(f, _)| f == &format!("functions.message.environment.{key}")),
                "{key}: {p:?}"
            );
        }
        assert!(Config::parse(Path::new("wsctl.yaml"), &with_env("TZ: Europe/Paris")).is_ok());
    }

    #[test]
    fn tables_the_bundled_functions_cannot_use_are_refused_naming_the_field() {
        let template = include_str!("../../templates/wsctl.yaml");
        let renamed = template.replace("    partition_key: pk\n", "    partition_key: id\n");
        assert_ne!(renamed, template);
        let p = problems(&renamed);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].field, "tables.connections.partition_key");
        assert!(
            p[0].message
                .contains(r#"the bundled functions need "pk" (S); write `partition_key: pk`"#),
            "{p:?}"
        );

        let edits = [
            (
                "sort_key: serial:N",
                "sort_key: serial",
                "tables.history.sort_key",
            ),
            (
                "by-connection: {",
                "by-conn: {",
                "tables.subscriptions.indexes.by-connection",
            ),
            (
                "{ partition_key: connection, sort_key: channel }",
                "{ partition_key: connection:N, sort_key: channel }",
                "tables.subscriptions.indexes.by-connection.partition_key",
            ),
            (
                "  counters:\n    partition_key: channel\n",
                "",
                "tables.counters",
            ),
            (
                "    partition_key: pk\n",
                "    partition_key: pk\n    sort_key: at:N\n",
                "tables.connections.sort_key",
            ),
            (
                "history: read-write, counters: read-write }\n    manage",
                "history: read-write, counters: read }\n    manage",
                "functions.message.tables.counters",
            ),
            ("    handler: publish\n", "", "functions.publish.handler"),
            (
                "    tables: { connections: read-write, subscriptions: read-write, counters: read-write }\n    invoke: [publish]",
                "    tables: { connections: read-write, subscriptions: read-write, counters: read-write }",
                "functions.disconnect.invoke",
            ),
            // A wsctl.yaml written before the per-client limits: `$connect` counts each user's
            // connections in `counters`, and `$disconnect` frees the place.
            (
                "tables: { connections: read-write, counters: read-write }",
                "tables: { connections: read-write }",
                "functions.connect.tables.counters",
            ),
            (
                "subscriptions: read-write, counters: read-write }\n    invoke",
                "subscriptions: read-write }\n    invoke",
                "functions.disconnect.tables.counters",
            ),
            (
                "    read_secret: true",
                "    read_secret: false",
                "functions.authorizer.read_secret",
            ),
        ];
        for (from, to, field) in edits {
            let text = template.replacen(from, to, 1);
            assert_ne!(text, template, "{from}");
            let p = problems(&text);
            assert!(p.iter().any(|p| p.field == field), "{field}: {p:?}");
        }

        // What may vary reaches the functions through their environment.
        let ttl = template.replace("ttl_attribute: ttl", "ttl_attribute: expires_at");
        assert_ne!(ttl, template);
        Config::parse(Path::new("wsctl.yaml"), &ttl).unwrap();
        // Functions of one's own shape their tables as they like (GOOD's sort key, say).
        Config::parse(Path::new("wsctl.yaml"), GOOD).unwrap();
    }

    #[test]
    fn key_attr_parses_types() {
        assert_eq!(
            KeyAttr::parse("pk").unwrap(),
            KeyAttr {
                name: "pk".into(),
                kind: "S".into()
            }
        );
        assert_eq!(KeyAttr::parse("n:N").unwrap().kind, "N");
        assert!(KeyAttr::parse(":N").is_err());
    }

    #[test]
    fn a_named_boundary_must_be_a_managed_policys_arn() {
        let with = |arn: &str| format!("{GOOD}permissions_boundary: \"{arn}\"\n");
        for good in [
            "arn:aws:iam::123456789012:policy/org/app-boundary",
            "arn:aws-cn:iam::123456789012:policy/b",
        ] {
            let config = Config::parse(Path::new("wsctl.yaml"), &with(good)).unwrap();
            assert_eq!(config.permissions_boundary.as_deref(), Some(good));
        }
        for bad in [
            "arn:aws:iam::123456789012:role/b",
            "arn:aws:iam::12345:policy/b",
            "app-boundary",
            "arn:aws:iam::123456789012:policy/",
        ] {
            let found = problems(&with(bad));
            assert_eq!(found.len(), 1, "{bad}: {found:?}");
            assert_eq!(found[0].field, "permissions_boundary");
            assert!(
                found[0].message.contains("not a managed policy's ARN"),
                "{found:?}"
            );
        }
    }

    #[test]
    fn access_logs_are_checked_for_retention_format_and_role() {
        let with = |logs: &str| format!("{GOOD}access_logs: {logs}\n");
        let fields = |text: &str| -> Vec<String> {
            problems(&with(text))
                .into_iter()
                .map(|p| format!("{}: {}", p.field, p.message))
                .collect()
        };
        let ok = Config::parse(Path::new("wsctl.yaml"), &with("{}")).unwrap();
        let logs = ok.access_logs.unwrap();
        assert_eq!(logs.account_role(), AccountRole::Existing);
        assert_eq!(logs.format(), ACCESS_LOG_FORMAT);
        let line: serde_json::Value = serde_json::from_str(ACCESS_LOG_FORMAT).unwrap();
        assert_eq!(line["connectionId"], "$context.connectionId");

        let create = Config::parse(Path::new("wsctl.yaml"), &with("{ account_role: create }"));
        assert_eq!(
            create.unwrap().access_logs.unwrap().account_role(),
            AccountRole::Create
        );
        let arn = "arn:aws:iam::123456789012:role/ops/apigw-logs";
        let named = Config::parse(
            Path::new("wsctl.yaml"),
            &with(&format!("{{ account_role: '{arn}' }}")),
        );
        assert_eq!(
            named.unwrap().access_logs.unwrap().account_role(),
            AccountRole::Arn(arn)
        );

        let bad = fields("{ account_role: yes-please }");
        assert!(
            bad[0].starts_with(
                "access_logs.account_role: `yes-please` is neither `create` nor an IAM role ARN"
            ),
            "{bad:?}"
        );
        let bad = fields("{ account_role: 'arn:aws:iam::123456789012:user/bob' }");
        assert_eq!(bad.len(), 1, "{bad:?}");
        let bad = fields("{ retention_days: 10 }");
        assert!(
            bad[0].starts_with("access_logs.retention_days: 10 is not a CloudWatch Logs retention"),
            "{bad:?}"
        );
        let bad = fields("{ format: '$context.connectionId $context.status' }");
        assert!(
            bad[0].starts_with("access_logs.format: must contain `$context.requestId`"),
            "{bad:?}"
        );
        let bad = fields("{ format: \"$context.requestId\\n$context.status\" }");
        assert!(
            bad[0].starts_with("access_logs.format: must be one line"),
            "{bad:?}"
        );
        let long = format!(
            "{{ format: '$context.requestId {}' }}",
            "$context.status ".repeat(200)
        );
        let bad = fields(&long);
        assert!(
            bad[0].starts_with("access_logs.format: is 3") && bad[0].contains("at most 3 KB"),
            "{bad:?}"
        );
        let unknown = Config::parse(Path::new("wsctl.yaml"), &with("{ retention: 7 }"))
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("retention"), "{unknown}");
    }

    #[test]
    fn a_custom_domain_is_checked_against_dns_acm_and_api_mapping_rules() {
        let with = |domain: &str| format!("{GOOD}region: eu-west-1\ndomain: {domain}\n");
        let cert = "arn:aws:acm:eu-west-1:123456789012:certificate/abc";
        let ok = Config::parse(
            Path::new("wsctl.yaml"),
            &with(&format!(
                "{{ name: ws.example.com, certificate_arn: '{cert}' }}"
            )),
        )
        .unwrap();
        let domain = ok.domain.as_ref().unwrap();
        assert_eq!(
            domain.mapping_key("dev"),
            "dev",
            "the stage path by default"
        );

        let fields = |text: &str| -> Vec<String> {
            problems(&with(text))
                .into_iter()
                .map(|p| format!("{}: {}", p.field, p.message))
                .collect()
        };
        let bad_name = fields(&format!(
            "{{ name: 'WS_example', certificate_arn: '{cert}' }}"
        ));
        assert!(
            bad_name[0].starts_with("domain.name: `WS_example` is not a host name"),
            "{bad_name:?}"
        );
        let other_region = fields(
            "{ name: ws.example.com, certificate_arn: 'arn:aws:acm:us-east-1:123456789012:certificate/x' }",
        );
        assert!(
            other_region[0].contains("the certificate is in us-east-1, the stack in eu-west-1"),
            "{other_region:?}"
        );
        let not_acm = fields("{ name: ws.example.com, certificate_arn: 'arn:aws:iam::1:x' }");
        assert!(
            not_acm[0].contains("is not an ACM certificate ARN"),
            "{not_acm:?}"
        );
        let bad_path = fields(&format!(
            "{{ name: ws.example.com, certificate_arn: '{cert}', path: '/v1//x' }}"
        ));
        assert!(bad_path[0].starts_with("domain.path:"), "{bad_path:?}");
        let root = Config::parse(
            Path::new("wsctl.yaml"),
            &with(&format!(
                "{{ name: ws.example.com, certificate_arn: '{cert}', path: '' }}"
            )),
        )
        .unwrap();
        assert_eq!(root.domain.unwrap().mapping_key("dev"), "");
    }
}
