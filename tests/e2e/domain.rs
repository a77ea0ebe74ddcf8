//! A custom domain: the regional DomainName and the API mapping of the stage, the URLs that go
//! with it and the DNS record it needs; changed in place, removed with the config entry.

use wsctl_tests::proxy::Proxy;
use wsctl_tests::*;

const CERT: &str = "arn:aws:acm:us-east-1:123456789012:certificate/0b1c2d3e";

fn with_domain(project: &Project, extra: &str) {
    let base = fixture_config();
    project.write_config(&format!(
        "{base}\ndomain: {{ name: ws.example.com, certificate_arn: '{CERT}'{extra} }}\n"
    ));
}

/// With `--yes`: some steps below end a URL on the domain, which deploy otherwise asks about.
fn deploy(project: &Project, endpoint: &str) -> std::process::Output {
    let out = project.wsctl(
        endpoint,
        &["deploy", "--yes", "--no-build", "--no-progress"],
    );
    assert!(out.status.success(), "{}", text(&out));
    out
}

/// (certificate, stack tag, [(api id, stage, key)]) of `ws.example.com`, read through the SDK.
async fn read_back(endpoint: &str) -> Option<(String, String, Vec<(String, String, String)>)> {
    let apigw = aws_sdk_apigatewayv2::Client::new(&sdk(endpoint).await);
    let domains = apigw.get_domain_names().send().await.unwrap();
    let domain = domains
        .items
        .unwrap_or_default()
        .into_iter()
        .find(|d| d.domain_name.as_deref() == Some("ws.example.com"))?;
    let cert = domain.domain_name_configurations.unwrap()[0]
        .certificate_arn
        .clone()
        .unwrap();
    let tag = domain.tags.unwrap_or_default()["wsctl:stack"].clone();
    let mappings = apigw
        .get_api_mappings()
        .domain_name("ws.example.com")
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            (
                m.api_id.unwrap(),
                m.stage.unwrap(),
                m.api_mapping_key.unwrap_or_default(),
            )
        })
        .collect();
    Some((cert, tag, mappings))
}

async fn api_id(endpoint: &str) -> String {
    let apigw = aws_sdk_apigatewayv2::Client::new(&sdk(endpoint).await);
    apigw.get_apis().send().await.unwrap().items.unwrap()[0]
        .api_id
        .clone()
        .unwrap()
}

#[test]
fn a_custom_domain_serves_the_stage_and_goes_with_its_config_entry() {
    build_fixture();
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.url());
    let project = Project::new();
    let rt = tokio::runtime::Runtime::new().unwrap();

    with_domain(&project, "");
    let out = deploy(&project, &proxy.url());
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    for line in [
        "Custom domain:    wss://ws.example.com/test",
        "@connections URL: https://ws.example.com/test/@connections (through the domain)",
        "DNS:              CNAME ws.example.com -> d-",
        "hosted zone Z1UJRXOUMOOFQ8",
    ] {
        assert!(stdout.contains(line), "missing {line:?}:\n{}", text(&out));
    }
    let api = rt.block_on(api_id(&moto.url()));
    let (cert, tag, mappings) = rt.block_on(read_back(&moto.url())).expect("domain created");
    assert_eq!(cert, CERT);
    assert_eq!(tag, "fixture");
    assert_eq!(
        mappings,
        vec![(api.clone(), "test".to_string(), "test".to_string())],
        "the stage is mapped under its own name by default"
    );

    let status = project.wsctl(&proxy.url(), &["status", "--output", "json"]);
    let status = stdout_json(&status);
    assert_eq!(status["domain"]["url"], "wss://ws.example.com/test");
    assert_eq!(
        status["domain"]["connections_url"],
        "https://ws.example.com/test/@connections"
    );
    assert_eq!(status["domain"]["status"], "AVAILABLE");
    assert_eq!(status["in_sync"], true, "{status}");

    proxy.clear();
    deploy(&project, &proxy.url());
    assert_eq!(
        proxy.mutations(),
        vec![],
        "a second deploy changed something"
    );

    // The root of the domain: a new mapping (its key is its address) before the old one goes,
    // so the domain never stops serving the stage; the domain itself is kept.
    with_domain(&project, ", path: ''");
    let plan = project.wsctl(&proxy.url(), &["plan", "--no-build"]);
    let plan_text = String::from_utf8_lossy(&plan.stdout).to_string();
    assert!(
        plan_text.contains("  + api mapping ws.example.com/\n")
            && plan_text.contains("api mapping ws.example.com/test (!)")
            && plan_text.contains("the stage's URL on the custom domain stops working"),
        "{}",
        text(&plan)
    );
    proxy.clear();
    let out = deploy(&project, &proxy.url());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Custom domain:    wss://ws.example.com\n"),
        "{}",
        text(&out)
    );
    let ops: Vec<String> = proxy.mutations().into_iter().map(|c| c.operation).collect();
    assert!(
        ops.len() == 2 && ops[0].starts_with("POST ") && ops[1].starts_with("DELETE "),
        "the new mapping first, then the old one goes; the domain is kept: {ops:?}"
    );
    let (_, _, mappings) = rt.block_on(read_back(&moto.url())).unwrap();
    assert_eq!(mappings, vec![(api.clone(), "test".into(), String::new())]);

    // Without the entry, the mapping and the domain go; the stage stays.
    project.write_config(&fixture_config());
    deploy(&project, &proxy.url());
    assert_eq!(rt.block_on(read_back(&moto.url())), None);
    assert_eq!(rt.block_on(api_id(&moto.url())), api);

    // And `destroy` takes a domain along.
    with_domain(&project, "");
    deploy(&project, &proxy.url());
    let out = project.wsctl(&proxy.url(), &["destroy", "--yes", "--no-progress"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(rt.block_on(read_back(&moto.url())), None);
}

#[test]
fn a_domain_the_stack_does_not_own_is_refused_before_any_change() {
    build_fixture();
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.url());
    let project = Project::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let apigw = aws_sdk_apigatewayv2::Client::new(&sdk(&moto.url()).await);
        apigw
            .create_domain_name()
            .domain_name("ws.example.com")
            .domain_name_configurations(
                aws_sdk_apigatewayv2::types::DomainNameConfiguration::builder()
                    .certificate_arn(CERT)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    });
    with_domain(&project, "");
    let out = project.wsctl(&proxy.url(), &["deploy", "--no-build", "--no-progress"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("domain ws.example.com"),
        "{}",
        text(&out)
    );
    assert_eq!(proxy.mutations(), vec![], "nothing may be created");
}
