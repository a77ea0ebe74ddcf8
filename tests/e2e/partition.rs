//! A stack in a China region: every ARN wsctl writes carries the `aws-cn` partition and every
//! URL the `amazonaws.com.cn` domain ("Endpoints and ARNs for Amazon Web Services in China").

use serde_json::Value;
use wsctl_tests::inventory::{policy_statements, source_arns};
use wsctl_tests::proxy::Proxy;
use wsctl_tests::*;

const CN: &str = "cn-north-1";

async fn sdk_in(endpoint: &str, region: &'static str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_iam::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .load()
        .await
}

/// Every ARN inside `v`, wherever it sits.
fn arns(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(i) = rest.find("arn:") {
                let arn: String = rest[i..]
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '"')
                    .collect();
                rest = &rest[i + 4..];
                out.push(arn);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| arns(x, out)),
        Value::Object(o) => o.values().for_each(|x| arns(x, out)),
        _ => {}
    }
}

#[test]
fn a_stack_in_china_uses_the_aws_cn_partition() {
    // The proxy runs its own runtime, so the SDK reads get one of their own.
    build_fixture();
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.url());
    let project = Project::new();
    project.write_config(
        &project
            .read_config()
            .replace("region: us-east-1", &format!("region: {CN}")),
    );
    let out = project.wsctl(&proxy.url(), &["deploy", "--no-build", "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let result = stdout_json(&out);
    let wss = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(read_back(&moto.url()));
    assert_eq!(result["url"], wss.as_str(), "{result}");
    let status = project.wsctl(&proxy.url(), &["status"]);
    assert!(status.status.success(), "{}", text(&status));
    assert!(
        String::from_utf8_lossy(&status.stdout).contains(&wss),
        "{}",
        text(&status)
    );
}

/// Checks the ARNs and the function's `@connections` URL; returns the stage's WebSocket URL.
async fn read_back(moto: &str) -> String {
    let sdk = sdk_in(moto, CN).await;
    let apigw = aws_sdk_apigatewayv2::Client::new(&sdk);
    let api = apigw
        .get_apis()
        .send()
        .await
        .unwrap()
        .items
        .unwrap()
        .remove(0);
    let api_id = api.api_id.clone().unwrap();

    let mut found = Vec::new();
    // Integrations and the authorizer: Lambda's invoke URI.
    let integrations = apigw
        .get_integrations()
        .api_id(&api_id)
        .send()
        .await
        .unwrap()
        .items
        .unwrap();
    assert!(!integrations.is_empty());
    for i in integrations {
        let uri = i.integration_uri.unwrap();
        assert!(
            uri.starts_with(&format!("arn:aws-cn:apigateway:{CN}:lambda:path/2015-03-31/functions/arn:aws-cn:lambda:{CN}:")),
            "{uri}"
        );
        found.push(uri);
    }
    // Permissions: the API's execute-api ARN as the source.
    let lambda = aws_sdk_lambda::Client::new(&sdk);
    for f in ["authorizer", "connect", "disconnect", "message"] {
        let statements = policy_statements(&lambda, &format!("fixture-test-{f}"))
            .await
            .expect("a resource policy");
        let source = source_arns(&statements).remove(0);
        assert!(
            source.starts_with(&format!("arn:aws-cn:execute-api:{CN}:")),
            "{f}: {source}"
        );
        found.push(source);
    }
    // Roles: the policies wsctl wrote, and each function's role.
    let iam = aws_sdk_iam::Client::new(&sdk);
    for f in ["authorizer", "connect", "disconnect", "message", "publish"] {
        let name = format!("fixture-test-{f}");
        let doc = iam
            .get_role_policy()
            .role_name(&name)
            .policy_name("wsctl")
            .send()
            .await
            .unwrap()
            .policy_document;
        arns(&inventory::decode(&doc), &mut found);
        let role = lambda
            .get_function_configuration()
            .function_name(&name)
            .send()
            .await
            .unwrap()
            .role
            .unwrap();
        found.push(role);
    }
    assert!(found.len() > 20, "{found:?}");
    for arn in &found {
        assert!(arn.starts_with("arn:aws-cn:"), "{arn} is not in aws-cn");
    }

    // The URLs: what the function posts to, and what deploy and status print.
    let message = lambda
        .get_function_configuration()
        .function_name("fixture-test-message")
        .send()
        .await
        .unwrap();
    let env = message.environment.unwrap().variables.unwrap();
    assert_eq!(
        env["WSCTL_CONNECTIONS_URL"],
        format!("https://{api_id}.execute-api.{CN}.amazonaws.com.cn/test")
    );
    format!("wss://{api_id}.execute-api.{CN}.amazonaws.com.cn/test")
}
