//! The stage's access log: its log group, the stage's settings, and API Gateway's account-level
//! CloudWatch Logs role, which wsctl sets or creates only when the config asks and never
//! unsets. The proxy plays what moto does not check (`wsctl_tests::aws::account`): a stage
//! with access logs is refused while the account has no role, and a role made seconds ago is
//! refused once by UpdateAccount.

use wsctl_tests::proxy::{Call, Proxy};
use wsctl_tests::*;

const WSCTL_ROLE: &str = "arn:aws:iam::123456789012:role/wsctl/wsctl-apigateway-cloudwatch";
const GROUP: &str = "/aws/apigateway/fixture-test/access";

fn deploy(project: &Project, endpoint: &str) -> std::process::Output {
    project.wsctl(endpoint, &["deploy", "--no-build", "--no-progress"])
}

fn plan(project: &Project, endpoint: &str) -> std::process::Output {
    project.wsctl(endpoint, &["plan", "--no-build"])
}

fn with_access_logs(project: &Project, block: &str) {
    let config = project.read_config();
    let kept: String = config
        .split("\naccess_logs:")
        .next()
        .unwrap_or(&config)
        .trim_end()
        .to_string();
    let block = if block.is_empty() {
        String::new()
    } else {
        format!("\naccess_logs:\n{block}")
    };
    project.write_config(&format!("{kept}\n{block}"));
}

fn count(calls: &[Call], operation: &str) -> usize {
    calls.iter().filter(|c| c.operation == operation).count()
}

struct Clients {
    v1: aws_sdk_apigateway::Client,
    v2: aws_sdk_apigatewayv2::Client,
    iam: aws_sdk_iam::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
}

impl Clients {
    /// Reads go through the proxy, which lays the stage's played settings over moto's; roles
    /// are made straight in moto, so that the proxy does not take them for brand-new ones.
    async fn new(proxy: &Proxy, moto: &Moto) -> Clients {
        let (sdk, direct) = (sdk(&proxy.url()).await, sdk(&moto.url()).await);
        Clients {
            v1: aws_sdk_apigateway::Client::new(&sdk),
            v2: aws_sdk_apigatewayv2::Client::new(&sdk),
            iam: aws_sdk_iam::Client::new(&direct),
            logs: aws_sdk_cloudwatchlogs::Client::new(&sdk),
        }
    }

    async fn account_role(&self) -> Option<String> {
        self.v1
            .get_account()
            .send()
            .await
            .unwrap()
            .cloudwatch_role_arn
    }

    async fn stage_logs(&self) -> Option<aws_sdk_apigatewayv2::types::AccessLogSettings> {
        let api = self.v2.get_apis().send().await.unwrap().items.unwrap()[0]
            .api_id
            .clone()
            .unwrap();
        let stage = self
            .v2
            .get_stage()
            .api_id(api)
            .stage_name("test")
            .send()
            .await
            .unwrap();
        stage.access_log_settings
    }

    /// The log group's retention, `None` when it does not exist.
    async fn group(&self) -> Option<Option<i32>> {
        self.logs
            .describe_log_groups()
            .log_group_name_prefix(GROUP)
            .send()
            .await
            .unwrap()
            .log_groups
            .unwrap_or_default()
            .into_iter()
            .find(|g| g.log_group_name.as_deref() == Some(GROUP))
            .map(|g| g.retention_in_days)
    }

    /// A role API Gateway may assume.
    async fn role(&self, name: &str) -> String {
        let trust = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Service": "apigateway.amazonaws.com"},
                "Action": "sts:AssumeRole"
            }]
        });
        self.iam
            .create_role()
            .role_name(name)
            .assume_role_policy_document(trust.to_string())
            .send()
            .await
            .unwrap()
            .role
            .unwrap()
            .arn
    }
}

/// Without a role in the account's settings, access logs are refused before any change, with
/// the fix; `account_role: create` makes wsctl's role, sets it (after API Gateway refused the
/// brand-new role once) and the stage writes JSON lines to its own group. `destroy` leaves the
/// account's setting and the role: other APIs of the account log through them.
#[test]
fn access_logs_set_the_accounts_logging_role_only_when_asked() {
    build_fixture();
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.url());
    let project = Project::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let aws = rt.block_on(Clients::new(&proxy, &moto));
    let out = deploy(&project, &proxy.url());
    assert!(out.status.success(), "{}", text(&out));

    with_access_logs(&project, "  retention_days: 30\n");
    for out in [plan(&project, &proxy.url()), {
        proxy.clear();
        deploy(&project, &proxy.url())
    }] {
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let said = text(&out);
        assert!(
            said.contains("API Gateway in us-east-1 has no CloudWatch Logs role")
                && said.contains("add `account_role: create` under `access_logs`"),
            "{said}"
        );
    }
    assert_eq!(proxy.mutations(), vec![], "nothing was changed");

    with_access_logs(&project, "  retention_days: 30\n  account_role: create\n");
    let shown = plan(&project, &proxy.url());
    let said = String::from_utf8_lossy(&shown.stdout).to_string();
    assert!(shown.status.success(), "{}", text(&shown));
    for line in [
        "  + log group /aws/apigateway/fixture-test/access\n",
        "  + API Gateway logging role of us-east-1\n",
        &format!(
            "note: sets {WSCTL_ROLE} (created if missing, with the managed policy AmazonAPIGatewayPushToCloudWatchLogs) as API Gateway's CloudWatch Logs role in us-east-1: every API of the account in us-east-1 logs through it, and `wsctl destroy` leaves it set"
        ),
        "  ~ stage test\n",
        &format!(
            "note: API Gateway writes the stage's access log to log group {GROUP}, through the account's CloudWatch Logs role {WSCTL_ROLE}"
        ),
    ] {
        assert!(said.contains(line), "{line:?} not in:\n{said}");
    }

    proxy.clear();
    let out = deploy(&project, &proxy.url());
    assert!(out.status.success(), "{}", text(&out));
    let calls = proxy.calls();
    // Refused once while the new role propagates, then accepted.
    assert_eq!(count(&calls, "PATCH /account"), 2, "{calls:?}");
    assert_eq!(rt.block_on(aws.account_role()).as_deref(), Some(WSCTL_ROLE));
    let role = rt
        .block_on(
            aws.iam
                .get_role()
                .role_name("wsctl-apigateway-cloudwatch")
                .send(),
        )
        .unwrap()
        .role
        .unwrap();
    let trust =
        wsctl_tests::dev::percent_decode(role.assume_role_policy_document.as_deref().unwrap());
    assert!(trust.contains("apigateway.amazonaws.com"), "{trust}");
    let attached = rt
        .block_on(
            aws.iam
                .list_attached_role_policies()
                .role_name("wsctl-apigateway-cloudwatch")
                .send(),
        )
        .unwrap()
        .attached_policies
        .unwrap_or_default();
    assert_eq!(
        attached
            .iter()
            .map(|p| p.policy_arn.as_deref().unwrap())
            .collect::<Vec<_>>(),
        vec!["arn:aws:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"]
    );
    let settings = rt.block_on(aws.stage_logs()).expect("the stage logs");
    assert_eq!(
        settings.destination_arn.as_deref(),
        Some(format!("arn:aws:logs:us-east-1:123456789012:log-group:{GROUP}").as_str())
    );
    let format: serde_json::Value =
        serde_json::from_str(settings.format.as_deref().unwrap()).expect("a JSON line");
    for (key, variable) in [
        ("requestId", "$context.requestId"),
        ("connectionId", "$context.connectionId"),
        ("status", "$context.status"),
        ("integrationLatency", "$context.integrationLatency"),
    ] {
        assert_eq!(format[key], variable, "{format}");
    }
    assert_eq!(rt.block_on(aws.group()), Some(Some(30)));

    proxy.clear();
    let out = deploy(&project, &proxy.url());
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(proxy.mutations(), vec![], "{}", text(&out));

    let out = project.wsctl(&proxy.url(), &["destroy", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(rt.block_on(aws.group()), None, "the stack's log group goes");
    assert_eq!(
        rt.block_on(aws.account_role()).as_deref(),
        Some(WSCTL_ROLE),
        "the account's setting stays"
    );
    assert!(
        rt.block_on(
            aws.iam
                .get_role()
                .role_name("wsctl-apigateway-cloudwatch")
                .send()
        )
        .is_ok(),
        "the role stays"
    );
}

/// A role the account already has is used as it is; a role the config names replaces it; and
/// taking `access_logs` out turns the stage's logging off, deletes its group and leaves the
/// account alone.
#[test]
fn the_accounts_role_is_used_or_replaced_and_logging_turns_off() {
    build_fixture();
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.url());
    let project = Project::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let aws = rt.block_on(Clients::new(&proxy, &moto));
    let theirs = rt.block_on(aws.role("platform-apigateway-logs"));
    rt.block_on(
        aws.v1
            .update_account()
            .patch_operations(
                aws_sdk_apigateway::types::PatchOperation::builder()
                    .op(aws_sdk_apigateway::types::Op::Replace)
                    .path("/cloudwatchRoleArn")
                    .value(&theirs)
                    .build(),
            )
            .send(),
    )
    .unwrap();

    with_access_logs(&project, "  format: '{\"id\":\"$context.requestId\"}'\n");
    proxy.clear();
    let out = deploy(&project, &proxy.url());
    assert!(out.status.success(), "{}", text(&out));
    let calls = proxy.calls();
    assert_eq!(count(&calls, "PATCH /account"), 0, "{calls:?}");
    assert_eq!(count(&calls, "CreateRole"), 5, "the functions' roles only");
    let settings = rt.block_on(aws.stage_logs()).expect("the stage logs");
    assert_eq!(
        settings.format.as_deref(),
        Some("{\"id\":\"$context.requestId\"}")
    );
    assert_eq!(
        rt.block_on(aws.group()),
        Some(Some(7)),
        "log_retention_days"
    );

    let ours = rt.block_on(aws.role("stack-apigateway-logs"));
    with_access_logs(
        &project,
        &format!("  format: '{{\"id\":\"$context.requestId\"}}'\n  account_role: {ours}\n"),
    );
    let shown = plan(&project, &proxy.url());
    let said = String::from_utf8_lossy(&shown.stdout).to_string();
    assert!(
        said.contains("  ~ API Gateway logging role of us-east-1\n")
            && said.contains(&format!("cloudwatch_role_arn: {theirs} -> {ours}")),
        "{}",
        text(&shown)
    );
    let out = deploy(&project, &proxy.url());
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(rt.block_on(aws.account_role()), Some(ours.clone()));

    with_access_logs(&project, "");
    let shown = plan(&project, &proxy.url());
    let said = String::from_utf8_lossy(&shown.stdout).to_string();
    assert!(
        said.contains("  ~ stage test\n")
            && said.contains("  - log group /aws/apigateway/fixture-test/access\n")
            && !said.contains("API Gateway logging role"),
        "{}",
        text(&shown)
    );
    proxy.clear();
    let out = deploy(&project, &proxy.url());
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(count(&proxy.calls(), "PATCH /account"), 0);
    assert!(rt.block_on(aws.stage_logs()).is_none(), "logging is off");
    assert_eq!(rt.block_on(aws.group()), None);
    assert_eq!(rt.block_on(aws.account_role()), Some(ours));
    proxy.clear();
    let out = deploy(&project, &proxy.url());
    assert_eq!(proxy.mutations(), vec![], "{}", text(&out));
}
