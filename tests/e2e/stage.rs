//! The stage: its settings and tags change in place, a change that drops clients or data is
//! marked and confirmed, and a deploy makes sure the stage serves what it changed.

use wsctl_tests::aws::apigw::{AutoDeploy, Stages};
use wsctl_tests::proxy::{Call, Proxy};
use wsctl_tests::*;

fn deploy(project: &Project, endpoint: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["deploy", "--no-build", "--no-progress"];
    args.extend(extra);
    project.wsctl(endpoint, &args)
}

fn edit(project: &Project, from: &str, to: &str) {
    let config = project.read_config();
    let edited = config.replacen(from, to, 1);
    assert_ne!(config, edited, "{from:?} is not in the config");
    project.write_config(&edited);
}

/// API Gateway's operations as the proxy names them ("METHOD /path").
fn ops(calls: &[Call], method: &str, contains: &str) -> Vec<String> {
    calls
        .iter()
        .filter(|c| c.service == "apigateway")
        .map(|c| c.operation.clone())
        .filter(|o| o.starts_with(&format!("{method} ")) && o.contains(contains))
        .collect()
}

async fn stage(endpoint: &str) -> aws_sdk_apigatewayv2::operation::get_stage::GetStageOutput {
    let apigw = aws_sdk_apigatewayv2::Client::new(&sdk(endpoint).await);
    let api = apigw.get_apis().send().await.unwrap().items.unwrap()[0]
        .api_id
        .clone()
        .unwrap();
    apigw
        .get_stage()
        .api_id(api)
        .stage_name("test")
        .send()
        .await
        .unwrap()
}

/// UpdateStage and TagResource on the stage's ARN: the stage is never deleted, so connected
/// clients stay and the URL keeps working (the old code replaced the stage for either edit).
#[test]
fn a_throttling_or_tags_edit_updates_the_stage_in_place() {
    build_fixture();
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.url());
    let project = Project::new();
    let out = deploy(&project, &proxy.url(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let created = rt.block_on(stage(&proxy.url())).created_date;

    edit(
        &project,
        "throttling: { burst: 100, rate: 50 }",
        "throttling: { burst: 200, rate: 75 }",
    );
    let plan = project.wsctl(&proxy.url(), &["plan", "--no-build"]);
    let shown = String::from_utf8_lossy(&plan.stdout);
    assert!(
        shown.contains("  ~ stage test\n") && !shown.contains("(!)"),
        "{}",
        text(&plan)
    );
    proxy.clear();
    let out = deploy(&project, &proxy.url(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let calls = proxy.mutations();
    assert_eq!(ops(&calls, "PATCH", "/stages/test").len(), 1, "{calls:?}");
    assert_eq!(ops(&calls, "DELETE", "/stages/").len(), 0, "{calls:?}");
    assert_eq!(ops(&calls, "POST", "/stages").len(), 0, "{calls:?}");

    edit(
        &project,
        "tags: { team: realtime }",
        "tags: { team: platform, cost: ws }",
    );
    proxy.clear();
    let out = deploy(&project, &proxy.url(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let calls = proxy.mutations();
    let stage_tagged: Vec<String> = ops(&calls, "POST", "/v2/tags/")
        .into_iter()
        .filter(|o| o.contains("stages"))
        .collect();
    assert_eq!(stage_tagged.len(), 1, "{calls:?}");
    assert_eq!(ops(&calls, "DELETE", "/stages/").len(), 0, "{calls:?}");
    assert_eq!(ops(&calls, "POST", "/stages").len(), 0, "{calls:?}");

    let now = rt.block_on(stage(&proxy.url()));
    assert_eq!(now.created_date, created, "the same stage");
    let settings = now.default_route_settings.unwrap();
    assert_eq!(settings.throttling_burst_limit, Some(200));
    assert_eq!(settings.throttling_rate_limit, Some(75.0));
    let tags = now.tags.unwrap();
    assert_eq!(tags["team"], "platform");
    assert_eq!(tags["cost"], "ws");

    proxy.clear();
    let out = deploy(&project, &proxy.url(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(proxy.mutations(), vec![], "the edits read back as made");
}

/// An emulator without UpdateStage (moto answers 500) gets the stage replaced, said in one line.
#[test]
fn an_endpoint_without_update_stage_gets_the_stage_replaced_and_says_so() {
    build_fixture();
    let moto = Moto::start();
    let project = Project::new();
    let out = deploy(&project, &moto.url(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    edit(
        &project,
        "throttling: { burst: 100, rate: 50 }",
        "throttling: { burst: 300, rate: 50 }",
    );
    let out = deploy(&project, &moto.url(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("the endpoint does not implement UpdateStage; replacing the stage instead"),
        "{}",
        text(&out)
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let now = rt.block_on(stage(&moto.url()));
    assert_eq!(
        now.default_route_settings.unwrap().throttling_burst_limit,
        Some(300)
    );
}

/// A new partition key replaces the table, which deletes its items: the plan says so, and a
/// deploy nobody can confirm changes nothing.
#[test]
fn a_table_replacement_is_marked_and_deploy_asks_before_making_it() {
    build_fixture();
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.url());
    let project = Project::new();
    let out = deploy(&project, &proxy.url(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    edit(
        &project,
        "connections: { partition_key: pk,",
        "connections: { partition_key: id,",
    );

    let plan = project.wsctl(&proxy.url(), &["plan", "--no-build"]);
    let shown = String::from_utf8_lossy(&plan.stdout);
    assert!(
        shown.contains(
            "-/+ table fixture-test-connections (!)\n      (!) deletes the table's items\n"
        ),
        "{}",
        text(&plan)
    );
    assert!(
        shown.contains("(!) 1 change(s) drop connected clients or stored data"),
        "{shown}"
    );
    let plan = project.wsctl(&proxy.url(), &["plan", "--no-build", "--output", "json"]);
    let plan = stdout_json(&plan);
    let table = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "table")
        .cloned()
        .unwrap_or_default();
    assert_eq!(table["action"], "replace", "{plan:#}");
    assert_eq!(table["drops"], "deletes the table's items", "{plan:#}");

    // No terminal (stdin is not one here) and no --yes: refused, nothing sent.
    proxy.clear();
    let out = deploy(&project, &proxy.url(), &[]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("table fixture-test-connections: deletes the table's items")
            && err.contains("--yes"),
        "{err}"
    );
    assert_eq!(
        proxy.mutations(),
        vec![],
        "a refused deploy changes nothing"
    );

    let out = deploy(&project, &proxy.url(), &["--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let key = rt.block_on(async {
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk(&proxy.url()).await);
        dynamodb
            .describe_table()
            .table_name("fixture-test-connections")
            .send()
            .await
            .unwrap()
            .table
            .unwrap()
            .key_schema
            .unwrap()[0]
            .attribute_name
            .clone()
    });
    assert_eq!(key, "id");
}

/// With AutoDeploy the stage deploys a route change by itself: the deploy reads the new
/// deployment's status and deploys nothing itself.
#[test]
fn an_auto_deployed_change_is_confirmed_without_create_deployment() {
    build_fixture();
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.url());
    let project = Project::new();
    let out = deploy(&project, &proxy.url(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let first = rt_stage(&proxy).deployment_id;
    assert!(first.is_some(), "the new stage was deployed");

    edit(
        &project,
        "  subscribe: message\n",
        "  subscribe: message\n  leave: disconnect\n",
    );
    proxy.clear();
    let out = deploy(&project, &proxy.url(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let calls = proxy.calls();
    assert_eq!(ops(&calls, "POST", "/deployments"), Vec::<String>::new());
    assert!(
        !ops(&calls, "GET", "/deployments/").is_empty(),
        "the deploy read the deployment's status: {calls:?}"
    );
    let now = rt_stage(&proxy).deployment_id;
    assert!(now.is_some() && now != first, "{now:?} after {first:?}");
}

fn rt_stage(proxy: &Proxy) -> aws_sdk_apigatewayv2::operation::get_stage::GetStageOutput {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(stage(&proxy.url()))
}

/// A stage that does not deploy by itself gets exactly one CreateDeployment.
#[test]
fn a_change_the_stage_does_not_deploy_gets_one_create_deployment() {
    build_fixture();
    let moto = Moto::start();
    let proxy = Proxy::with(&moto.url(), vec![Box::new(Stages::new(AutoDeploy::Never))]);
    let project = Project::new();
    let out = deploy(&project, &proxy.url(), &[]);
    assert!(out.status.success(), "{}", text(&out));

    edit(
        &project,
        "  subscribe: message\n",
        "  subscribe: message\n  leave: disconnect\n",
    );
    proxy.clear();
    let out = deploy(&project, &proxy.url(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let created = ops(&proxy.mutations(), "POST", "/deployments");
    assert_eq!(created.len(), 1, "{created:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("did not deploy the changes by itself"),
        "{}",
        text(&out)
    );
    assert!(rt_stage(&proxy).deployment_id.is_some());
}

/// CreateDeployment is allowed once every 5 s per account: a deploy whose CreateDeployment
/// meets another stack's waits for the next slot instead of failing.
#[test]
fn a_create_deployment_beside_another_stacks_waits_for_the_accounts_next_slot() {
    build_fixture();
    let moto = Moto::start();
    let quota = std::sync::Arc::new(wsctl_tests::aws::apigw::DeploymentQuota::default());
    let proxy = Proxy::with(
        &moto.url(),
        vec![
            Box::new(quota.clone()),
            Box::new(Stages::new(AutoDeploy::Never)),
        ],
    );
    let project = Project::new();
    let out = deploy(&project, &proxy.url(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(quota.refused() >= 1, "no CreateDeployment met the quota");
    let created = ops(&proxy.mutations(), "POST", "/deployments");
    assert!(created.len() > quota.refused(), "{created:?}");
    assert!(rt_stage(&proxy).deployment_id.is_some());
}

/// A failed auto-deployment fails the deploy (exit 4) with API Gateway's own message.
#[test]
fn a_failed_deployment_fails_the_deploy_with_the_message_from_aws() {
    build_fixture();
    let moto = Moto::start();
    let message = "Unable to deploy API because no routes exist in this API";
    let proxy = Proxy::with(
        &moto.url(),
        vec![Box::new(Stages::new(AutoDeploy::Fails(message.into())))],
    );
    let project = Project::new();
    let out = deploy(&project, &proxy.url(), &[]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("\"{message}\"")) && err.contains("re-run `wsctl deploy`"),
        "{err}"
    );
    assert_eq!(
        ops(&proxy.calls(), "POST", "/deployments"),
        Vec::<String>::new()
    );
}
