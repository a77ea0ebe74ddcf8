//! The naming scheme: what each resource of a stack is called and where it lives. Names are
//! derived from stack + stage only, so every command (and every function, through its
//! environment) finds the stack's resources again without a state file.

use std::collections::BTreeMap;

use wsctl_functions::layout;
use wsctl_functions::partition::Partition;

pub type Tags = BTreeMap<String, String>;

/// Tag every resource of a stack carries; nothing without it is ever changed or deleted.
pub const STACK_TAG: &str = "wsctl:stack";
pub const STAGE_TAG: &str = "wsctl:stage";
/// Statement ids of the permissions wsctl adds to a function's policy start so; others in the
/// policy are not the stack's and are left alone.
pub const PERMISSION_SID_PREFIX: &str = "wsctl-";
/// Statement id of the permission that lets the stack's authorizer call its function.
pub const AUTHORIZER_SID: &str = "wsctl-authorizer";
/// Statement ids of per-route permissions start so (see [`route_sid`]).
pub const ROUTE_SID_PREFIX: &str = "wsctl-route-";
/// Shown in a plan where an id only exists once the API (or the authorizer) does.
pub const UNKNOWN_API_ID: &str = "(known after apply)";

/// Where the stack lives: filled from STS and the API once it exists.
#[derive(Debug, Clone)]
pub struct Target {
    pub account: String,
    pub region: String,
    pub api_id: Option<String>,
    /// The id of the stack's authorizer, once it exists: its function's permission names it.
    pub authorizer_id: Option<String>,
    /// The CloudWatch Logs role API Gateway's account settings name in the region, once read
    /// (only for a stack with access logs).
    pub logging_role: Option<String>,
}

impl Target {
    pub(crate) fn api(&self) -> &str {
        self.api_id.as_deref().unwrap_or(UNKNOWN_API_ID)
    }

    /// The partition of the region: the prefix of every ARN and the domain of every URL.
    pub fn partition(&self) -> Partition {
        Partition::of(&self.region)
    }

    /// An ARN of `service` in this account and region.
    pub fn arn(&self, service: &str, resource: &str) -> String {
        self.partition()
            .arn(service, &self.region, &self.account, resource)
    }

    pub fn function_arn(&self, function: &str) -> String {
        self.arn("lambda", &format!("function:{function}"))
    }

    pub fn invoke_uri(&self, function: &str) -> String {
        let path = format!(
            "path/2015-03-31/functions/{}/invocations",
            self.function_arn(function)
        );
        self.partition()
            .arn("apigateway", &self.region, "lambda", &path)
    }

    pub fn api_arn(&self) -> String {
        self.arn("execute-api", self.api())
    }

    /// The source API Gateway names when a route of `stage` invokes its function: the
    /// route's `methodArn`, `arn:aws:execute-api:region:account-id:api-id/stage-name/route-key`
    /// ("Control access to WebSocket APIs with AWS Lambda REQUEST authorizers", API Gateway
    /// developer guide).
    pub fn route_arn(&self, stage: &str, route_key: &str) -> String {
        format!("{}/{stage}/{route_key}", self.api_arn())
    }

    /// The source API Gateway names when the authorizer invokes its function:
    /// `arn:aws:execute-api:region:account-id:api-id/authorizers/authorizer-id`.
    pub fn authorizer_arn(&self) -> String {
        format!(
            "{}/authorizers/{}",
            self.api_arn(),
            self.authorizer_id.as_deref().unwrap_or(UNKNOWN_API_ID)
        )
    }

    pub fn role_arn(&self, path: &str, role: &str) -> String {
        self.partition()
            .arn("iam", "", &self.account, &format!("role{path}{role}"))
    }

    /// A customer managed policy's ARN; `path` starts and ends with `/`.
    pub fn policy_arn(&self, path: &str, name: &str) -> String {
        self.partition()
            .arn("iam", "", &self.account, &format!("policy{path}{name}"))
    }
    pub fn table_arn(&self, table: &str) -> String {
        self.arn("dynamodb", &format!("table/{table}"))
    }

    /// A log group's own ARN, as an access log destination names it (`…:log-group:NAME`).
    pub fn log_group_destination(&self, group: &str) -> String {
        self.arn("logs", &format!("log-group:{group}"))
    }

    /// The ARN IAM policies use for a log group's streams (`…:log-group:NAME:*`).
    pub fn log_group_arn(&self, group: &str) -> String {
        self.arn("logs", &format!("log-group:{group}:*"))
    }

    /// An SSM parameter's ARN; `name` starts with `/`.
    pub fn parameter_arn(&self, name: &str) -> String {
        self.arn("ssm", &format!("parameter{name}"))
    }
}

/// Physical names of a stack's resources.
#[derive(Debug, Clone)]
pub struct Names {
    pub stack: String,
    pub stage: String,
}

impl Names {
    pub fn new(stack: &str, stage: &str) -> Names {
        Names {
            stack: stack.to_string(),
            stage: stage.to_string(),
        }
    }
    /// Prefix of every function, role and table name of the stack.
    pub fn prefix(&self) -> String {
        format!("{}-{}-", self.stack, self.stage)
    }
    pub fn function(&self, logical: &str) -> String {
        format!("{}{logical}", self.prefix())
    }
    pub fn table(&self, logical: &str) -> String {
        format!("{}{logical}", self.prefix())
    }
    pub fn api(&self) -> String {
        format!("{}-{}", self.stack, self.stage)
    }
    pub fn role_path(&self) -> String {
        format!("/wsctl/{}/{}/", self.stack, self.stage)
    }
    /// The name of the managed policy that bounds the stack's roles (under [`Self::role_path`]).
    pub fn boundary(&self) -> String {
        format!("{}-{}-boundary", self.stack, self.stage)
    }
    pub fn log_group(&self, function: &str) -> String {
        format!("/aws/lambda/{}", self.function(function))
    }
    /// The stage's access log.
    pub fn access_log_group(&self) -> String {
        format!("/aws/apigateway/{}/access", self.api())
    }
    /// The alarm of `alarms.KEY` (`function_errors` → `STACK-STAGE-function-errors`).
    pub fn alarm(&self, key: &str) -> String {
        format!("{}{}", self.prefix(), key.replace('_', "-"))
    }
    /// The topic the stack creates for `alarms.emails`.
    pub fn alarm_topic(&self) -> String {
        format!("{}alarms", self.prefix())
    }
    pub fn dashboard(&self) -> String {
        self.api()
    }
    /// The event bus the stack creates for `events:` when it names none.
    pub fn event_bus(&self) -> String {
        self.api()
    }
    /// The `source` of the stage's events on the bus.
    pub fn event_source(&self) -> String {
        format!("wsctl.{}.{}", self.stack, self.stage)
    }
    /// What the dashboard's first widget says, by which the stack knows its own dashboard.
    pub fn dashboard_mark(&self) -> String {
        format!("wsctl stack `{}` stage `{}`", self.stack, self.stage)
    }
    pub fn secret(&self) -> String {
        format!("/wsctl/{}/{}/token-secret", self.stack, self.stage)
    }
    pub fn authorizer(&self) -> String {
        format!("{}-authorizer", self.api())
    }
    pub fn tags(&self, extra: &Tags) -> Tags {
        let mut tags = extra.clone();
        tags.insert(STACK_TAG.into(), self.stack.clone());
        tags.insert(STAGE_TAG.into(), self.stage.clone());
        tags
    }
    /// True when `tags` say the resource belongs to this stack and stage.
    pub fn owns(&self, tags: &Tags) -> bool {
        tags.get(STACK_TAG) == Some(&self.stack) && tags.get(STAGE_TAG) == Some(&self.stage)
    }
    /// Environment variable a function reads a table's name from.
    pub fn table_env(logical: &str) -> String {
        layout::table_env(logical)
    }
    pub fn function_env(logical: &str) -> String {
        layout::function_env(logical)
    }
}

/// The statement id of the permission for route `key`: readable, and unique per key although
/// statement ids allow fewer characters (letters, digits, `-`, `_`; at most 100) than route keys.
pub fn route_sid(key: &str) -> String {
    use sha2::{Digest, Sha256};
    let readable: String = key
        .chars()
        .filter(|c| *c != '$')
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(60)
        .collect();
    let hash = Sha256::digest(key.as_bytes());
    format!(
        "{ROUTE_SID_PREFIX}{readable}-{:02x}{:02x}{:02x}{:02x}",
        hash[0], hash[1], hash[2], hash[3]
    )
}

/// The `@connections` base URL of a stage, as a function posts to it.
pub fn connections_url(target: &Target, stage: &str) -> String {
    let host = target
        .partition()
        .execute_api_host(target.api(), &target.region);
    format!("https://{host}/{stage}")
}
