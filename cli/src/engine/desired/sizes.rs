//! The limits only the built stack shows (each function's environment and resource policy),
//! checked at load by the code that deploys them.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;
use crate::config::{Config, LAMBDA_ENV_BYTES, LAMBDA_POLICY_BYTES, Problem};

/// The bytes each function's variables take (keys and values, as Lambda's 4 KB quota counts
/// them), computed by the code that deploys them. Before the first deploy the API id is not
/// known: one of the length API Gateway assigns (10 characters) stands in for it, and where the
/// config names no region, the longest region name of the partition with the longest domain.
pub fn environment_sizes(config: &Config) -> Vec<(String, usize)> {
    let target = stand_in_target(config);
    let names = config.names();
    config
        .functions
        .keys()
        .map(|logical| {
            let env = environment(config, &names, &target, logical);
            let bytes = env.iter().map(|(k, v)| k.len() + v.len()).sum();
            (logical.clone(), bytes)
        })
        .collect()
}

/// Before the first deploy: ids of the length API Gateway assigns (10 characters for an API,
/// 6 for an authorizer), and the longest region of the partition with the longest domain where
/// the config names none.
pub(super) fn stand_in_target(config: &Config) -> Target {
    Target {
        account: "000000000000".into(),
        region: config
            .region
            .clone()
            .unwrap_or_else(|| "cn-northwest-1".into()),
        api_id: Some("a".repeat(10)),
        authorizer_id: Some("a".repeat(6)),
        logging_role: None,
    }
}

/// The limits only the built stack shows, checked at load with the config's own: each
/// function's whole environment (the user's variables and wsctl's `WSCTL_*`) within Lambda's
/// 4 KB, and its resource-based policy (a statement per route) within Lambda's 20 KB.
pub fn size_problems(config: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut bad = |field: String, message: String| out.push(Problem { field, message });
    for (name, size) in environment_sizes(config) {
        if size > LAMBDA_ENV_BYTES {
            bad(
                format!("functions.{name}.environment"),
                format!(
                    "the function's variables (yours and the WSCTL_* ones wsctl sets) take {size} bytes; Lambda allows {LAMBDA_ENV_BYTES} in all: shorten or remove some"
                ),
            );
        }
    }
    for (name, size) in policy_sizes(config) {
        if size > LAMBDA_POLICY_BYTES {
            let routes = config.routes.values().filter(|f| **f == name).count();
            bad(
                "routes".into(),
                format!(
                    "function `{name}` serves {routes} routes; their invoke permissions make a resource-based policy of {size} bytes, and Lambda allows {LAMBDA_POLICY_BYTES} per function (Lambda quotas, not adjustable): serve some of these routes with another function"
                ),
            );
        }
    }
    for (key, metrics) in super::monitoring::oversized_alarms(config, &stand_in_target(config)) {
        bad(
            format!("alarms.{key}"),
            format!(
                "the alarm would read {metrics} metrics (one per function or table it covers) and CloudWatch takes {} in one alarm: set `alarms.{key}: null` and watch these on the dashboard, or split the functions into two stacks",
                super::monitoring::MAX_ALARM_METRICS
            ),
        );
    }
    out
}

/// The bytes of each function's resource-based policy as Lambda keeps it (GetPolicy's
/// document: one statement per route the function serves, and the authorizer's), computed
/// from the permissions a deploy adds. Lambda allows 20 KB ("Lambda quotas": function
/// resource-based policy), which about 40 routes on one function reach.
pub fn policy_sizes(config: &Config) -> Vec<(String, usize)> {
    let target = stand_in_target(config);
    let names = config.names();
    let mut statements: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for p in permissions(config, &names, &target) {
        statements
            .entry(p.function.clone())
            .or_default()
            .push(json!({
                "Sid": p.statement_id,
                "Effect": "Allow",
                "Principal": {"Service": target.partition().service_principal("apigateway")},
                "Action": "lambda:InvokeFunction",
                "Resource": target.function_arn(&p.function),
                "Condition": {"ArnLike": {"AWS:SourceArn": p.source_arn}},
            }));
    }
    config
        .functions
        .keys()
        .map(|logical| {
            let bytes = statements
                .remove(&names.function(logical))
                .map(|list| {
                    json!({"Version": "2012-10-17", "Id": "default", "Statement": list})
                        .to_string()
                        .len()
                })
                .unwrap_or_default();
            (logical.clone(), bytes)
        })
        .collect()
}
