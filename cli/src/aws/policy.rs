//! The least-privilege IAM policy of the identity that runs `wsctl deploy`, `plan`, `status` and
//! `destroy` for one stack: `wsctl deploy --print-policy` prints it, and README shows it for the
//! template's stack (a unit test keeps the two equal).
//!
//! [`GRANTS`] is the one list of what each service's calls need. Where a resource is named by
//! the stack, the grant names it (its roles by their path, its functions, tables and log groups
//! by the `STACK-STAGE-` prefix, its SSM parameter exactly); `*` only stands for the resource
//! of actions whose Service Authorization Reference entry has no resource type (the list calls
//! wsctl uses to find the stack's resources again).
//!
//! The policy cannot be used to escalate: every role it may create or give a policy carries
//! the stack's permissions boundary (`iam:PermissionsBoundary` on `CreateRole`, `PutRolePolicy`
//! and `PutRolePermissionsBoundary`, the IAM actions whose Service Authorization Reference
//! entry has that key); the boundary itself is only read (an administrator makes and changes
//! it); `DeleteRolePermissionsBoundary`, `AttachRolePolicy` on the stack's roles and
//! `CreatePolicy` are never granted. `UpdateAssumeRolePolicy` has no such key: a trust policy
//! it writes reaches a role whose boundary lets only the stack's functions act.
//!
//! API Gateway assigns an API's id at creation. An API and its stages carry the stack's tags,
//! and API Gateway evaluates `aws:ResourceTag` and `aws:RequestTag` for them (API Gateway
//! Developer Guide, "Using tags to control access" and "API Gateway resources that can be
//! tagged"): creating, changing, deleting and tagging them is conditioned on those tags. Routes,
//! integrations and authorizers of an HTTP or WebSocket API inherit no tags (inheritance is a
//! V1 API feature, same page), so their paths name the stack's API id once it exists (printed
//! with credentials after the first deploy), and any API's before.
//!
//! `sts:GetCallerIdentity` is absent on purpose: it needs no permission (STS API reference).

use serde_json::{Value, json};
use wsctl_functions::layout;

use super::{AwsArgs, AwsError, Clients, account};
use crate::config::{AccessLogsConfig, AccountRole, Config};
use crate::engine::desired::boundary_arn;
use crate::error::Error;
use crate::names::{Names, STACK_TAG, STAGE_TAG, Target};
use crate::output::{Document, Printer};

/// Which ARNs a grant covers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scope {
    /// The stack's roles: every role under its path.
    Roles,
    /// A role named like one of the stack's, at any path: a deploy looks for such a namesake
    /// by name (GetRole, authorized on `role/NAME` while no role has that name) and refuses.
    RoleNamesakes,
    /// The stack's functions, `STACK-STAGE-*`.
    Functions,
    /// API Gateway's management paths of the region's APIs, and the tagging path.
    Apis,
    /// The collection CreateApi posts to.
    ApiCollection,
    /// The stack's API itself and its stage.
    StackApi,
    /// The paths under the stack's API (under any API while its id is not known).
    StackApiParts,
    /// API Gateway's tagging path.
    ApiTags,
    /// The stack's own permissions boundary.
    Boundary,
    /// The stack's tables and their indexes.
    Tables,
    /// The stack's log groups.
    LogGroups,
    /// Every log group of the account and region: `DescribeLogGroups` is authorized on
    /// `log-group:*` (CloudWatch Logs permissions reference).
    AllLogGroups,
    /// The stack's token-secret parameter.
    Secret,
    /// The stack's alarms, `STACK-STAGE-*`.
    Alarms,
    /// Every alarm of the account and region: DescribeAlarms is authorized on `alarm:*`
    /// when it lists by prefix.
    AllAlarms,
    /// The stage's dashboard (dashboard ARNs name no region).
    Dashboard,
    /// The topic the stack creates for its alarms.
    AlarmTopic,
    /// The event bus the stack creates for `events:`.
    EventBus,
    /// The rules on that bus (`rule/BUS/NAME`), which go with it.
    EventBusRules,
    /// No resource type: the action is authorized on `*` only.
    Any,
}

/// What must hold for a grant to apply.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Condition {
    /// The role is passed to this service (its principal, by partition).
    PassedTo(&'static str),
    /// The role carries the stack's permissions boundary.
    Boundary,
    /// The request tags the new resource with the stack and stage.
    RequestTags,
    /// The resource is tagged with the stack and stage.
    ResourceTags,
}

/// Actions on one scope, with an optional IAM condition.
pub struct Grant {
    pub sid: &'static str,
    pub actions: &'static [&'static str],
    pub scope: Scope,
    pub condition: Option<Condition>,
}

const LOG_GROUP_ACTIONS: &[&str] = &[
    "logs:CreateLogGroup",
    "logs:DeleteLogGroup",
    "logs:DeleteRetentionPolicy",
    "logs:ListTagsForResource",
    "logs:PutRetentionPolicy",
    "logs:TagResource",
    "logs:UntagResource",
];

/// What wsctl calls, per service, and where.
pub const GRANTS: &[Grant] = &[
    Grant {
        sid: "StackRoles",
        actions: &[
            "iam:DeleteRole",
            "iam:DeleteRolePolicy",
            "iam:GetRole",
            "iam:GetRolePolicy",
            "iam:ListRolePolicies",
            "iam:ListRoleTags",
            "iam:TagRole",
            "iam:UntagRole",
            "iam:UpdateAssumeRolePolicy",
        ],
        scope: Scope::Roles,
        condition: None,
    },
    Grant {
        sid: "StackRolesWithinBoundary",
        actions: &[
            "iam:CreateRole",
            "iam:PutRolePermissionsBoundary",
            "iam:PutRolePolicy",
        ],
        scope: Scope::Roles,
        condition: Some(Condition::Boundary),
    },
    // Read, and deleted with the stack; never created or changed (see the module's comment).
    Grant {
        sid: "StackBoundary",
        actions: &[
            "iam:DeletePolicy",
            "iam:DeletePolicyVersion",
            "iam:GetPolicyVersion",
            "iam:ListPolicyTags",
            "iam:ListPolicyVersions",
            "iam:TagPolicy",
            "iam:UntagPolicy",
        ],
        scope: Scope::Boundary,
        condition: None,
    },
    Grant {
        sid: "FindRoleNamesakes",
        actions: &["iam:GetRole"],
        scope: Scope::RoleNamesakes,
        condition: None,
    },
    // Lambda checks iam:PassRole when a function is given its role; only Lambda may receive one.
    Grant {
        sid: "PassStackRolesToLambda",
        actions: &["iam:PassRole"],
        scope: Scope::Roles,
        condition: Some(Condition::PassedTo("lambda")),
    },
    Grant {
        sid: "StackFunctions",
        actions: &[
            "lambda:AddPermission",
            "lambda:CreateFunction",
            "lambda:CreateFunctionUrlConfig",
            "lambda:DeleteFunction",
            "lambda:DeleteFunctionConcurrency",
            "lambda:DeleteFunctionUrlConfig",
            "lambda:GetFunction",
            "lambda:GetFunctionConcurrency",
            "lambda:GetFunctionConfiguration",
            "lambda:GetFunctionUrlConfig",
            "lambda:GetPolicy",
            "lambda:ListTags",
            "lambda:PutFunctionConcurrency",
            "lambda:RemovePermission",
            "lambda:TagResource",
            "lambda:UntagResource",
            "lambda:UpdateFunctionCode",
            "lambda:UpdateFunctionConfiguration",
            "lambda:UpdateFunctionUrlConfig",
        ],
        scope: Scope::Functions,
        condition: None,
    },
    // API Gateway authorizes by HTTP method on the resource's path (API Gateway Developer
    // Guide, "Control access to the API Gateway management API"); tagging an API or a stage is
    // a call on `/tags/ARN`.
    Grant {
        sid: "ReadApis",
        actions: &["apigateway:GET"],
        scope: Scope::Apis,
        condition: None,
    },
    Grant {
        sid: "CreateStackApi",
        actions: &["apigateway:POST"],
        scope: Scope::ApiCollection,
        condition: Some(Condition::RequestTags),
    },
    Grant {
        sid: "StackApi",
        actions: &["apigateway:DELETE", "apigateway:PATCH"],
        scope: Scope::StackApi,
        condition: Some(Condition::ResourceTags),
    },
    Grant {
        sid: "StackApiParts",
        actions: &["apigateway:DELETE", "apigateway:PATCH", "apigateway:POST"],
        scope: Scope::StackApiParts,
        condition: None,
    },
    Grant {
        sid: "TagStackApi",
        actions: &["apigateway:DELETE", "apigateway:POST"],
        scope: Scope::ApiTags,
        condition: Some(Condition::ResourceTags),
    },
    Grant {
        sid: "StackTables",
        actions: &[
            "dynamodb:CreateTable",
            "dynamodb:DeleteTable",
            "dynamodb:DescribeContinuousBackups",
            "dynamodb:DescribeTable",
            "dynamodb:DescribeTimeToLive",
            "dynamodb:ListTagsOfResource",
            "dynamodb:TagResource",
            "dynamodb:UntagResource",
            "dynamodb:UpdateContinuousBackups",
            "dynamodb:UpdateTable",
            "dynamodb:UpdateTimeToLive",
        ],
        scope: Scope::Tables,
        condition: None,
    },
    Grant {
        sid: "StackLogGroups",
        actions: LOG_GROUP_ACTIONS,
        scope: Scope::LogGroups,
        condition: None,
    },
    Grant {
        sid: "FindLogGroups",
        actions: &["logs:DescribeLogGroups"],
        scope: Scope::AllLogGroups,
        condition: None,
    },
    // A SecureString under the account's AWS-managed key (`aws/ssm`) needs no KMS grant: that
    // key's policy lets the account's principals use it through SSM.
    Grant {
        sid: "TokenSecret",
        actions: &[
            "ssm:AddTagsToResource",
            "ssm:DeleteParameter",
            "ssm:GetParameter",
            "ssm:ListTagsForResource",
            "ssm:PutParameter",
            "ssm:RemoveTagsFromResource",
        ],
        scope: Scope::Secret,
        condition: None,
    },
    // Every deploy reads the alarms, their topic and the dashboard, so one the config no
    // longer asks for is found and deleted.
    Grant {
        sid: "StackAlarms",
        actions: &[
            "cloudwatch:DeleteAlarms",
            "cloudwatch:ListTagsForResource",
            "cloudwatch:PutMetricAlarm",
            "cloudwatch:TagResource",
            "cloudwatch:UntagResource",
        ],
        scope: Scope::Alarms,
        condition: None,
    },
    Grant {
        sid: "FindAlarms",
        actions: &["cloudwatch:DescribeAlarms"],
        scope: Scope::AllAlarms,
        condition: None,
    },
    Grant {
        sid: "StackDashboard",
        actions: &[
            "cloudwatch:DeleteDashboards",
            "cloudwatch:GetDashboard",
            "cloudwatch:PutDashboard",
        ],
        scope: Scope::Dashboard,
        condition: None,
    },
    Grant {
        sid: "AlarmTopic",
        actions: &[
            "sns:CreateTopic",
            "sns:DeleteTopic",
            "sns:ListSubscriptionsByTopic",
            "sns:ListTagsForResource",
            "sns:Subscribe",
            "sns:TagResource",
            "sns:Unsubscribe",
            "sns:UntagResource",
        ],
        scope: Scope::AlarmTopic,
        condition: None,
    },
    Grant {
        sid: "StackEventBus",
        actions: &[
            "events:CreateEventBus",
            "events:DeleteEventBus",
            "events:DescribeEventBus",
            "events:ListTagsForResource",
            "events:TagResource",
            "events:UntagResource",
        ],
        scope: Scope::EventBus,
        condition: None,
    },
    // A bus is deleted once its rules and their targets are (DeleteEventBus).
    Grant {
        sid: "StackEventBusRules",
        actions: &[
            "events:DeleteRule",
            "events:ListTargetsByRule",
            "events:RemoveTargets",
        ],
        scope: Scope::EventBusRules,
        condition: None,
    },
    Grant {
        sid: "FindStackResources",
        actions: &[
            "dynamodb:ListTables",
            "events:ListRules",
            "iam:ListPolicies",
            "iam:ListRoles",
            "lambda:ListFunctions",
            "sns:ListTopics",
        ],
        scope: Scope::Any,
        condition: None,
    },
    // Whether a reservation fits the account's concurrency, checked before any change.
    Grant {
        sid: "ReadLambdaAccountLimits",
        actions: &["lambda:GetAccountSettings"],
        scope: Scope::Any,
        condition: None,
    },
];

/// The ARN patterns of `scope` for this stack (`target.api_id` names its API once known).
pub fn resources(scope: Scope, names: &Names, target: &Target) -> Vec<String> {
    let prefix = names.prefix();
    let region = &target.region;
    let apigateway = |path: &str| target.partition().arn("apigateway", region, "", path);
    let api = target.api_id.as_deref();
    match scope {
        Scope::Roles => vec![target.role_arn(&names.role_path(), "*")],
        Scope::RoleNamesakes => vec![target.role_arn("/", &format!("*{prefix}*"))],
        Scope::Functions => vec![target.function_arn(&format!("{prefix}*"))],
        Scope::Apis => vec![
            apigateway("/apis"),
            apigateway("/apis/*"),
            apigateway("/tags/*"),
        ],
        Scope::ApiCollection => vec![apigateway("/apis")],
        // Unnamed, any path under `/apis`: only the API and its stages carry tags, so the
        // tag condition leaves the rest to `StackApiParts`.
        Scope::StackApi => match api {
            Some(id) => vec![
                apigateway(&format!("/apis/{id}")),
                apigateway(&format!("/apis/{id}/stages/{}", names.stage)),
            ],
            None => vec![apigateway("/apis/*")],
        },
        Scope::StackApiParts => vec![apigateway(&format!("/apis/{}/*", api.unwrap_or("*")))],
        Scope::ApiTags => vec![apigateway("/tags/*")],
        Scope::Boundary => vec![target.policy_arn(&names.role_path(), &names.boundary())],
        Scope::Tables => vec![target.table_arn(&format!("{prefix}*"))],
        Scope::LogGroups => {
            vec![target.arn("logs", &format!("log-group:{}*", names.log_group("")))]
        }
        Scope::AllLogGroups => vec![target.arn("logs", "log-group:*")],
        Scope::Secret => vec![target.parameter_arn(&names.secret())],
        Scope::Alarms => vec![target.arn("cloudwatch", &format!("alarm:{prefix}*"))],
        Scope::AllAlarms => vec![target.arn("cloudwatch", "alarm:*")],
        Scope::Dashboard => vec![target.partition().arn(
            "cloudwatch",
            "",
            &target.account,
            &format!("dashboard/{}", names.dashboard()),
        )],
        Scope::AlarmTopic => vec![target.arn("sns", &names.alarm_topic())],
        Scope::EventBus => vec![target.arn("events", &format!("event-bus/{}", names.event_bus()))],
        Scope::EventBusRules => {
            vec![target.arn("events", &format!("rule/{}/*", names.event_bus()))]
        }
        Scope::Any => vec!["*".into()],
    }
}

/// The policy document for `config`'s stack in `target`'s account and region.
pub fn deployer_policy(config: &Config, target: &Target) -> Value {
    let names = config.names();
    let partition = target.partition();
    let boundary = boundary_arn(config, target);
    let statements: Vec<Value> = GRANTS
        .iter()
        // A boundary the config names is its administrator's, not the stack's to delete.
        .filter(|grant| grant.scope != Scope::Boundary || config.permissions_boundary.is_none())
        .map(|grant| {
            let mut statement = json!({
                "Sid": grant.sid,
                "Effect": "Allow",
                "Action": grant.actions,
                "Resource": resources(grant.scope, &names, target),
            });
            let tags = |kind: &str| {
                json!({"StringEquals": {
                    format!("aws:{kind}/{STACK_TAG}"): names.stack,
                    format!("aws:{kind}/{STAGE_TAG}"): names.stage,
                }})
            };
            statement["Condition"] = match grant.condition {
                None => return statement,
                Some(Condition::PassedTo(service)) => json!({"StringEquals": {
                    "iam:PassedToService": partition.service_principal(service)
                }}),
                Some(Condition::Boundary) => {
                    json!({"StringEquals": {"iam:PermissionsBoundary": boundary}})
                }
                Some(Condition::RequestTags) => tags("RequestTag"),
                Some(Condition::ResourceTags) => tags("ResourceTag"),
            };
            statement
        })
        .collect::<Vec<Value>>();
    let mut statements = statements;
    let apigateway = |path: &str| partition.arn("apigateway", &target.region, "", path);
    // Every deploy looks for the stack's custom domain (one removed from the config is found
    // by its tags and deleted); changing one needs the write methods on its own paths only.
    statements.push(json!({
        "Sid": "FindCustomDomain",
        "Effect": "Allow",
        "Action": ["apigateway:GET"],
        "Resource": [apigateway("/domainnames"), apigateway("/domainnames/*")],
    }));
    if let Some(domain) = &config.domain {
        statements.push(json!({
            "Sid": "CustomDomain",
            "Effect": "Allow",
            "Action": ["apigateway:DELETE", "apigateway:PATCH", "apigateway:POST"],
            "Resource": [
                apigateway("/domainnames"),
                apigateway(&format!("/domainnames/{}", domain.name)),
                apigateway(&format!("/domainnames/{}/*", domain.name)),
            ],
        }));
    }
    if let Some(logs) = &config.access_logs {
        statements.extend(access_log_statements(logs, &names, target));
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// The stage's access log group, API Gateway's account settings (read always; written, and the
/// role passed to API Gateway, only when the config names or creates the role), and the role
/// wsctl creates when asked to.
fn access_log_statements(logs: &AccessLogsConfig, names: &Names, target: &Target) -> Vec<Value> {
    let partition = target.partition();
    let group = names.access_log_group();
    let mut out = vec![json!({
        "Sid": "AccessLogGroup",
        "Effect": "Allow",
        "Action": LOG_GROUP_ACTIONS,
        "Resource": [target.arn("logs", &format!("log-group:{group}")), target.log_group_arn(&group)],
    })];
    let account = partition.arn("apigateway", &target.region, "", "/account");
    let passed = match logs.account_role() {
        AccountRole::Existing => None,
        AccountRole::Arn(arn) => Some(arn.to_string()),
        AccountRole::Create => Some(account::logging_role_arn(target)),
    };
    // Reading the setting is every deploy's; writing it only when the config names the role.
    let actions = match passed {
        None => json!(["apigateway:GET"]),
        Some(_) => json!(["apigateway:GET", "apigateway:PATCH"]),
    };
    out.push(json!({
        "Sid": "ApiGatewayAccountSettings",
        "Effect": "Allow",
        "Action": actions,
        "Resource": [account],
    }));
    let Some(role) = passed else {
        return out;
    };
    // UpdateAccount passes the role to API Gateway.
    out.push(json!({
        "Sid": "PassLoggingRoleToApiGateway",
        "Effect": "Allow",
        "Action": ["iam:PassRole"],
        "Resource": [role],
        "Condition": {"StringEquals": {"iam:PassedToService": partition.service_principal("apigateway")}},
    }));
    if logs.account_role() == AccountRole::Create {
        out.push(json!({
            "Sid": "LoggingRole",
            "Effect": "Allow",
            "Action": ["iam:CreateRole", "iam:GetRole"],
            "Resource": [role],
        }));
        out.push(json!({
            "Sid": "LoggingRolePolicy",
            "Effect": "Allow",
            "Action": ["iam:AttachRolePolicy"],
            "Resource": [role],
            "Condition": {"ArnEquals": {"iam:PolicyARN": account::push_to_cloudwatch_arn(partition)}},
        }));
    }
    out
}

/// What a backend needs to publish through the stack's publish endpoint. Lambda authorizes a
/// request to an `AWS_IAM` function URL as `lambda:InvokeFunctionUrl` and, for URLs created
/// since October 2025, `lambda:InvokeFunction` too ("Control access to Lambda function URLs",
/// Lambda Developer Guide). The second is limited to requests through the URL
/// (`lambda:InvokedViaFunctionUrl`): a plain Invoke of the publish function also takes
/// fan-out jobs, which post any frame to any connection.
pub fn publisher_policy(config: &Config, target: &Target) -> Value {
    let function = target.function_arn(&config.names().function(layout::PUBLISH_FUNCTION));
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "PublishEndpoint",
                "Effect": "Allow",
                "Action": "lambda:InvokeFunctionUrl",
                "Resource": function,
                "Condition": {"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}},
            },
            {
                "Sid": "PublishEndpointOnly",
                "Effect": "Allow",
                "Action": "lambda:InvokeFunction",
                "Resource": function,
                "Condition": {"Bool": {"lambda:InvokedViaFunctionUrl": "true"}},
            },
        ],
    })
}

/// Which policy `wsctl deploy` or `wsctl publish` prints.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Printed {
    /// `deploy --print-policy`: the deploying identity's.
    Deployer,
    /// `deploy --print-boundary`: the stack's roles' permissions boundary.
    Boundary,
    /// `publish --print-policy`: a backend's, for the publish endpoint.
    Publisher,
}

/// `wsctl deploy --print-policy` / `--print-boundary`, `wsctl publish --print-policy`: the
/// account comes from STS and the API's id from API Gateway (the only calls made); without
/// credentials both are `*`, and a note says so.
pub async fn print(
    config: &Config,
    aws: &AwsArgs,
    which: Printed,
    printer: &Printer,
) -> Result<Document, Error> {
    let target = match Clients::connect(aws, config.region.as_deref()).await {
        Ok(clients) => {
            let account = clients.account().await?;
            let api_id = super::apigw::find_api(&clients, &config.names()).await?;
            if api_id.is_none() && which == Printed::Deployer {
                printer.note(
                    "the stack's API does not exist yet, so its routes, integrations and authorizer are granted on any API of the region; print the policy again after the first deploy to name it",
                );
            }
            Target {
                account,
                region: clients.region,
                api_id,
                authorizer_id: None,
                logging_role: None,
            }
        }
        Err(AwsError::NoCredentials(_)) => {
            let region = aws
                .region
                .clone()
                .or_else(|| config.region.clone())
                .ok_or(AwsError::NoRegion)?;
            printer.note(
                "no AWS credentials were found, so the account is not known: every ARN has `*` for it; run with credentials to have it filled in"
            );
            Target {
                account: "*".into(),
                region,
                api_id: None,
                authorizer_id: None,
                logging_role: None,
            }
        }
        Err(e) => return Err(e.into()),
    };
    let policy = match which {
        Printed::Deployer => deployer_policy(config, &target),
        Printed::Boundary => crate::engine::desired::boundary_policy(&config.names(), &target),
        Printed::Publisher => {
            if !config.publish_endpoint {
                printer.note(
                    "the config has no `publish_endpoint: true`: this policy takes effect once it is set and deployed",
                );
            }
            publisher_policy(config, &target)
        }
    };
    Ok(Document(policy))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> Config {
        Config::parse(
            std::path::Path::new("wsctl.yaml"),
            include_str!("../../../templates/wsctl.yaml"),
        )
        .unwrap()
    }

    fn target(region: &str) -> Target {
        Target {
            account: "123456789012".into(),
            region: region.into(),
            api_id: None,
            authorizer_id: None,
            logging_role: None,
        }
    }

    #[test]
    fn readme_shows_the_printed_policy() {
        let printed =
            serde_json::to_string_pretty(&deployer_policy(&template(), &target("eu-west-1")))
                .unwrap();
        let readme = include_str!("../../../README.md");
        let shown = readme
            .split("<!-- print-policy -->\n```json\n")
            .nth(1)
            .and_then(|rest| rest.split("\n```").next())
            .expect("README has the policy block");
        assert_eq!(
            shown, printed,
            "README's policy differs from `wsctl deploy --print-policy` for the template: paste the printed one"
        );
    }

    /// The printed policy, evaluated by `wsctl dev`'s IAM evaluator: what a deploy and a
    /// destroy call is allowed; every way its holder could reach beyond the stack is not.
    #[test]
    fn the_printed_policy_deploys_the_stack_and_refuses_every_escalation() {
        use crate::engine::desired::boundary_policy;
        use crate::local::iam::{Ask, Principal};

        let config = template();
        let mut t = target("eu-west-1");
        let before_api = Principal::new(
            "arn:aws:iam::123456789012:role/ci",
            &[deployer_policy(&config, &t)],
            None,
        );
        t.api_id = Some("a1b2c3d4e5".into());
        let deployer = Principal::new(
            "arn:aws:iam::123456789012:role/ci",
            &[deployer_policy(&config, &t)],
            None,
        );
        let names = config.names();
        let boundary = boundary_arn(&config, &t);
        assert_eq!(
            boundary,
            "arn:aws:iam::123456789012:policy/wsctl/chat/dev/chat-dev-boundary"
        );
        let role = |name: &str| t.role_arn(&names.role_path(), name);
        let apigw = |path: &str| t.partition().arn("apigateway", "eu-west-1", "", path);
        let bounded = |ask: Ask| ask.with("iam:PermissionsBoundary", &boundary);
        let tagged = |ask: Ask, kind: &str, stack: &str| {
            ask.with(&format!("aws:{kind}/wsctl:stack"), stack)
                .with(&format!("aws:{kind}/wsctl:stage"), "dev")
        };
        let ours = |ask: Ask| tagged(ask, "ResourceTag", "chat");

        let deploy_and_destroy = vec![
            Ask::new("iam:ListPolicies", "*"),
            Ask::new("iam:GetPolicyVersion", &boundary),
            bounded(Ask::new("iam:CreateRole", role("chat-dev-message"))),
            bounded(Ask::new("iam:PutRolePolicy", role("chat-dev-message"))),
            bounded(Ask::new(
                "iam:PutRolePermissionsBoundary",
                role("chat-dev-message"),
            )),
            Ask::new("iam:PassRole", role("chat-dev-message"))
                .with("iam:PassedToService", "lambda.amazonaws.com"),
            Ask::new("lambda:CreateFunction", t.function_arn("chat-dev-message")),
            tagged(
                Ask::new("apigateway:POST", apigw("/apis")),
                "RequestTag",
                "chat",
            ),
            ours(Ask::new("apigateway:PATCH", apigw("/apis/a1b2c3d4e5"))),
            ours(Ask::new(
                "apigateway:PATCH",
                apigw("/apis/a1b2c3d4e5/stages/dev"),
            )),
            Ask::new("apigateway:POST", apigw("/apis/a1b2c3d4e5/routes")),
            Ask::new(
                "apigateway:PATCH",
                apigw("/apis/a1b2c3d4e5/integrations/x1"),
            ),
            ours(Ask::new(
                "apigateway:POST",
                apigw("/tags/arn:aws:apigateway:eu-west-1::/apis/a1b2c3d4e5"),
            )),
            Ask::new("dynamodb:CreateTable", t.table_arn("chat-dev-history")),
            ours(Ask::new("apigateway:DELETE", apigw("/apis/a1b2c3d4e5"))),
            Ask::new("iam:DeleteRole", role("chat-dev-message")),
            Ask::new("iam:DeletePolicyVersion", &boundary),
            Ask::new("iam:DeletePolicy", &boundary),
        ];
        assert_eq!(deployer.check(&deploy_and_destroy), Ok(()));
        assert_eq!(before_api.check(&deploy_and_destroy), Ok(()));

        let admin = "arn:aws:iam::aws:policy/AdministratorAccess";
        let theirs = |ask: Ask| tagged(ask, "ResourceTag", "billing");
        let escalations = [
            (
                "a role without the boundary",
                Ask::new("iam:CreateRole", role("chat-dev-evil")),
            ),
            (
                "a role with another boundary",
                Ask::new("iam:CreateRole", role("chat-dev-evil"))
                    .with("iam:PermissionsBoundary", admin),
            ),
            (
                "a policy on a role without the boundary",
                Ask::new("iam:PutRolePolicy", role("chat-dev-message")),
            ),
            (
                "a managed policy attached",
                bounded(Ask::new("iam:AttachRolePolicy", role("chat-dev-message")))
                    .with("iam:PolicyARN", admin),
            ),
            (
                "the boundary removed",
                bounded(Ask::new(
                    "iam:DeleteRolePermissionsBoundary",
                    role("chat-dev-message"),
                )),
            ),
            (
                "the boundary swapped",
                Ask::new("iam:PutRolePermissionsBoundary", role("chat-dev-message"))
                    .with("iam:PermissionsBoundary", admin),
            ),
            (
                "the boundary widened",
                Ask::new("iam:CreatePolicyVersion", &boundary),
            ),
            (
                "an older boundary restored",
                Ask::new("iam:SetDefaultPolicyVersion", &boundary),
            ),
            (
                "a policy of its own",
                Ask::new(
                    "iam:CreatePolicy",
                    t.policy_arn(&names.role_path(), "chat-dev-admin"),
                ),
            ),
            (
                "a role outside the stack's path",
                bounded(Ask::new("iam:CreateRole", t.role_arn("/", "admin"))),
            ),
            (
                "a stack role passed to another service",
                Ask::new("iam:PassRole", role("chat-dev-message"))
                    .with("iam:PassedToService", "ec2.amazonaws.com"),
            ),
            (
                "another team's API changed",
                theirs(Ask::new("apigateway:PATCH", apigw("/apis/zz9yy8xx7w"))),
            ),
            (
                "another team's API deleted",
                theirs(Ask::new("apigateway:DELETE", apigw("/apis/zz9yy8xx7w"))),
            ),
            (
                "an untagged API deleted",
                Ask::new("apigateway:DELETE", apigw("/apis/zz9yy8xx7w")),
            ),
            (
                "another team's stage changed",
                theirs(Ask::new(
                    "apigateway:PATCH",
                    apigw("/apis/zz9yy8xx7w/stages/dev"),
                )),
            ),
            (
                "another team's API tagged as the stack's",
                tagged(
                    theirs(Ask::new(
                        "apigateway:POST",
                        apigw("/tags/arn:aws:apigateway:eu-west-1::/apis/zz9yy8xx7w"),
                    )),
                    "RequestTag",
                    "chat",
                ),
            ),
            (
                "an API created for another stack",
                tagged(
                    Ask::new("apigateway:POST", apigw("/apis")),
                    "RequestTag",
                    "billing",
                ),
            ),
            (
                "another team's routes, once the stack's API is named",
                Ask::new("apigateway:POST", apigw("/apis/zz9yy8xx7w/routes")),
            ),
        ];
        for (what, ask) in escalations {
            assert!(
                deployer.check(std::slice::from_ref(&ask)).is_err(),
                "{what} is allowed: {ask:?}"
            );
        }

        // The role a rewritten trust policy reaches: whatever policy it is given, its
        // boundary keeps it to the stack's resources, called from the stack's functions.
        let anything = json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]});
        let boundary_doc = boundary_policy(&names, &t);
        let session = Principal::new(
            "arn:aws:sts::123456789012:assumed-role/chat-dev-message/s",
            &[anything],
            Some(&boundary_doc),
        );
        let from = |function: &str, ask: Ask| {
            ask.with("lambda:SourceFunctionArn", t.function_arn(function))
        };
        let history = || Ask::new("dynamodb:GetItem", t.table_arn("chat-dev-history"));
        let post = || {
            Ask::new(
                "execute-api:ManageConnections",
                t.arn("execute-api", "a1b2c3d4e5/dev/POST/@connections/abc="),
            )
        };
        assert_eq!(
            session.check(&[
                from("chat-dev-message", history()),
                from("chat-dev-publish", post())
            ]),
            Ok(())
        );
        let outside = [
            ("another account assuming the role", history()),
            (
                "a function of another stack",
                from("billing-dev-x", history()),
            ),
            (
                "another team's table",
                from(
                    "chat-dev-message",
                    Ask::new("dynamodb:GetItem", t.table_arn("billing-dev-invoices")),
                ),
            ),
            (
                "IAM",
                from("chat-dev-message", Ask::new("iam:CreateUser", "*")),
            ),
        ];
        for (what, ask) in outside {
            let denied = session.check(std::slice::from_ref(&ask)).unwrap_err();
            assert!(
                denied.0.contains("no permissions boundary allows"),
                "{what}: {denied:?}"
            );
        }
    }

    #[test]
    fn a_named_boundary_is_required_and_never_deleted() {
        let mut config = template();
        config.permissions_boundary =
            Some("arn:aws:iam::123456789012:policy/org/app-boundary".into());
        let policy = deployer_policy(&config, &target("eu-west-1"));
        let statements = policy["Statement"].as_array().unwrap();
        assert!(statements.iter().all(|s| s["Sid"] != "StackBoundary"));
        let within = statements
            .iter()
            .find(|s| s["Sid"] == "StackRolesWithinBoundary")
            .unwrap();
        assert_eq!(
            within["Condition"],
            json!({"StringEquals": {"iam:PermissionsBoundary": "arn:aws:iam::123456789012:policy/org/app-boundary"}})
        );
    }

    #[test]
    fn only_list_calls_and_account_limits_get_every_resource_and_pass_role_goes_to_lambda_only() {
        let policy = deployer_policy(&template(), &target("cn-north-1"));
        for s in policy["Statement"].as_array().unwrap() {
            let resources: Vec<&str> = s["Resource"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap())
                .collect();
            if resources.contains(&"*") {
                // GetAccountSettings acts on no resource (Service Authorization Reference,
                // AWS Lambda: no resource type), so it is granted on `*`.
                assert!(
                    s["Sid"] == "FindStackResources"
                        || s["Action"] == json!(["lambda:GetAccountSettings"]),
                    "{s}"
                );
            } else {
                for r in resources {
                    assert!(r.starts_with("arn:aws-cn:"), "{r}");
                }
            }
            if s["Action"] == json!(["iam:PassRole"]) {
                assert_eq!(
                    s["Condition"],
                    json!({"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}})
                );
                assert_eq!(
                    s["Resource"],
                    json!(["arn:aws-cn:iam::123456789012:role/wsctl/chat/dev/*"])
                );
            }
        }
    }

    #[test]
    fn access_logs_read_the_account_settings_and_pass_only_the_logging_role_to_api_gateway() {
        let statement = |policy: &Value, sid: &str| -> Option<Value> {
            policy["Statement"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["Sid"] == sid)
                .cloned()
        };
        let mut config = template();
        config.access_logs = Some(AccessLogsConfig {
            retention_days: None,
            format: None,
            account_role: None,
        });
        let policy = deployer_policy(&config, &target("eu-west-1"));
        assert_eq!(
            statement(&policy, "ApiGatewayAccountSettings").unwrap()["Action"],
            json!(["apigateway:GET"]),
            "the account's role is only read"
        );
        assert!(statement(&policy, "PassLoggingRoleToApiGateway").is_none());
        assert_eq!(
            statement(&policy, "AccessLogGroup").unwrap()["Resource"],
            json!([
                "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/apigateway/chat-dev/access",
                "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/apigateway/chat-dev/access:*"
            ])
        );

        config.access_logs.as_mut().unwrap().account_role = Some("create".into());
        let policy = deployer_policy(&config, &target("eu-west-1"));
        let role = "arn:aws:iam::123456789012:role/wsctl/wsctl-apigateway-cloudwatch";
        let pass = statement(&policy, "PassLoggingRoleToApiGateway").unwrap();
        assert_eq!(pass["Resource"], json!([role]));
        assert_eq!(
            pass["Condition"],
            json!({"StringEquals": {"iam:PassedToService": "apigateway.amazonaws.com"}})
        );
        assert_eq!(
            statement(&policy, "LoggingRolePolicy").unwrap()["Condition"],
            json!({"ArnEquals": {"iam:PolicyARN": "arn:aws:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"}})
        );
        assert_eq!(
            statement(&policy, "ApiGatewayAccountSettings").unwrap()["Resource"],
            json!(["arn:aws:apigateway:eu-west-1::/account"])
        );
    }

    /// The backend's policy, evaluated as IAM does: a request through the URL is allowed, a
    /// plain Invoke of the publish function (which takes fan-out jobs) is not, and no other
    /// function of the stack is reachable.
    #[test]
    fn a_backend_may_publish_through_the_url_and_nothing_else() {
        use crate::local::iam::{Ask, Principal};
        let policy = publisher_policy(&template(), &target("eu-west-1"));
        let backend = Principal::new("arn:aws:iam::123456789012:user/backend", &[policy], None);
        let publish = "arn:aws:lambda:eu-west-1:123456789012:function:chat-dev-publish";
        let through_url = [
            Ask::new("lambda:InvokeFunctionUrl", publish)
                .with("lambda:FunctionUrlAuthType", "AWS_IAM"),
            Ask::new("lambda:InvokeFunction", publish).with("lambda:InvokedViaFunctionUrl", "true"),
        ];
        assert_eq!(backend.check(&through_url), Ok(()));
        let direct = Ask::new("lambda:InvokeFunction", publish);
        assert!(backend.check(&[direct]).is_err());
        let public_url = Ask::new("lambda:InvokeFunctionUrl", publish)
            .with("lambda:FunctionUrlAuthType", "NONE");
        assert!(backend.check(&[public_url]).is_err());
        let message = "arn:aws:lambda:eu-west-1:123456789012:function:chat-dev-message";
        let other = Ask::new("lambda:InvokeFunctionUrl", message)
            .with("lambda:FunctionUrlAuthType", "AWS_IAM");
        assert!(backend.check(&[other]).is_err());
    }
}
