//! API Gateway may invoke each function only as what it is for: one resource-policy statement
//! per route the function serves on this stage (`<api>/<stage>/<route key>`), and one for the
//! authorizer (`<api>/authorizers/<authorizer id>`), not `<api>/*` (any stage, route or
//! authorizer of the API). Source ARN forms: "Control access to WebSocket APIs with AWS Lambda
//! REQUEST authorizers" (API Gateway developer guide, the `methodArn` of a WebSocket route) and
//! the Lambda developer guide's resource-based policy examples for API Gateway.

use std::collections::BTreeMap;

use wsctl_tests::inventory::{policy_statements, source_arns};
use wsctl_tests::proxy::Proxy;
use wsctl_tests::*;

fn deploy(project: &Project, endpoint: &str) {
    let out = project.wsctl(endpoint, &["deploy", "--no-build", "--no-progress"]);
    assert!(out.status.success(), "deploy failed:\n{}", text(&out));
}

/// Each function's statements, as the SourceArn of each (sorted), read back through Lambda's
/// GetPolicy; a function without a policy has none.
async fn sources(endpoint: &str) -> BTreeMap<String, Vec<String>> {
    let lambda = aws_sdk_lambda::Client::new(&sdk(endpoint).await);
    let mut out = BTreeMap::new();
    for f in ["authorizer", "connect", "disconnect", "message", "publish"] {
        let Some(statements) = policy_statements(&lambda, &format!("fixture-test-{f}")).await
        else {
            out.insert(f.to_string(), vec![]);
            continue;
        };
        for s in &statements {
            assert_eq!(s["Principal"]["Service"], "apigateway.amazonaws.com", "{f}");
            assert_eq!(s["Action"], "lambda:InvokeFunction", "{f}");
        }
        let mut arns = source_arns(&statements);
        arns.sort();
        out.insert(f.to_string(), arns);
    }
    out
}

/// The API's id and its authorizer's (found through the `$connect` route).
async fn ids(endpoint: &str) -> (String, String) {
    let apigw = aws_sdk_apigatewayv2::Client::new(&sdk(endpoint).await);
    let api = apigw.get_apis().send().await.unwrap().items.unwrap()[0]
        .api_id
        .clone()
        .unwrap();
    let routes = apigw
        .get_routes()
        .api_id(&api)
        .send()
        .await
        .unwrap()
        .items
        .unwrap();
    let authorizer = routes
        .iter()
        .find(|r| r.route_key.as_deref() == Some("$connect"))
        .and_then(|r| r.authorizer_id.clone())
        .expect("$connect has the authorizer");
    (api, authorizer)
}

fn expected(
    api: &str,
    authorizer: &str,
    by_function: &[(&str, &[&str])],
) -> BTreeMap<String, Vec<String>> {
    let base = format!("arn:aws:execute-api:{REGION}:{ACCOUNT}:{api}");
    by_function
        .iter()
        .map(|(f, sources)| {
            let mut arns: Vec<String> = sources
                .iter()
                .map(|s| match *s {
                    "(authorizer)" => format!("{base}/authorizers/{authorizer}"),
                    route => format!("{base}/test/{route}"),
                })
                .collect();
            arns.sort();
            (f.to_string(), arns)
        })
        .collect()
}

#[test]
fn each_function_may_be_invoked_only_by_its_routes_and_the_authorizer() {
    build_fixture();
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.url());
    let project = Project::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    deploy(&project, &proxy.url());

    let (api, authorizer) = rt.block_on(ids(&moto.url()));
    assert_eq!(
        rt.block_on(sources(&moto.url())),
        expected(
            &api,
            &authorizer,
            &[
                ("authorizer", &["(authorizer)"]),
                ("connect", &["$connect"]),
                ("disconnect", &["$disconnect"]),
                ("message", &["$default", "subscribe"]),
                ("publish", &[]),
            ]
        )
    );

    // A route added to disconnect and one taken from message: exactly their statements change.
    let config = project.read_config();
    let edited = config.replacen("  subscribe: message\n", "  leave: disconnect\n", 1);
    assert_ne!(config, edited);
    project.write_config(&edited);
    proxy.clear();
    deploy(&project, &proxy.url());
    let mut policy_calls: Vec<String> = proxy
        .mutations()
        .into_iter()
        .filter(|c| c.service == "lambda")
        .map(|c| c.operation)
        .collect();
    policy_calls.sort();
    assert_eq!(policy_calls.len(), 2, "{policy_calls:?}");
    assert!(
        policy_calls[0].starts_with(
            "DELETE /2015-03-31/functions/fixture-test-message/policy/wsctl-route-subscribe-"
        ),
        "{policy_calls:?}"
    );
    assert_eq!(
        policy_calls[1], "POST /2015-03-31/functions/fixture-test-disconnect/policy",
        "{policy_calls:?}"
    );
    assert_eq!(
        rt.block_on(sources(&moto.url())),
        expected(
            &api,
            &authorizer,
            &[
                ("authorizer", &["(authorizer)"]),
                ("connect", &["$connect"]),
                ("disconnect", &["$disconnect", "leave"]),
                ("message", &["$default"]),
                ("publish", &[]),
            ]
        )
    );

    proxy.clear();
    deploy(&project, &proxy.url());
    assert_eq!(
        proxy.mutations(),
        vec![],
        "a repeated deploy changed something"
    );
}

/// A stack deployed when the permission covered the whole API (`<api>/*`, statement
/// `wsctl-apigateway`) gets the scoped statements, and the old one goes.
#[test]
fn a_whole_api_permission_left_by_an_older_deploy_is_replaced_by_scoped_ones() {
    build_fixture();
    let moto = Moto::start();
    let project = Project::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    deploy(&project, &moto.url());
    let (api, authorizer) = rt.block_on(ids(&moto.url()));
    rt.block_on(async {
        let lambda = aws_sdk_lambda::Client::new(&sdk(&moto.url()).await);
        lambda
            .add_permission()
            .function_name("fixture-test-connect")
            .statement_id("wsctl-apigateway")
            .action("lambda:InvokeFunction")
            .principal("apigateway.amazonaws.com")
            .source_arn(format!("arn:aws:execute-api:{REGION}:{ACCOUNT}:{api}/*"))
            .send()
            .await
            .unwrap();
    });
    let out = project.wsctl(&moto.url(), &["plan", "--no-build"]);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("- permission fixture-test-connect (wsctl-apigateway)"),
        "{}",
        text(&out)
    );
    deploy(&project, &moto.url());
    assert_eq!(
        rt.block_on(sources(&moto.url()))["connect"],
        expected(&api, &authorizer, &[("connect", &["$connect"])])["connect"]
    );
}
