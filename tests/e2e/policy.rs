//! `wsctl deploy --print-policy`: the policy it prints allows every call a deploy, a second
//! deploy with edits, `status` and `destroy` make, on the resources they touch, once an
//! administrator has made the stack's permissions boundary (from `--print-boundary`); every
//! role it creates carries that boundary; it gives `*` only to the actions that have no
//! resource type.

use std::collections::BTreeMap;

use serde_json::Value;
use wsctl_tests::proxy::{Proxy, Recorded, percent_decode};
use wsctl_tests::*;

const ACCOUNT: &str = "123456789012";

/// Actions whose Service Authorization Reference entry lists no resource type, so a policy can
/// only grant them on `*`: the list calls wsctl finds the stack's resources with.
const RESOURCE_LESS: &[&str] = &[
    "dynamodb:ListTables",
    "events:ListRules",
    "iam:ListPolicies",
    "iam:ListRoles",
    "lambda:GetAccountSettings",
    "lambda:ListFunctions",
    "sns:ListTopics",
];

/// The IAM action a recorded call is authorized as, and the ARN it is authorized on; `None`
/// for a call that needs no permission. `role_paths` learns each role's path from CreateRole,
/// since the other IAM calls name the role only.
fn authorization(
    r: &Recorded,
    region: &str,
    role_paths: &mut BTreeMap<String, String>,
) -> Option<(String, String)> {
    let op = r.call.operation.as_str();
    let arn =
        |service: &str, resource: &str| format!("arn:aws:{service}:{region}:{ACCOUNT}:{resource}");
    let path = percent_decode(r.path.split('?').next().unwrap_or(&r.path));
    let field = |key: &str| r.json()[key].as_str().map(str::to_string);
    let (action, resource) = match r.call.service.as_str() {
        // "No permissions are required to perform this operation" (STS API reference).
        "sts" if op == "GetCallerIdentity" => return None,
        "iam" => {
            let role = r.form("RoleName").unwrap_or_default();
            if op == "CreateRole" {
                role_paths.insert(role.clone(), r.form("Path").unwrap_or("/".into()));
            }
            let resource = if op == "ListRoles" || op == "ListPolicies" {
                "*".to_string()
            } else if let Some(policy) = r.form("PolicyArn") {
                policy
            } else {
                let role_path = role_paths.get(&role).cloned().unwrap_or("/".into());
                format!("arn:aws:iam::{ACCOUNT}:role{role_path}{role}")
            };
            (format!("iam:{op}"), resource)
        }
        "lambda" => {
            let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
            let function = |name: &str| arn("lambda", &format!("function:{name}"));
            let (action, resource) = match (r.method.as_str(), &parts[1..]) {
                ("GET", ["functions"]) => ("ListFunctions", "*".to_string()),
                ("GET", ["account-settings"]) => ("GetAccountSettings", "*".to_string()),
                ("POST", ["functions"]) => (
                    "CreateFunction",
                    function(r.json()["FunctionName"].as_str().unwrap()),
                ),
                ("GET", ["functions", f]) => ("GetFunction", function(f)),
                ("DELETE", ["functions", f]) => ("DeleteFunction", function(f)),
                ("GET", ["functions", f, "configuration"]) => {
                    ("GetFunctionConfiguration", function(f))
                }
                ("PUT", ["functions", f, "configuration"]) => {
                    ("UpdateFunctionConfiguration", function(f))
                }
                ("PUT", ["functions", f, "code"]) => ("UpdateFunctionCode", function(f)),
                ("GET", ["functions", f, "policy"]) => ("GetPolicy", function(f)),
                ("POST", ["functions", f, "policy"]) => ("AddPermission", function(f)),
                ("DELETE", ["functions", f, "policy", _]) => ("RemovePermission", function(f)),
                ("GET", ["functions", f, "concurrency"]) => ("GetFunctionConcurrency", function(f)),
                ("PUT", ["functions", f, "concurrency"]) => ("PutFunctionConcurrency", function(f)),
                ("DELETE", ["functions", f, "concurrency"]) => {
                    ("DeleteFunctionConcurrency", function(f))
                }
                ("GET", ["functions", f, "url"]) => ("GetFunctionUrlConfig", function(f)),
                ("POST", ["functions", f, "url"]) => ("CreateFunctionUrlConfig", function(f)),
                ("PUT", ["functions", f, "url"]) => ("UpdateFunctionUrlConfig", function(f)),
                ("DELETE", ["functions", f, "url"]) => ("DeleteFunctionUrlConfig", function(f)),
                ("GET", ["tags", ..]) => ("ListTags", parts[2..].join("/")),
                ("POST", ["tags", ..]) => ("TagResource", parts[2..].join("/")),
                ("DELETE", ["tags", ..]) => ("UntagResource", parts[2..].join("/")),
                _ => panic!(
                    "no IAM action is known for Lambda's {} {path}: add it",
                    r.method
                ),
            };
            (format!("lambda:{action}"), resource)
        }
        // API Gateway authorizes `apigateway:METHOD` on the management path (without `/v2`).
        "apigateway" => {
            let resource = path.strip_prefix("/v2").unwrap_or(&path);
            let resource = format!("arn:aws:apigateway:{region}::{resource}");
            (format!("apigateway:{}", r.method), resource)
        }
        "dynamodb" => {
            let resource = match (field("TableName"), field("ResourceArn")) {
                _ if op == "ListTables" => "*".to_string(),
                (Some(table), _) => arn("dynamodb", &format!("table/{table}")),
                (_, Some(arn)) => arn,
                _ => panic!("DynamoDB {op} names no table: {}", r.json()),
            };
            (format!("dynamodb:{op}"), resource)
        }
        // Log-group actions are authorized on `log-group:NAME:*`, the tagging ones on the ARN
        // without `:*`, DescribeLogGroups on `log-group:*` (CloudWatch Logs permissions).
        "logs" => {
            let resource = match (field("logGroupName"), field("resourceArn")) {
                _ if op == "DescribeLogGroups" => arn("logs", "log-group:*"),
                (Some(group), _) => arn("logs", &format!("log-group:{group}:*")),
                (_, Some(arn)) => arn,
                _ => panic!("CloudWatch Logs {op} names no log group: {}", r.json()),
            };
            (format!("logs:{op}"), resource)
        }
        "ssm" => {
            let name = field("Name")
                .or_else(|| field("ResourceId"))
                .unwrap_or_else(|| panic!("SSM {op} names no parameter: {}", r.json()));
            (format!("ssm:{op}"), arn("ssm", &format!("parameter{name}")))
        }
        // Alarms are authorized on `alarm:NAME` (DescribeAlarms, listing, on `alarm:*`),
        // dashboards on `dashboard/NAME` with no region (CloudWatch's Service Authorization
        // Reference entry). The body is CBOR, read here as JSON.
        "monitoring" => {
            let body = r.json();
            let first = |key: &str| {
                body[key]
                    .as_str()
                    .or_else(|| body[key][0].as_str())
                    .map(str::to_string)
            };
            let resource = if op == "DescribeAlarms" {
                arn("cloudwatch", "alarm:*")
            } else if let Some(name) = first("DashboardName").or_else(|| first("DashboardNames")) {
                format!("arn:aws:cloudwatch::{ACCOUNT}:dashboard/{name}")
            } else if let Some(name) = first("AlarmName").or_else(|| first("AlarmNames")) {
                arn("cloudwatch", &format!("alarm:{name}"))
            } else if let Some(resource) = first("ResourceARN") {
                resource
            } else {
                panic!("CloudWatch {op} names no alarm or dashboard: {body}")
            };
            (format!("cloudwatch:{op}"), resource)
        }
        // Topic actions are authorized on the topic; Unsubscribe on the subscription's topic.
        "sns" => {
            let resource = if op == "ListTopics" {
                "*".to_string()
            } else if let Some(name) = r.form("Name") {
                arn("sns", &name)
            } else if let Some(topic) = r.form("TopicArn").or_else(|| r.form("ResourceArn")) {
                topic
            } else if let Some(subscription) = r.form("SubscriptionArn") {
                subscription
                    .rsplit_once(':')
                    .map(|(topic, _)| topic.to_string())
                    .unwrap_or(subscription)
            } else {
                panic!("SNS {op} names no topic: {:?}", r.body)
            };
            (format!("sns:{op}"), resource)
        }
        // Buses are authorized on `event-bus/NAME`, rules on `rule/BUS/NAME` (EventBridge's
        // Service Authorization Reference entry); ListRules is granted on `*`.
        "events" => {
            let bus = field("EventBusName").unwrap_or_else(|| "default".into());
            let resource = match (op, field("ResourceARN"), field("Rule").or(field("Name"))) {
                ("ListRules", _, _) => "*".to_string(),
                (_, Some(resource), _) => resource,
                ("CreateEventBus" | "DescribeEventBus" | "DeleteEventBus", _, Some(name)) => {
                    arn("events", &format!("event-bus/{name}"))
                }
                (_, _, Some(rule)) => arn("events", &format!("rule/{bus}/{rule}")),
                _ => panic!("EventBridge {op} names no bus or rule: {}", r.json()),
            };
            (format!("events:{op}"), resource)
        }
        other => panic!("no IAM mapping for service {other} ({op}): add it"),
    };
    Some((action, resource))
}

/// IAM's wildcard match: `*` any run of characters, `?` one.
fn glob(pattern: &str, value: &str) -> bool {
    let (p, v): (Vec<char>, Vec<char>) = (pattern.chars().collect(), value.chars().collect());
    let (mut pi, mut vi, mut star, mut mark) = (0, 0, None, 0);
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = vi;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

fn list(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => vec![],
    }
}

/// The statements that allow `action` on `resource` (conditions aside).
fn allowing<'p>(policy: &'p Value, action: &str, resource: &str) -> Vec<&'p Value> {
    policy["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .filter(|s| s["Effect"] == "Allow")
        .filter(|s| {
            list(&s["Action"])
                .iter()
                .any(|a| glob(&a.to_ascii_lowercase(), &action.to_ascii_lowercase()))
        })
        .filter(|s| list(&s["Resource"]).iter().any(|p| glob(p, resource)))
        .collect()
}

#[test]
fn the_printed_policy_allows_every_call_of_a_stacks_life_and_no_more() {
    build_fixture();
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.url());
    let project = Project::new();

    let out = project.wsctl(&proxy.url(), &["deploy", "--print-policy"]);
    assert!(out.status.success(), "{}", text(&out));
    let policy = stdout_json(&out);
    let ops: Vec<String> = proxy.calls().into_iter().map(|c| c.operation).collect();
    assert_eq!(
        ops,
        ["GetCallerIdentity", "GET /v2/apis"],
        "only the account and the stack's API are asked for"
    );

    for (what, resource) in policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| list(&s["Resource"]).into_iter().map(move |r| (s, r)))
    {
        if resource == "*" {
            for action in list(&what["Action"]) {
                assert!(
                    RESOURCE_LESS.contains(&action.as_str()),
                    "{action} is granted on `*` but has a resource type: {what}"
                );
            }
        } else {
            assert!(
                resource.starts_with("arn:aws:") && resource.contains(":us-east-1:")
                    || resource.starts_with(&format!("arn:aws:iam::{ACCOUNT}:"))
                    // A dashboard's ARN names no region.
                    || resource.starts_with(&format!("arn:aws:cloudwatch::{ACCOUNT}:dashboard/")),
                "{resource}"
            );
        }
    }

    // The administrator's part: the boundary, made as `--print-boundary` prints it.
    let out = project.wsctl(&moto.url(), &["deploy", "--print-boundary"]);
    assert!(out.status.success(), "{}", text(&out));
    let boundary_doc = String::from_utf8(out.stdout).unwrap();
    let boundary =
        format!("arn:aws:iam::{ACCOUNT}:policy/wsctl/fixture/test/fixture-test-boundary");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let iam = aws_sdk_iam::Client::new(&sdk(&moto.url()).await);
        let tag = |k: &str, v: &str| {
            aws_sdk_iam::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
                .unwrap()
        };
        let made = iam
            .create_policy()
            .policy_name("fixture-test-boundary")
            .path("/wsctl/fixture/test/")
            .policy_document(boundary_doc)
            .tags(tag("wsctl:stack", "fixture"))
            .tags(tag("wsctl:stage", "test"))
            .send()
            .await
            .unwrap();
        assert_eq!(made.policy.unwrap().arn.unwrap(), boundary);
    });

    proxy.clear();
    let run = |args: &[&str]| {
        let out = project.wsctl(&proxy.url(), args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    };
    // With alarms telling a topic the stack makes (its subscriptions and a threshold change),
    // the publish endpoint and the stack's event bus, then without the last two (the bus with
    // a rule an application put on it).
    project.write_config(&format!(
        "{}alarms: {{ emails: [a@example.com], failed_posts: 5 }}\npublish_endpoint: true\nevents: {{ connections: true }}\n",
        project
            .read_config()
            .replacen("  publish:\n", "  publish:\n    handler: publish\n", 1)
    ));
    run(&["deploy", "--no-build"]);
    let edited = project
        .read_config()
        .replacen(
            "alarms: { emails: [a@example.com], failed_posts: 5 }",
            "alarms: { emails: [b@example.com], failed_posts: 7 }",
            1,
        )
        .replacen("memory: 256", "memory: 512", 1)
        .replacen(
            "timeout: 30\n",
            "timeout: 30\n    reserved_concurrency: 5\n",
            1,
        )
        .replacen(
            "  subscribe: message\n",
            "  subscribe: message\n  unsubscribe: message\n",
            1,
        )
        .replacen("tags: { team: realtime }", "tags: { owner: ops }", 1)
        .replacen("publish_endpoint: true\n", "", 1)
        .replacen("events: { connections: true }\n", "", 1);
    project.write_config(&edited);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let events = aws_sdk_eventbridge::Client::new(&sdk(&moto.url()).await);
        events
            .put_rule()
            .name("app")
            .event_bus_name("fixture-test")
            .event_pattern(r#"{"source":["wsctl.fixture.test"]}"#)
            .send()
            .await
            .unwrap();
        let target = aws_sdk_eventbridge::types::Target::builder()
            .id("t")
            .arn(format!("arn:aws:sqs:us-east-1:{ACCOUNT}:q"))
            .build()
            .unwrap();
        events
            .put_targets()
            .rule("app")
            .event_bus_name("fixture-test")
            .targets(target)
            .send()
            .await
            .unwrap();
    });
    run(&["deploy", "--no-build", "--yes"]);
    run(&["status"]);
    run(&["destroy", "--yes"]);

    let requests = proxy.requests();
    // A role is read before it is created: learn every role's path first.
    let mut role_paths = BTreeMap::new();
    for r in requests.iter().filter(|r| r.call.operation == "CreateRole") {
        authorization(r, "us-east-1", &mut role_paths);
    }
    let mut refused = Vec::new();
    for r in &requests {
        let Some((action, resource)) = authorization(r, "us-east-1", &mut role_paths) else {
            continue;
        };
        if RESOURCE_LESS.contains(&action.as_str()) {
            assert_eq!(resource, "*", "{action}");
        }
        if allowing(&policy, &action, &resource).is_empty() {
            refused.push(format!("{action} on {resource}"));
        }
        // The conditions the policy puts on these hold for the calls wsctl makes.
        if action == "iam:CreateRole" {
            assert_eq!(
                r.form("PermissionsBoundary").as_deref(),
                Some(boundary.as_str())
            );
        }
        if action == "apigateway:POST" && resource.ends_with("::/apis") {
            assert_eq!(r.json()["tags"]["wsctl:stack"], "fixture", "{}", r.json());
            assert_eq!(r.json()["tags"]["wsctl:stage"], "test", "{}", r.json());
        }
        assert!(
            ![
                "iam:CreatePolicy",
                "iam:CreatePolicyVersion",
                "iam:DeleteRolePermissionsBoundary"
            ]
            .contains(&action.as_str()),
            "the deployer called {action}"
        );
        // Giving a function its role is also iam:PassRole on that role, to Lambda only.
        if let Some(role) = r.json()["Role"].as_str() {
            let passing = allowing(&policy, "iam:PassRole", role);
            assert!(!passing.is_empty(), "iam:PassRole on {role} is not allowed");
            for s in passing {
                assert_eq!(
                    s["Condition"]["StringEquals"]["iam:PassedToService"], "lambda.amazonaws.com",
                    "{s}"
                );
            }
        }
    }
    refused.sort();
    refused.dedup();
    assert!(
        refused.is_empty(),
        "the printed policy refuses calls wsctl made:\n  {}\npolicy: {policy:#}",
        refused.join("\n  ")
    );
    let services: std::collections::BTreeSet<&str> =
        requests.iter().map(|r| r.call.service.as_str()).collect();
    assert_eq!(
        services.into_iter().collect::<Vec<_>>(),
        [
            "apigateway",
            "dynamodb",
            "events",
            "iam",
            "lambda",
            "logs",
            "monitoring",
            "sns",
            "ssm",
            "sts"
        ],
        "every service was exercised"
    );
}

#[test]
fn without_credentials_the_policy_has_a_wildcard_account_and_says_so() {
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.url());
    let project = Project::new();
    let mut cmd = project.command(&proxy.url(), &["deploy", "--print-policy"]);
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let policy = stdout_json(&out);
    let roles = policy["Statement"][0]["Resource"][0].as_str().unwrap();
    assert_eq!(roles, "arn:aws:iam::*:role/wsctl/fixture/test/*");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("account") && err.contains('*'), "{err}");
    assert_eq!(proxy.calls(), vec![], "nothing reaches AWS");
}
