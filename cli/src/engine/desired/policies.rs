//! The IAM documents a deploy writes: each role's trust and inline policy, and the stack's
//! permissions boundary.

use serde_json::{Value, json};

use super::*;
use crate::config::{Access, Config};
use wsctl_functions::partition::Partition;

pub fn assume_role_policy(partition: Partition) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": partition.service_principal("lambda")},
            "Action": "sts:AssumeRole"
        }]
    })
}

/// The permissions boundary every role of the stack carries: the one the config names, or the
/// stack's own.
pub fn boundary_arn(config: &Config, target: &Target) -> String {
    let names = config.names();
    config
        .permissions_boundary
        .clone()
        .unwrap_or_else(|| target.policy_arn(&names.role_path(), &names.boundary()))
}

/// The most any role of the stack may do, whatever its own policy says: the data-plane calls
/// the bundled functions make, on the stack's own resources, from the stack's own functions.
///
/// `lambda:SourceFunctionArn` is in the request context of every call made from a function's
/// execution environment, and of the log writes Lambda makes for it ("Using source function
/// ARN to control function access behavior", Lambda Developer Guide). Requiring it means the
/// role's credentials are worth nothing outside the stack's functions: a trust policy that lets
/// another account assume the role (IAM cannot condition `UpdateAssumeRolePolicy` on the
/// boundary; Service Authorization Reference, IAM) gives that account nothing.
///
/// The API's id is not known when the boundary has to exist (before the first role), so
/// `@connections` is bounded by the stage's name in the account and region; each role's own
/// policy names the API.
pub fn boundary_policy(names: &Names, target: &Target) -> Value {
    let prefix = names.prefix();
    let from_stack = json!({"ArnLike": {"lambda:SourceFunctionArn": target.function_arn(&format!("{prefix}*"))}});
    let statement = |sid: &str, actions: Vec<&str>, resource: String| {
        json!({
            "Sid": sid,
            "Effect": "Allow",
            "Action": actions,
            "Resource": [resource],
            "Condition": from_stack,
        })
    };
    json!({"Version": "2012-10-17", "Statement": [
        statement(
            "StackTables",
            READ_ACTIONS.iter().chain(WRITE_ACTIONS).copied().collect(),
            target.table_arn(&format!("{prefix}*")),
        ),
        statement(
            "StackFunctionLogs",
            vec!["logs:CreateLogStream", "logs:PutLogEvents"],
            target.arn("logs", &format!("log-group:{}*", names.log_group(""))),
        ),
        statement(
            "InvokeStackFunctions",
            vec!["lambda:InvokeFunction"],
            target.function_arn(&format!("{prefix}*")),
        ),
        statement(
            "StageConnections",
            vec!["execute-api:ManageConnections"],
            target.arn("execute-api", &format!("*/{}/*/@connections/*", names.stage)),
        ),
        statement(
            "ReadTokenSecret",
            vec!["ssm:GetParameter"],
            target.parameter_arn(&names.secret()),
        ),
        // `events:` may name any bus of the account and region, so the boundary allows them
        // all; each role's own policy names the one bus.
        statement(
            "SendEvents",
            vec!["events:PutEvents"],
            target.arn("events", "event-bus/*"),
        ),
        // The secret is a SecureString under the account's `aws/ssm` key: SSM decrypts it
        // with the caller's permissions, which the boundary also caps. SSM makes that call,
        // not the function, so it carries no source function ARN; it is bounded to SSM.
        json!({
            "Sid": "DecryptTokenSecretThroughSsm",
            "Effect": "Allow",
            "Action": ["kms:Decrypt"],
            "Resource": [target.arn("kms", "key/*")],
            "Condition": {"StringEquals": {"kms:ViaService": format!("ssm.{}.{}", target.region, target.partition().dns_suffix())}},
        }),
    ]})
}

const READ_ACTIONS: &[&str] = &[
    "dynamodb:BatchGetItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:GetItem",
    "dynamodb:Query",
];
const WRITE_ACTIONS: &[&str] = &[
    "dynamodb:BatchWriteItem",
    "dynamodb:DeleteItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
];

/// Least privilege: each statement names exact ARNs of this stack; the only wildcard is the
/// log-stream part of the function's own log group and the connection id under its stage.
pub fn role_policy(config: &Config, names: &Names, target: &Target, logical: &str) -> Value {
    let f = &config.functions[logical];
    let mut statements = vec![json!({
        "Sid": "OwnLogs",
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": [target.log_group_arn(&names.log_group(logical))],
    })];
    for (table, access) in &f.tables {
        let physical = names.table(table);
        let mut resources = vec![target.table_arn(&physical)];
        if *access != Access::Write {
            for index in config.tables[table].indexes.keys() {
                resources.push(format!("{}/index/{index}", target.table_arn(&physical)));
            }
        }
        let actions: Vec<&str> = match access {
            Access::Read => READ_ACTIONS.to_vec(),
            Access::Write => WRITE_ACTIONS.to_vec(),
            Access::ReadWrite => READ_ACTIONS.iter().chain(WRITE_ACTIONS).copied().collect(),
        };
        statements.push(json!({
            "Sid": format!("Table{}", camel(table)),
            "Effect": "Allow",
            "Action": actions,
            "Resource": resources,
        }));
    }
    if f.manage_connections {
        statements.push(json!({
            "Sid": "ManageConnections",
            "Effect": "Allow",
            "Action": ["execute-api:ManageConnections"],
            "Resource": [format!("{}/{}/*/@connections/*", target.api_arn(), config.stage)],
        }));
    }
    if !f.invoke.is_empty() {
        let mut targets: Vec<String> = f
            .invoke
            .iter()
            .map(|t| target.function_arn(&names.function(t)))
            .collect();
        targets.sort();
        targets.dedup();
        statements.push(json!({
            "Sid": "InvokeStackFunctions",
            "Effect": "Allow",
            "Action": ["lambda:InvokeFunction"],
            "Resource": targets,
        }));
    }
    if let Some(events) = &config.events
        && sends_events(f)
    {
        statements.push(json!({
            "Sid": "SendEvents",
            "Effect": "Allow",
            "Action": ["events:PutEvents"],
            "Resource": [event_bus_arn(events, names, target)],
        }));
    }
    if f.read_secret {
        statements.push(json!({
            "Sid": "ReadTokenSecret",
            "Effect": "Allow",
            "Action": ["ssm:GetParameter"],
            "Resource": [target.parameter_arn(&names.secret())],
        }));
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}
