//! `wsctl.yaml`: parsed strictly (unknown keys are errors), then validated as a whole so
//! that one run reports every problem, each naming the file, the field and what is allowed.
//!
//! Loading never talks to AWS: a bad config fails before any credential is looked up.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use wsctl_functions::layout;

mod access_logs;
mod alarms;
mod bundled;
mod check;
mod domain;
mod events;
mod tables;
#[cfg(test)]
pub(crate) mod tests;

pub use access_logs::{AccessLogsConfig, AccountRole};
pub use alarms::AlarmsConfig;
pub use domain::DomainConfig;
pub use events::EventsConfig;
pub use tables::{KeyAttr, TableConfig};

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
    /// The stage: lower-case letters, digits and `-`; its resources are named `STACK-STAGE-…`,
    /// so several stages of one stack live side by side in an account.
    #[serde(default = "default_stage")]
    #[schemars(length(min = 1, max = 16), regex(pattern = r"^[a-z][a-z0-9-]*$"))]
    pub stage: String,
    /// Falls back to the credential chain's region (profile, `AWS_REGION`).
    #[serde(default)]
    pub region: Option<String>,
    /// Default architecture of every function.
    #[serde(default = "default_arch")]
    pub architecture: Arch,
    /// The stack's Lambda functions, by name: the bundled ones and any of your own.
    pub functions: BTreeMap<String, FunctionConfig>,
    /// Route key → function: `$connect`, `$disconnect`, `$default`, or a custom key matched
    /// against the frame's `action`. Each route adds a statement to its function's
    /// resource-based policy, which Lambda caps at 20 KB (about 40 routes on one function).
    pub routes: BTreeMap<String, String>,
    /// How API Gateway picks a frame's route.
    #[serde(default = "default_route_selection")]
    pub route_selection_expression: String,
    /// A Lambda REQUEST authorizer on `$connect`, which every handshake passes through.
    #[serde(default)]
    pub authorizer: Option<AuthorizerConfig>,
    /// The stack's DynamoDB tables, by name: on-demand, with TTL on.
    #[serde(default)]
    pub tables: BTreeMap<String, TableConfig>,
    /// The stage's default throttling, one token bucket over every frame of every client.
    #[serde(default)]
    pub throttling: Throttling,
    /// Days the functions' logs are kept: one of the periods CloudWatch Logs accepts.
    #[serde(default = "default_retention")]
    #[schemars(extend("enum" = LOG_RETENTION_DAYS))]
    pub log_retention_days: u32,
    /// Tags added to every resource (`wsctl:` and `aws:` prefixes are reserved): letters,
    /// digits, spaces and `_ . : / = + -`, keys ≤ 128 and values ≤ 256 characters, at most 50
    /// with wsctl's own.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// A custom domain for the stage: `wss://NAME/PATH`.
    #[serde(default)]
    pub domain: Option<DomainConfig>,
    /// The stage's access log: one line per connect, message and disconnect.
    #[serde(default)]
    pub access_logs: Option<AccessLogsConfig>,
    /// A CloudWatch dashboard of the stage (`STACK-STAGE`): API Gateway's, Lambda's,
    /// DynamoDB's and the functions' own metrics. Free for an account's first three
    /// dashboards, then $3 a month each.
    #[serde(default = "default_dashboard")]
    pub dashboard: bool,
    /// A URL on the `publish` function that backends publish through with one SigV4-signed
    /// `POST {"channel", "data", "id"?}` (a Lambda function URL with `AuthType` `AWS_IAM`).
    /// `wsctl deploy` and `wsctl status` print it; `wsctl publish --print-policy` prints the IAM
    /// policy a backend needs. No charge per request beyond the function's own.
    #[serde(default)]
    pub publish_endpoint: bool,
    /// Events to an EventBridge bus (connects, disconnects, presence, the messages of chosen
    /// channels), for rules to send on to Lambda, SQS or a webhook (API destinations).
    #[serde(default)]
    pub events: Option<EventsConfig>,
    /// CloudWatch alarms on the stage's health (each key left out keeps its default).
    #[serde(default)]
    pub alarms: Option<AlarmsConfig>,
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
    /// This function's architecture, instead of the stack's.
    #[serde(default)]
    pub architecture: Option<Arch>,
    /// Environment variables, beside the `WSCTL_*` ones wsctl sets.
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
    /// The function (a key of `functions`) that authorizes handshakes.
    pub function: String,
    /// Where the token is in the handshake; a handshake without it is refused with 401
    /// before the authorizer runs.
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

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Throttling {
    /// Frames at once (API Gateway's bucket size, ≤ 5,000).
    #[serde(default = "default_burst")]
    pub burst: i32,
    /// Frames a second, sustained (≤ 10,000).
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
fn default_dashboard() -> bool {
    true
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
        if let Some(alarms) = &self.alarms {
            out.extend(alarms.problems(self.region.as_deref()));
        }
        if let Some(events) = &self.events {
            out.extend(events.problems(self.region.as_deref()));
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

/// `arn:PARTITION:iam::ACCOUNT:policy/PATH/NAME`, the form IAM accepts as a boundary.
fn is_policy_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    matches!(parts.as_slice(), ["arn", partition, "iam", "", account, resource]
        if partition.starts_with("aws")
            && (*account == "aws" || (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())))
            && resource.strip_prefix("policy/").is_some_and(|name| !name.is_empty() && !name.ends_with('/')))
}
