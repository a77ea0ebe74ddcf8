//! Deploy creates the stack as specified, a repeat changes nothing, an edit changes only itself.

use aws_sdk_apigatewayv2::types::AuthorizationType;
use wsctl_tests::inventory::{policy_statements, source_arns};
use wsctl_tests::proxy::Proxy;
use wsctl_tests::*;

const FUNCTIONS: [&str; 5] = ["authorizer", "connect", "disconnect", "message", "publish"];

fn deploy(project: &Project, endpoint: &str) -> std::process::Output {
    let out = project.wsctl(endpoint, &["deploy", "--no-build", "--no-progress"]);
    assert!(out.status.success(), "deploy failed:\n{}", text(&out));
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_creates_the_whole_stack() {
    build_fixture();
    let moto = Moto::start();
    let project = Project::new();
    let out = project.wsctl(&moto.url(), &["deploy", "--no-build", "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let result = stdout_json(&out);
    let sdk = sdk(&moto.url()).await;
    let apigw = aws_sdk_apigatewayv2::Client::new(&sdk);

    // The WebSocket API, found by its name and tags.
    let apis = apigw.get_apis().send().await.unwrap().items.unwrap();
    assert_eq!(apis.len(), 1);
    let api = &apis[0];
    let api_id = api.api_id.clone().unwrap();
    assert_eq!(api.name.as_deref(), Some("fixture-test"));
    assert_eq!(api.protocol_type.as_ref().unwrap().as_str(), "WEBSOCKET");
    assert_eq!(
        api.route_selection_expression.as_deref(),
        Some("$request.body.action")
    );
    assert_eq!(api.tags.as_ref().unwrap()["wsctl:stack"], "fixture");
    assert_eq!(
        result["url"],
        format!("wss://{api_id}.execute-api.us-east-1.amazonaws.com/test")
    );
    assert_eq!(
        result["connections_url"],
        format!("https://{api_id}.execute-api.us-east-1.amazonaws.com/test/@connections")
    );

    // Every route integrated with the function the config names; $connect behind the authorizer.
    let integrations = apigw
        .get_integrations()
        .api_id(&api_id)
        .send()
        .await
        .unwrap()
        .items
        .unwrap();
    let function_of = |integration: &str| -> String {
        let i = integrations
            .iter()
            .find(|i| i.integration_id.as_deref() == Some(integration))
            .expect("route target exists");
        assert_eq!(i.integration_type.as_ref().unwrap().as_str(), "AWS_PROXY");
        let uri = i.integration_uri.clone().unwrap();
        uri.split(":function:fixture-test-")
            .nth(1)
            .unwrap()
            .trim_end_matches("/invocations")
            .to_string()
    };
    let routes = apigw
        .get_routes()
        .api_id(&api_id)
        .send()
        .await
        .unwrap()
        .items
        .unwrap();
    let mut seen: Vec<(String, String)> = routes
        .iter()
        .map(|r| {
            (
                r.route_key.clone().unwrap(),
                function_of(
                    r.target
                        .as_deref()
                        .unwrap()
                        .trim_start_matches("integrations/"),
                ),
            )
        })
        .collect();
    seen.sort();
    let expected = [
        ("$connect", "connect"),
        ("$default", "message"),
        ("$disconnect", "disconnect"),
        ("subscribe", "message"),
    ];
    assert_eq!(
        seen,
        expected
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .to_vec()
    );
    assert_eq!(
        integrations.len(),
        3,
        "one integration per integrated function"
    );
    let connect = routes
        .iter()
        .find(|r| r.route_key.as_deref() == Some("$connect"))
        .unwrap();
    assert_eq!(connect.authorization_type, Some(AuthorizationType::Custom));
    let authorizer = apigw
        .get_authorizer()
        .api_id(&api_id)
        .authorizer_id(connect.authorizer_id.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(authorizer.authorizer_type.unwrap().as_str(), "REQUEST");
    assert_eq!(
        authorizer.identity_source.unwrap(),
        vec!["route.request.querystring.token".to_string()]
    );
    assert!(
        authorizer
            .authorizer_uri
            .unwrap()
            .contains(":function:fixture-test-authorizer/invocations")
    );
    for r in routes
        .iter()
        .filter(|r| r.route_key.as_deref() != Some("$connect"))
    {
        assert_ne!(
            r.authorization_type,
            Some(AuthorizationType::Custom),
            "{:?}",
            r.route_key
        );
    }
    let stage = apigw
        .get_stage()
        .api_id(&api_id)
        .stage_name("test")
        .send()
        .await
        .unwrap();
    assert_eq!(stage.auto_deploy, Some(true));
    assert_eq!(
        stage
            .default_route_settings
            .as_ref()
            .unwrap()
            .throttling_burst_limit,
        Some(100)
    );

    // Each function API Gateway calls may be invoked only as what it is for: the routes it
    // serves on this stage, or the authorizer (tests/e2e/permissions.rs has the details).
    let lambda = aws_sdk_lambda::Client::new(&sdk);
    let api_arn = format!("arn:aws:execute-api:{REGION}:{ACCOUNT}:{api_id}");
    let authorizer_id = connect.authorizer_id.clone().unwrap();
    for (f, sources) in [
        ("authorizer", vec![format!("authorizers/{authorizer_id}")]),
        ("connect", vec!["test/$connect".to_string()]),
        ("disconnect", vec!["test/$disconnect".to_string()]),
        (
            "message",
            vec!["test/$default".to_string(), "test/subscribe".to_string()],
        ),
    ] {
        let statements = policy_statements(&lambda, &format!("fixture-test-{f}"))
            .await
            .expect("a resource policy");
        assert_eq!(statements.len(), sources.len(), "{f}: {statements:?}");
        for s in &statements {
            assert_eq!(s["Principal"]["Service"], "apigateway.amazonaws.com");
        }
        let mut got = source_arns(&statements);
        got.sort();
        let want: Vec<String> = sources.iter().map(|s| format!("{api_arn}/{s}")).collect();
        assert_eq!(got, want, "{f}");
    }
    assert!(
        policy_statements(&lambda, "fixture-test-publish")
            .await
            .is_none(),
        "publish is not invoked by the API"
    );

    // Functions: configuration and environment as the config says.
    let message = lambda
        .get_function_configuration()
        .function_name("fixture-test-message")
        .send()
        .await
        .unwrap();
    assert_eq!(message.memory_size, Some(256));
    assert_eq!(message.runtime.unwrap().as_str(), "provided.al2023");
    // `handler:` is Lambda's Handler setting (what a custom runtime reads as `_HANDLER`).
    assert_eq!(message.handler.as_deref(), Some("message"));
    let connect = lambda
        .get_function_configuration()
        .function_name("fixture-test-connect")
        .send()
        .await
        .unwrap();
    assert_eq!(connect.handler.as_deref(), Some("bootstrap"));
    let env = message.environment.unwrap().variables.unwrap();
    assert_eq!(env["WSCTL_TABLE_HISTORY"], "fixture-test-history");
    assert_eq!(env["WSCTL_FUNCTION_PUBLISH"], "fixture-test-publish");
    assert_eq!(
        env["WSCTL_CONNECTIONS_URL"],
        format!("https://{api_id}.execute-api.us-east-1.amazonaws.com/test")
    );

    // Tables on demand with TTL on.
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    for (table, ttl) in [
        ("connections", "expires"),
        ("subscriptions", "ttl"),
        ("history", "ttl"),
    ] {
        let name = format!("fixture-test-{table}");
        let t = dynamodb
            .describe_table()
            .table_name(&name)
            .send()
            .await
            .unwrap()
            .table
            .unwrap();
        assert_eq!(
            t.billing_mode_summary
                .unwrap()
                .billing_mode
                .unwrap()
                .as_str(),
            "PAY_PER_REQUEST"
        );
        let d = dynamodb
            .describe_time_to_live()
            .table_name(&name)
            .send()
            .await
            .unwrap()
            .time_to_live_description
            .unwrap();
        assert_eq!(d.time_to_live_status.unwrap().as_str(), "ENABLED", "{name}");
        assert_eq!(d.attribute_name.as_deref(), Some(ttl));
    }

    // One role per function; its policy names exact ARNs of this stack, no bare `*`.
    let iam = aws_sdk_iam::Client::new(&sdk);
    let roles = iam
        .list_roles()
        .path_prefix("/wsctl/fixture/test/")
        .send()
        .await
        .unwrap()
        .roles;
    let mut names: Vec<String> = roles.iter().map(|r| r.role_name.clone()).collect();
    names.sort();
    assert_eq!(
        names,
        FUNCTIONS.map(|f| format!("fixture-test-{f}")).to_vec()
    );
    for f in FUNCTIONS {
        let role = format!("fixture-test-{f}");
        let doc = iam
            .get_role_policy()
            .role_name(&role)
            .policy_name("wsctl")
            .send()
            .await
            .unwrap()
            .policy_document;
        let doc = inventory::decode(&doc);
        for statement in doc["Statement"].as_array().unwrap() {
            for resource in statement["Resource"].as_array().unwrap() {
                let r = resource.as_str().unwrap();
                assert_ne!(r, "*", "{role}: {statement}");
                let own_logs = format!(
                    "arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/fixture-test-{f}:*"
                );
                let own_stage = format!(
                    "arn:aws:execute-api:{REGION}:{ACCOUNT}:{api_id}/test/*/@connections/*"
                );
                if r.contains('*') {
                    assert!(
                        r == own_logs || r == own_stage,
                        "{role}: wildcard outside its log group/stage: {r}"
                    );
                }
                let of_this_stack = r.contains("fixture-test-")
                    || r.ends_with(":parameter/wsctl/fixture/test/token-secret")
                    || r == own_stage;
                assert!(
                    r.contains(ACCOUNT) && of_this_stack,
                    "{role}: names a resource outside the stack: {r}"
                );
            }
        }
        let tables: Vec<&str> = doc["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| {
                s["Resource"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|r| r.as_str())
            })
            .filter_map(|r| r.strip_prefix(&format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/")))
            .collect();
        let want: &[&str] = match f {
            "authorizer" => &[],
            "connect" => &["fixture-test-connections"],
            "disconnect" => &[
                "fixture-test-connections",
                "fixture-test-subscriptions",
                "fixture-test-subscriptions/index/by-connection",
            ],
            "message" => &[
                "fixture-test-connections",
                "fixture-test-history",
                "fixture-test-subscriptions",
                "fixture-test-subscriptions/index/by-connection",
            ],
            _ => &[
                "fixture-test-subscriptions",
                "fixture-test-subscriptions/index/by-connection",
            ],
        };
        let mut tables = tables;
        tables.sort();
        assert_eq!(tables, want, "{role}");
    }

    // The token secret: a SecureString, never in any output.
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let secret = ssm
        .get_parameter()
        .name("/wsctl/fixture/test/token-secret")
        .with_decryption(true)
        .send()
        .await
        .unwrap()
        .parameter
        .unwrap();
    assert_eq!(secret.r#type.unwrap().as_str(), "SecureString");
    let value = secret.value.unwrap();
    assert_eq!(value.len(), 64);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(&value)
            && !String::from_utf8_lossy(&out.stderr).contains(&value)
    );

    // status agrees: everything there, in sync.
    let status = project.wsctl(&moto.url(), &["status", "--output", "json"]);
    assert!(status.status.success(), "{}", text(&status));
    let status = stdout_json(&status);
    assert_eq!(status["in_sync"], true, "{status}");
    assert_eq!(status["url"], result["url"]);
}

#[test]
fn a_second_deploy_makes_no_mutating_call() {
    build_fixture();
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.url());
    let project = Project::new();
    // With a function serving three routes, a reservation and a table with deletion
    // protection, each read back as it was set (every list read one item a page).
    let history = "  history: { partition_key: channel, sort_key: \"serial:N\"";
    project.write_config(
        &project
            .read_config()
            .replacen(
                "  subscribe: message\n",
                "  subscribe: message\n  unsubscribe: message\n",
                1,
            )
            .replacen(history, &format!("{history}, deletion_protection: true"), 1)
            .replacen(
                "    timeout: 30\n",
                "    timeout: 30\n    reserved_concurrency: 20\n",
                1,
            ),
    );
    deploy(&project, &proxy.url());
    let first = proxy.mutations().len();
    assert!(
        first >= 40,
        "the first deploy made only {first} mutating calls"
    );

    proxy.clear();
    let out = deploy(&project, &proxy.url());
    assert_eq!(proxy.mutations(), vec![], "second deploy mutated");
    assert!(
        proxy.calls().len() > 10,
        "the second deploy did read the stack"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no changes"),
        "{}",
        text(&out)
    );

    proxy.clear();
    let out = project.wsctl(&proxy.url(), &["plan", "--no-build"]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("No changes"),
        "{}",
        text(&out)
    );
    assert_eq!(proxy.mutations(), vec![]);
}

#[test]
fn editing_memory_and_adding_a_route_plans_and_applies_exactly_that() {
    build_fixture();
    let moto = Moto::start();
    let project = Project::new();
    deploy(&project, &moto.url());

    let config = project.read_config();
    let edited = config
        .replacen("    memory: 256\n", "    memory: 512\n", 1)
        .replacen(
            "  subscribe: message\n",
            "  subscribe: message\n  leave: disconnect\n",
            1,
        );
    assert_ne!(config, edited);
    project.write_config(&edited);

    let out = project.wsctl(&moto.url(), &["plan", "--no-build", "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let plan = stdout_json(&out);
    let changes = plan["changes"].as_array().unwrap();
    // The memory, the route, and API Gateway's permission to invoke disconnect for it.
    assert_eq!(changes.len(), 3, "{plan:#}");
    let permission = changes
        .iter()
        .find(|c| c["kind"] == "permission")
        .expect("a permission change");
    assert_eq!(
        (permission["name"].as_str(), permission["action"].as_str()),
        (Some("fixture-test-disconnect leave"), Some("create"))
    );
    let function = changes
        .iter()
        .find(|c| c["kind"] == "function")
        .expect("a function change");
    assert_eq!(function["name"], "fixture-test-message");
    assert_eq!(function["action"], "update");
    let fields = function["fields"].as_array().unwrap();
    assert_eq!(fields.len(), 1, "{function:#}");
    assert_eq!(
        (
            fields[0]["field"].as_str(),
            fields[0]["before"].as_i64(),
            fields[0]["after"].as_i64()
        ),
        (Some("memory"), Some(256), Some(512))
    );
    let route = changes
        .iter()
        .find(|c| c["kind"] == "route")
        .expect("a route change");
    assert_eq!(
        (route["name"].as_str(), route["action"].as_str()),
        (Some("leave"), Some("create"))
    );

    let text_plan = project.wsctl(&moto.url(), &["plan", "--no-build"]);
    let shown = String::from_utf8_lossy(&text_plan.stdout);
    assert!(
        shown.contains("  ~ function fixture-test-message") && shown.contains("memory: 256 -> 512"),
        "{shown}"
    );
    assert!(shown.contains("  + route leave"), "{shown}");

    deploy(&project, &moto.url());
    let out = project.wsctl(&moto.url(), &["plan", "--no-build", "--output", "json"]);
    assert_eq!(
        stdout_json(&out)["changes"],
        serde_json::json!([]),
        "{}",
        text(&out)
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let sdk = sdk(&moto.url()).await;
        let lambda = aws_sdk_lambda::Client::new(&sdk);
        let c = lambda
            .get_function_configuration()
            .function_name("fixture-test-message")
            .send()
            .await
            .unwrap();
        assert_eq!(c.memory_size, Some(512));
        let apigw = aws_sdk_apigatewayv2::Client::new(&sdk);
        let api = apigw
            .get_apis()
            .send()
            .await
            .unwrap()
            .items
            .unwrap()
            .remove(0)
            .api_id
            .unwrap();
        let routes = apigw
            .get_routes()
            .api_id(&api)
            .send()
            .await
            .unwrap()
            .items
            .unwrap();
        assert_eq!(routes.len(), 5);
        assert!(
            routes
                .iter()
                .any(|r| r.route_key.as_deref() == Some("leave"))
        );
    });
}

#[test]
fn a_name_taken_by_an_untagged_resource_is_refused_before_any_change() {
    build_fixture();
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.url());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let iam = aws_sdk_iam::Client::new(&sdk(&moto.url()).await);
        let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
        iam.create_role().role_name("fixture-test-connect").assume_role_policy_document(trust).send().await.unwrap();
    });
    let project = Project::new();
    let out = project.wsctl(&proxy.url(), &["deploy", "--no-build"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("role fixture-test-connect") && err.contains("without its tags"),
        "{err}"
    );
    assert_eq!(
        proxy.mutations(),
        vec![],
        "nothing may be created when the plan is refused"
    );
}

/// moto has no gateway of its own and reports AWS's address as the API's endpoint: no client of
/// the stage (WebSocket, `@connections`) may be sent there, and the error names the way out.
#[test]
fn an_emulator_that_reports_an_aws_host_sends_no_client_to_aws() {
    build_fixture();
    let moto = Moto::start();
    let project = Project::new();
    deploy(&project, &moto.url());
    let commands: [&[&str]; 4] = [
        &["connect", "--user", "x"],
        &["publish", "--connection", "abc", "--data", "1"],
        &["gc"],
        &["disconnect", "--connection", "abc"],
    ];
    for args in commands {
        let out = project.wsctl(&moto.url(), args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("amazonaws.com") && err.contains("--gateway-url"),
            "{args:?}: {err}"
        );
    }
}

/// A token of a deployed stage grants what `--allow` names; none is refused rather than
/// minting one that may do everything (`wsctl dev` keeps that default).
#[test]
fn a_token_of_a_deployed_stage_needs_its_grants_named() {
    build_fixture();
    let moto = Moto::start();
    let project = Project::new();
    deploy(&project, &moto.url());
    let out = project.wsctl(&moto.url(), &["token", "--user", "ana"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--allow is required"), "{err}");
    let out = project.wsctl(
        &moto.url(),
        &[
            "--output",
            "json",
            "token",
            "--user",
            "ana",
            "--allow",
            "room-*:subscribe",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        stdout_json(&out)["cap"],
        serde_json::json!({"room-*": ["subscribe"]})
    );
}

/// A function serving three routes (and the authorizer's function its own permission) gets
/// its permissions added in parallel; Lambda serialises changes to one function and refuses
/// the overlapping ones with 409 (played by [`wsctl_tests::aws::lambda::BusyFunctions`]): the
/// deploy sends them again until each is in, and the function's policy holds every route.
#[test]
fn a_function_serving_three_routes_gets_every_permission_through_lambdas_409s() {
    build_fixture();
    let moto = Moto::start();
    let busy = wsctl_tests::aws::lambda::BusyFunctions::default();
    let proxy = Proxy::with(
        &moto.url(),
        wsctl_tests::aws::playing(Default::default(), busy.clone()),
    );
    let project = Project::new();
    project.write_config(&project.read_config().replacen(
        "  subscribe: message\n",
        "  subscribe: message\n  unsubscribe: message\n",
        1,
    ));
    deploy(&project, &proxy.url());
    assert!(
        busy.refused() > 0,
        "no call overlapped: the test proves nothing"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let statements = rt.block_on(async {
        let lambda = aws_sdk_lambda::Client::new(&sdk(&moto.url()).await);
        policy_statements(&lambda, "fixture-test-message").await
    });
    let arns = source_arns(&statements.expect("a resource policy"));
    let mut routes: Vec<&str> = arns
        .iter()
        .map(|arn| arn.rsplit('/').next().unwrap())
        .collect();
    routes.sort();
    assert_eq!(routes, ["$default", "subscribe", "unsubscribe"]);

    proxy.clear();
    deploy(&project, &proxy.url());
    assert_eq!(proxy.mutations(), vec![], "a second deploy changes nothing");
}

/// Removing the authorizer from the config leaves `$connect` open and the authorizer deleted,
/// even where a route still names it: UpdateRoute keeps an `AuthorizerId` it is not sent, and
/// DeleteAuthorizer answers 409 while a route names the authorizer (played by
/// [`wsctl_tests::aws::apigw::AuthorizerReferences`]).
#[test]
fn removing_the_authorizer_clears_the_routes_reference_and_deletes_it() {
    build_fixture();
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.url());
    let project = Project::new();
    deploy(&project, &proxy.url());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let apigw = rt.block_on(async { aws_sdk_apigatewayv2::Client::new(&sdk(&moto.url()).await) });
    let connect = || {
        rt.block_on(async {
            let api = apigw.get_apis().send().await.unwrap().items.unwrap()[0]
                .api_id
                .clone()
                .unwrap();
            let route = apigw
                .get_routes()
                .api_id(&api)
                .send()
                .await
                .unwrap()
                .items
                .unwrap()
                .into_iter()
                .find(|r| r.route_key.as_deref() == Some("$connect"))
                .unwrap();
            (api, route)
        })
    };
    let (api, route) = connect();
    let authorizer = route.authorizer_id.clone().unwrap();
    // What a change to NONE alone leaves on AWS: the type is gone, the id is not.
    rt.block_on(
        apigw
            .update_route()
            .api_id(&api)
            .route_id(route.route_id.clone().unwrap())
            .authorization_type(AuthorizationType::None)
            .send(),
    )
    .unwrap();
    let config = project.read_config();
    let start = config.find("\nauthorizer:\n").unwrap();
    let end = start + 1 + config[start + 1..].find("\ntables:").unwrap();
    project.write_config(&format!("{}{}", &config[..start], &config[end..]));

    let plan = project.wsctl(&proxy.url(), &["plan", "--no-build"]);
    assert!(plan.status.success(), "{}", text(&plan));
    assert!(text(&plan).contains("still names"), "{}", text(&plan));
    deploy(&project, &proxy.url());
    let (_, route) = connect();
    assert_eq!(route.authorization_type, Some(AuthorizationType::None));
    assert!(
        route
            .authorizer_id
            .as_deref()
            .unwrap_or_default()
            .is_empty(),
        "{route:?}"
    );
    let gone = rt.block_on(
        apigw
            .get_authorizer()
            .api_id(&api)
            .authorizer_id(&authorizer)
            .send(),
    );
    assert!(gone.is_err(), "the authorizer is still there: {gone:?}");
    proxy.clear();
    deploy(&project, &proxy.url());
    assert_eq!(proxy.mutations(), vec![], "a second deploy changes nothing");
}
