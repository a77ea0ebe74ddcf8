//! The publish endpoint (`publish_endpoint: true`): a function URL with `AuthType` `AWS_IAM` on
//! the publish function. Against moto through the proxy, it is created, read back, left alone by
//! a second deploy and removed; against `wsctl dev`, a request `curl` signs reaches a subscriber,
//! and what a backend must not do (unsigned, wrongly signed, the function's internal fan-out
//! form, another method) is refused before anything is stored or sent.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use wsctl_tests::dev::{Dev, dev_config};
use wsctl_tests::proxy::Proxy;
use wsctl_tests::*;

use crate::dev::wsctl;

const T: Duration = Duration::from_secs(10);

/// The fixture with the endpoint on: its publish function answers as the bundled one.
fn with_endpoint(project: &Project) -> String {
    let config =
        project
            .read_config()
            .replacen("  publish:\n", "  publish:\n    handler: publish\n", 1);
    format!("{config}publish_endpoint: true\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_endpoint_is_created_read_back_left_alone_and_removed() {
    build_fixture();
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.url());
    let project = Project::new();
    let on = with_endpoint(&project);
    let off = on.replacen("publish_endpoint: true\n", "", 1);
    project.write_config(&on);
    let out = project.wsctl(&proxy.url(), &["deploy", "--no-build", "--no-progress"]);
    assert!(out.status.success(), "{}", text(&out));
    let lambda = aws_sdk_lambda::Client::new(&sdk(&moto.url()).await);
    let url = lambda
        .get_function_url_config()
        .function_name("fixture-test-publish")
        .send()
        .await
        .expect("the publish function has a URL");
    assert_eq!(url.auth_type.as_str(), "AWS_IAM");
    assert_eq!(
        url.invoke_mode.map(|m| m.as_str().to_string()).as_deref(),
        Some("BUFFERED")
    );
    assert!(
        text(&out).contains(&format!("Publish endpoint: {}", url.function_url)),
        "deploy prints the URL: {}",
        text(&out)
    );
    // No other function got one.
    for other in ["authorizer", "connect", "disconnect", "message"] {
        let got = lambda
            .get_function_url_config()
            .function_name(format!("fixture-test-{other}"))
            .send()
            .await;
        assert!(got.is_err(), "{other} has a URL");
    }
    let out = project.wsctl(&proxy.url(), &["status", "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        stdout_json(&out)["publish_endpoint"],
        json!(url.function_url)
    );

    // The backend's policy names the function, and allows Invoke only through the URL.
    let out = project.wsctl(&proxy.url(), &["publish", "--print-policy"]);
    assert!(out.status.success(), "{}", text(&out));
    let policy = stdout_json(&out);
    let arn = "arn:aws:lambda:us-east-1:123456789012:function:fixture-test-publish";
    let statements = policy["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 2, "{policy:#}");
    for s in statements {
        assert_eq!(s["Resource"], arn);
    }
    assert_eq!(statements[0]["Action"], "lambda:InvokeFunctionUrl");
    assert_eq!(
        statements[0]["Condition"]["StringEquals"]["lambda:FunctionUrlAuthType"],
        "AWS_IAM"
    );
    assert_eq!(statements[1]["Action"], "lambda:InvokeFunction");
    assert_eq!(
        statements[1]["Condition"]["Bool"]["lambda:InvokedViaFunctionUrl"],
        "true"
    );

    // Deployed again unchanged: not one mutating call.
    proxy.clear();
    let out = project.wsctl(&proxy.url(), &["deploy", "--no-build", "--no-progress"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(proxy.mutations(), vec![], "the second deploy mutated");

    // Opened to the public by hand (AuthType NONE): drift, which the next deploy closes in place.
    lambda
        .update_function_url_config()
        .function_name("fixture-test-publish")
        .auth_type(aws_sdk_lambda::types::FunctionUrlAuthType::None)
        .send()
        .await
        .unwrap();
    let out = project.wsctl(&proxy.url(), &["status", "--output", "json"]);
    let status = stdout_json(&out);
    assert_eq!(status["in_sync"], false, "{status:#}");
    assert_eq!(status["drift"][0]["kind"], "function_url", "{status:#}");
    assert_eq!(status["drift"][0]["action"], "update", "{status:#}");
    proxy.clear();
    let out = project.wsctl(&proxy.url(), &["deploy", "--no-build", "--no-progress"]);
    assert!(out.status.success(), "{}", text(&out));
    let mutations: Vec<String> = proxy.mutations().into_iter().map(|c| c.operation).collect();
    assert_eq!(
        mutations,
        ["PUT /2021-10-31/functions/fixture-test-publish/url"]
    );
    let url = lambda
        .get_function_url_config()
        .function_name("fixture-test-publish")
        .send()
        .await
        .unwrap();
    assert_eq!(url.auth_type.as_str(), "AWS_IAM");

    // Turned off: the plan marks what backends lose, deploy asks, and only the URL goes.
    project.write_config(&off);
    let out = project.wsctl(&proxy.url(), &["plan", "--no-build", "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let plan = stdout_json(&out);
    let changes = plan["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{plan:#}");
    assert_eq!(changes[0]["kind"], "function_url");
    assert_eq!(changes[0]["action"], "delete");
    assert!(
        changes[0]["drops"]
            .as_str()
            .unwrap_or_default()
            .contains("URL"),
        "{plan:#}"
    );
    let out = project.wsctl(&proxy.url(), &["deploy", "--no-build", "--no-progress"]);
    assert!(
        !out.status.success(),
        "deploy must ask first: {}",
        text(&out)
    );
    proxy.clear();
    let out = project.wsctl(
        &proxy.url(),
        &["deploy", "--no-build", "--no-progress", "--yes"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let mutations: Vec<String> = proxy.mutations().into_iter().map(|c| c.operation).collect();
    assert_eq!(
        mutations,
        ["DELETE /2021-10-31/functions/fixture-test-publish/url"]
    );
    let gone = lambda
        .get_function_url_config()
        .function_name("fixture-test-publish")
        .send()
        .await;
    assert!(gone.is_err(), "the URL is gone");

    // On again, then destroyed with its function.
    project.write_config(&on);
    let out = project.wsctl(&proxy.url(), &["deploy", "--no-build", "--no-progress"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = project.wsctl(&proxy.url(), &["destroy", "--yes", "--no-progress"]);
    assert!(out.status.success(), "{}", text(&out));
    let state = inventory::snapshot(&moto.url()).await;
    assert_eq!(state["functions"], json!({}), "{state:#}");
}

/// `curl --aws-sigv4` as a backend would call the endpoint; the status and the JSON answer.
fn curl(url: &str, user: Option<&str>, args: &[&str]) -> (u16, Value) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "-w",
        "\n%{http_code}",
        "-H",
        "content-type: application/json",
    ]);
    if let Some(user) = user {
        cmd.args(["--aws-sigv4", "aws:amz:us-east-1:lambda", "--user", user]);
    }
    let out = cmd.args(args).arg(url).output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').expect("curl's status line");
    (
        status.parse().expect("an HTTP status"),
        serde_json::from_str(body).unwrap_or(Value::String(body.to_string())),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_post_reaches_a_subscriber_and_nothing_else_gets_through() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dev_config(dir.path());
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}publish_endpoint: true\n")).unwrap();
    let dev = Dev::start(&config, &[]);
    let url = dev.field("publish_endpoint");
    assert!(url.ends_with("/_lambda-url/chat-dev-publish/"), "{url}");

    let mut sub = dev.connect("sub").await;
    sub.send(json!({"action": "subscribe", "channel": "orders"}))
        .await;
    sub.expect("subscribed", |v| v["type"] == "subscribed", T)
        .await;

    // Refused before anything is stored: unsigned, signed with the wrong secret, the internal
    // fan-out form (which would post any frame to any connection), a `from` user, a GET.
    let local = Some("local:local");
    let body = r#"{"channel":"orders","data":{"n":0}}"#;
    let (status, answer) = curl(&url, None, &["-d", body]);
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer["Message"].as_str().unwrap().contains("--aws-sigv4"),
        "{answer}"
    );
    let (status, answer) = curl(&url, Some("local:wrong"), &["-d", body]);
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer["Message"].as_str().unwrap().contains("signature"),
        "{answer}"
    );
    let fanout = json!({"fanout": {"channel": "orders", "frame": "{\"type\":\"forged\"}", "targets": dev.connection_ids().await}});
    let (status, answer) = curl(&url, local, &["-d", &fanout.to_string()]);
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"], "bad_request");
    assert!(
        answer["message"].as_str().unwrap().contains("`fanout`"),
        "{answer}"
    );
    let spoofed = r#"{"channel":"orders","data":{"n":0},"from":"alice"}"#;
    let (status, answer) = curl(&url, local, &["-d", spoofed]);
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("bad_request")),
        "{answer}"
    );
    let (status, answer) = curl(&url, local, &["-X", "GET"]);
    assert_eq!(status, 405, "{answer}");
    let (status, answer) = curl(&url, local, &["-d", "not json"]);
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("bad_json")),
        "{answer}"
    );
    // Data just over what a frame can carry (120 KiB as JSON) is a 413, as over a socket.
    let over = json!({"channel": "orders", "data": "x".repeat(120 * 1024)}).to_string();
    let (status, answer) = curl(&url, local, &["-d", &over]);
    assert_eq!(
        (status, answer["error"].as_str()),
        (413, Some("too_large")),
        "{answer}"
    );
    let (status, _) = curl(&url.replace("publish", "message"), local, &["-d", body]);
    assert_eq!(status, 404, "only the publish function has a URL");
    assert_eq!(
        sub.expect_or_none(|_| true, Duration::from_millis(500))
            .await,
        None,
        "a refused request sent nothing"
    );

    // Signed: stored under the channel's first serial, delivered, and once only with an id.
    let body = r#"{"channel":"orders","data":{"n":1},"id":"order-1"}"#;
    let (status, answer) = curl(&url, local, &["-d", body]);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["serial"], 1, "{answer}");
    assert_eq!(answer["delivered"], 1, "{answer}");
    assert_eq!(answer["duplicate"], false, "{answer}");
    let got = sub
        .expect("the message", |v| v["type"] == "message", T)
        .await;
    assert_eq!(got["data"], json!({"n": 1}));
    assert_eq!(got["channel"], "orders");
    assert_eq!(got["from"], "server");
    let (status, answer) = curl(&url, local, &["-d", body]);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["serial"].as_u64(), answer["duplicate"].as_bool()),
        (Some(1), Some(true))
    );
    assert_eq!(
        sub.expect_or_none(|v| v["type"] == "message", Duration::from_millis(500))
            .await,
        None,
        "a retried id is not delivered twice"
    );

    // `wsctl status` against the local stack shows where the endpoint is served.
    let (code, out, err) = wsctl(&dev, &config, &["status", "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["publish_endpoint"], json!(url));
}
