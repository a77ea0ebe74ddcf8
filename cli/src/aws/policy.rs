//! The least-privilege IAM policy of the identity that runs `wsctl deploy`, `plan`, `status` and
//! `destroy` for one stack: `wsctl deploy --print-policy` prints it, and README shows it for the
//! template's stack (a unit test keeps the two equal).
//!
//! [`GRANTS`] is the one list of what each service's calls need. Where a resource is named by
//! the stack, the grant names it (its roles by their path, its functions, tables and log groups
//! by the `STACK-STAGE-` prefix, its SSM parameter exactly); `*` only stands for the resource
//! of actions whose Service Authorization Reference entry has no resource type (the list calls
//! wsctl uses to find the stack's resources again). API Gateway assigns an API's id at
//! creation, so its grants cover the region's `/apis` paths.
//!
//! `sts:GetCallerIdentity` is absent on purpose: it needs no permission (STS API reference).

use serde_json::{Value, json};

use super::{AwsArgs, AwsError, Clients, account};
use crate::config::{AccessLogsConfig, AccountRole, Config};
use crate::engine::desired::{Names, Target};
use crate::error::Error;
use crate::output::Printer;

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
    /// The stack's tables and their indexes.
    Tables,
    /// The stack's log groups.
    LogGroups,
    /// Every log group of the account and region: `DescribeLogGroups` is authorized on
    /// `log-group:*` (CloudWatch Logs permissions reference).
    AllLogGroups,
    /// The stack's token-secret parameter.
    Secret,
    /// No resource type: the action is authorized on `*` only.
    Any,
}

/// Actions on one scope, with an optional IAM condition.
pub struct Grant {
    pub sid: &'static str,
    pub actions: &'static [&'static str],
    pub scope: Scope,
    /// `(operator, key, value)`: the value is a service name whose principal fills it in.
    pub condition: Option<(&'static str, &'static str, &'static str)>,
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
            "iam:CreateRole",
            "iam:DeleteRole",
            "iam:DeleteRolePolicy",
            "iam:GetRole",
            "iam:GetRolePolicy",
            "iam:ListRolePolicies",
            "iam:ListRoleTags",
            "iam:PutRolePolicy",
            "iam:TagRole",
            "iam:UntagRole",
            "iam:UpdateAssumeRolePolicy",
        ],
        scope: Scope::Roles,
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
        condition: Some(("StringEquals", "iam:PassedToService", "lambda")),
    },
    Grant {
        sid: "StackFunctions",
        actions: &[
            "lambda:AddPermission",
            "lambda:CreateFunction",
            "lambda:DeleteFunction",
            "lambda:DeleteFunctionConcurrency",
            "lambda:GetFunction",
            "lambda:GetFunctionConcurrency",
            "lambda:GetFunctionConfiguration",
            "lambda:GetPolicy",
            "lambda:ListTags",
            "lambda:PutFunctionConcurrency",
            "lambda:RemovePermission",
            "lambda:TagResource",
            "lambda:UntagResource",
            "lambda:UpdateFunctionCode",
            "lambda:UpdateFunctionConfiguration",
        ],
        scope: Scope::Functions,
        condition: None,
    },
    // API Gateway authorizes by HTTP method on the resource's path (API Gateway Developer
    // Guide, "Control access to the API Gateway management API"); tagging an API or a stage is
    // a call on `/tags/ARN`.
    Grant {
        sid: "WebSocketApi",
        actions: &[
            "apigateway:DELETE",
            "apigateway:GET",
            "apigateway:PATCH",
            "apigateway:POST",
        ],
        scope: Scope::Apis,
        condition: None,
    },
    Grant {
        sid: "StackTables",
        actions: &[
            "dynamodb:CreateTable",
            "dynamodb:DeleteTable",
            "dynamodb:DescribeTable",
            "dynamodb:DescribeTimeToLive",
            "dynamodb:ListTagsOfResource",
            "dynamodb:TagResource",
            "dynamodb:UntagResource",
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
    Grant {
        sid: "FindStackResources",
        actions: &[
            "dynamodb:ListTables",
            "iam:ListRoles",
            "lambda:ListFunctions",
        ],
        scope: Scope::Any,
        condition: None,
    },
];

/// The ARN patterns of `scope` for this stack.
pub fn resources(scope: Scope, names: &Names, target: &Target) -> Vec<String> {
    let prefix = names.prefix();
    let region = &target.region;
    let apigateway = |path: &str| target.partition().arn("apigateway", region, "", path);
    match scope {
        Scope::Roles => vec![target.role_arn(&names.role_path(), "*")],
        Scope::RoleNamesakes => vec![target.role_arn("/", &format!("*{prefix}*"))],
        Scope::Functions => vec![target.function_arn(&format!("{prefix}*"))],
        Scope::Apis => vec![
            apigateway("/apis"),
            apigateway("/apis/*"),
            apigateway("/tags/*"),
        ],
        Scope::Tables => vec![target.table_arn(&format!("{prefix}*"))],
        Scope::LogGroups => {
            vec![target.arn("logs", &format!("log-group:{}*", names.log_group("")))]
        }
        Scope::AllLogGroups => vec![target.arn("logs", "log-group:*")],
        Scope::Secret => vec![target.parameter_arn(&names.secret())],
        Scope::Any => vec!["*".into()],
    }
}

/// The policy document for `config`'s stack in `target`'s account and region.
pub fn deployer_policy(config: &Config, target: &Target) -> Value {
    let names = Names::new(config);
    let partition = target.partition();
    let statements: Vec<Value> = GRANTS
        .iter()
        .map(|grant| {
            let mut statement = json!({
                "Sid": grant.sid,
                "Effect": "Allow",
                "Action": grant.actions,
                "Resource": resources(grant.scope, &names, target),
            });
            if let Some((operator, key, service)) = grant.condition {
                statement["Condition"] =
                    json!({ operator: { key: partition.service_principal(service) } });
            }
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

/// `wsctl deploy --print-policy`: the account comes from STS (the one call made); without
/// credentials it is `*`, and a note says so.
pub async fn print(config: &Config, aws: &AwsArgs, printer: &Printer) -> Result<(), Error> {
    let target = match Clients::connect(aws, config.region.as_deref()).await {
        Ok(clients) => {
            let account = clients.account().await?;
            Target {
                account,
                region: clients.region,
                api_id: None,
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
    let policy = deployer_policy(config, &target);
    println!(
        "{}",
        serde_json::to_string_pretty(&policy).expect("a JSON value prints")
    );
    Ok(())
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

    #[test]
    fn only_list_calls_get_every_resource_and_pass_role_goes_to_lambda_only() {
        let policy = deployer_policy(&template(), &target("cn-north-1"));
        for s in policy["Statement"].as_array().unwrap() {
            let resources: Vec<&str> = s["Resource"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap())
                .collect();
            if resources.contains(&"*") {
                assert_eq!(s["Sid"], "FindStackResources", "{s}");
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
}
