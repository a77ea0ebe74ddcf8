//! The stack as plain data: what the config asks for and what AWS has are both expressed as
//! [`Spec`]s, so planning is a comparison of values and needs no I/O.
//!
//! References between resources are logical (a route names its function, not an integration
//! id): the reader resolves ids back to names, which keeps desired and current comparable and
//! makes physical ids an apply-time detail.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

use crate::config::KeyAttr;

pub type Tags = BTreeMap<String, String>;

/// Resource kinds, in creation order. Deletion runs in the reverse order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Secret,
    Table,
    LogGroup,
    Api,
    Role,
    Function,
    Permission,
    Integration,
    Authorizer,
    Route,
    Stage,
}

impl Kind {
    pub const ALL: [Kind; 11] = [
        Kind::Secret,
        Kind::Table,
        Kind::LogGroup,
        Kind::Api,
        Kind::Role,
        Kind::Function,
        Kind::Permission,
        Kind::Integration,
        Kind::Authorizer,
        Kind::Route,
        Kind::Stage,
    ];

    /// Kinds in the same wave do not depend on each other and are applied in parallel.
    /// Roles need the API id (their policy names its stage); functions need roles; everything
    /// API Gateway holds needs the functions; routes need integrations and the authorizer.
    pub fn wave(self) -> u8 {
        match self {
            Kind::Secret | Kind::Table | Kind::LogGroup | Kind::Api => 0,
            Kind::Role => 1,
            Kind::Function => 2,
            Kind::Permission | Kind::Integration | Kind::Authorizer => 3,
            Kind::Route => 4,
            Kind::Stage => 5,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Kind::Secret => "secret",
            Kind::Table => "table",
            Kind::LogGroup => "log group",
            Kind::Api => "api",
            Kind::Role => "role",
            Kind::Function => "function",
            Kind::Permission => "permission",
            Kind::Integration => "integration",
            Kind::Authorizer => "authorizer",
            Kind::Route => "route",
            Kind::Stage => "stage",
        }
    }

    /// Fields that cannot change in place: a change to one replaces the resource.
    pub fn immutable_fields(self) -> &'static [&'static str] {
        match self {
            Kind::Table => &["partition_key", "sort_key", "indexes"],
            Kind::Role => &["path"],
            Kind::Permission => &["source_arn"],
            // Neither UpdateStage nor stage tagging is portable across endpoints (moto lacks
            // both), and a stage is cheap to recreate.
            Kind::Stage => &["auto_deploy", "throttling_burst", "throttling_rate", "tags"],
            _ => &[],
        }
    }
}

/// A resource's identity within the stack: its kind and its stable (deterministic) name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ResourceId {
    pub kind: Kind,
    pub name: String,
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.label(), self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecretSpec {
    pub name: String,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IndexSpec {
    pub partition_key: KeyAttr,
    pub sort_key: Option<KeyAttr>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableSpec {
    pub name: String,
    pub partition_key: KeyAttr,
    pub sort_key: Option<KeyAttr>,
    pub indexes: BTreeMap<String, IndexSpec>,
    pub ttl_attribute: Option<String>,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogGroupSpec {
    pub name: String,
    pub retention_days: Option<u32>,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiSpec {
    pub name: String,
    pub route_selection_expression: String,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoleSpec {
    pub name: String,
    pub path: String,
    pub assume_role_policy: Value,
    /// Inline policies by name; wsctl writes exactly one.
    pub policies: BTreeMap<String, Value>,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionSpec {
    pub name: String,
    pub role: String,
    pub runtime: String,
    pub handler: String,
    pub architecture: String,
    pub memory: i32,
    pub timeout: i32,
    pub environment: BTreeMap<String, String>,
    /// Base64 SHA-256 of the deployment zip, as Lambda reports `CodeSha256`.
    pub code_sha256: String,
    /// Concurrent executions reserved for the function (`PutFunctionConcurrency`); none when unset.
    pub reserved_concurrency: Option<i32>,
    pub tags: Tags,
    /// Where the zip is on disk; not compared.
    #[serde(skip)]
    pub zip: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PermissionSpec {
    pub function: String,
    pub statement_id: String,
    pub source_arn: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntegrationSpec {
    /// The function it invokes (logical key).
    pub function: String,
    pub uri: String,
    pub timeout_ms: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuthorizerSpec {
    pub name: String,
    pub function: String,
    pub uri: String,
    pub identity_source: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteSpec {
    pub route_key: String,
    /// Function whose integration the route targets.
    pub function: Option<String>,
    /// Authorizer name when the route uses one (only `$connect` can).
    pub authorizer: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageSpec {
    pub name: String,
    pub auto_deploy: bool,
    pub throttling_burst: i32,
    pub throttling_rate: f64,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Spec {
    Secret(SecretSpec),
    Table(TableSpec),
    LogGroup(LogGroupSpec),
    Api(ApiSpec),
    Role(RoleSpec),
    Function(FunctionSpec),
    Permission(PermissionSpec),
    Integration(IntegrationSpec),
    Authorizer(AuthorizerSpec),
    Route(RouteSpec),
    Stage(StageSpec),
}

impl Spec {
    pub fn kind(&self) -> Kind {
        match self {
            Spec::Secret(_) => Kind::Secret,
            Spec::Table(_) => Kind::Table,
            Spec::LogGroup(_) => Kind::LogGroup,
            Spec::Api(_) => Kind::Api,
            Spec::Role(_) => Kind::Role,
            Spec::Function(_) => Kind::Function,
            Spec::Permission(_) => Kind::Permission,
            Spec::Integration(_) => Kind::Integration,
            Spec::Authorizer(_) => Kind::Authorizer,
            Spec::Route(_) => Kind::Route,
            Spec::Stage(_) => Kind::Stage,
        }
    }

    pub fn id(&self) -> ResourceId {
        let name = match self {
            Spec::Secret(s) => &s.name,
            Spec::Table(s) => &s.name,
            Spec::LogGroup(s) => &s.name,
            Spec::Api(s) => &s.name,
            Spec::Role(s) => &s.name,
            Spec::Function(s) => &s.name,
            Spec::Permission(s) => &s.function,
            Spec::Integration(s) => &s.function,
            Spec::Authorizer(s) => &s.name,
            Spec::Route(s) => &s.route_key,
            Spec::Stage(s) => &s.name,
        };
        ResourceId {
            kind: self.kind(),
            name: name.clone(),
        }
    }

    /// Top-level fields as JSON values, the unit of comparison.
    pub fn fields(&self) -> BTreeMap<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map.into_iter().collect(),
            _ => BTreeMap::new(),
        }
    }
}

/// A resource as read from AWS: its spec and the id AWS gave it (when it is not the name).
#[derive(Debug, Clone, PartialEq)]
pub struct Live {
    pub spec: Spec,
    pub physical_id: Option<String>,
}

/// Everything of the stack found in the account.
#[derive(Debug, Clone, Default)]
pub struct LiveState {
    pub resources: BTreeMap<ResourceId, Live>,
    /// Resources with a name the stack would use but without its tags: never touched.
    pub foreign: Vec<ResourceId>,
}

impl LiveState {
    pub fn physical_id(&self, kind: Kind, name: &str) -> Option<&str> {
        let id = ResourceId {
            kind,
            name: name.to_string(),
        };
        self.resources
            .get(&id)
            .and_then(|l| l.physical_id.as_deref())
    }

    pub fn api_id(&self) -> Option<&str> {
        self.resources
            .iter()
            .find(|(id, _)| id.kind == Kind::Api && !id.name.contains('#'))
            .and_then(|(_, l)| l.physical_id.as_deref())
    }
}
