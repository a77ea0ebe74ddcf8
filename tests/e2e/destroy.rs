//! Destroy removes the stack and only the stack.

use wsctl_tests::*;

#[test]
fn destroy_removes_the_stack_and_nothing_else() {
    build_fixture();
    let moto = Moto::start();
    let ours = Project::new();
    let theirs = Project::new();
    theirs.write_config(&theirs.read_config().replace("stage: test", "stage: prod"));
    for p in [&ours, &theirs] {
        let out = p.wsctl(&moto.url(), &["deploy", "--no-build", "--no-progress"]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Untagged resources whose names look like the stack's.
    rt.block_on(async {
        let sdk = sdk(&moto.url()).await;
        let iam = aws_sdk_iam::Client::new(&sdk);
        let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
        iam.create_role().role_name("fixture-test-extra").path("/wsctl/fixture/test/").assume_role_policy_document(trust).send().await.unwrap();
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        use aws_sdk_dynamodb::types::*;
        dynamodb
            .create_table()
            .table_name("fixture-test-backup")
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(KeySchemaElement::builder().attribute_name("pk").key_type(KeyType::Hash).build().unwrap())
            .attribute_definitions(AttributeDefinition::builder().attribute_name("pk").attribute_type(ScalarAttributeType::S).build().unwrap())
            .send()
            .await
            .unwrap();
        let apigw = aws_sdk_apigatewayv2::Client::new(&sdk);
        apigw
            .create_api()
            .name("fixture-test")
            .protocol_type(aws_sdk_apigatewayv2::types::ProtocolType::Websocket)
            .route_selection_expression("$request.body.action")
            .send()
            .await
            .unwrap();
        let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk);
        logs.create_log_group().log_group_name("/aws/lambda/fixture-test-extra").send().await.unwrap();
    });
    let before = rt.block_on(inventory::snapshot(&moto.url()));

    let refused = ours.wsctl(&moto.url(), &["destroy"]);
    assert_eq!(
        refused.status.code(),
        Some(2),
        "no confirmation without a terminal: {}",
        text(&refused)
    );

    let out = ours.wsctl(&moto.url(), &["destroy", "--yes", "--no-progress"]);
    assert!(out.status.success(), "{}", text(&out));
    let after = rt.block_on(inventory::snapshot(&moto.url()));

    // Nothing tagged fixture/test is left, anywhere.
    let tagged_ours = |v: &serde_json::Value| {
        let t = &v["tags"];
        t["wsctl:stack"] == "fixture" && t["wsctl:stage"] == "test"
    };
    for kind in [
        "roles",
        "managed_policies",
        "functions",
        "tables",
        "log_groups",
        "parameters",
    ] {
        for (name, v) in after[kind].as_object().unwrap() {
            assert!(!tagged_ours(v), "{kind} {name} survived destroy");
            assert!(before[kind].get(name).is_some());
        }
    }
    assert!(
        after["apis"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| !tagged_ours(a))
    );
    // Everything else is exactly as it was.
    let mut expected = before.clone();
    for kind in [
        "roles",
        "managed_policies",
        "functions",
        "tables",
        "log_groups",
        "parameters",
    ] {
        expected[kind]
            .as_object_mut()
            .unwrap()
            .retain(|_, v| !tagged_ours(v));
    }
    expected["apis"]
        .as_array_mut()
        .unwrap()
        .retain(|a| !tagged_ours(a));
    // A dashboard cannot be tagged: the stack's is the one that carries its mark.
    let marked_ours = |v: &serde_json::Value| {
        v["widgets"][0]["properties"]["markdown"]
            .as_str()
            .is_some_and(|m| m.contains("wsctl stack `fixture` stage `test`"))
    };
    assert!(before["dashboards"]["fixture-test"].is_object());
    expected["dashboards"]
        .as_object_mut()
        .unwrap()
        .retain(|_, v| !marked_ours(v));
    let normalise = |mut v: serde_json::Value| {
        // API placeholders are numbered by position, which the deletion shifts.
        let s = v.to_string();
        let s = regex_lite_replace(&s);
        v = serde_json::from_str(&s).unwrap();
        v
    };
    assert_eq!(normalise(after.clone()), normalise(expected));
    assert!(after["roles"].get("fixture-test-extra").is_some());
    assert!(after["tables"].get("fixture-test-backup").is_some());
    assert!(
        after["log_groups"]
            .get("/aws/lambda/fixture-test-extra")
            .is_some()
    );
    assert!(after["roles"].get("fixture-prod-message").is_some());
    assert!(after["dashboards"].get("fixture-prod").is_some());
    assert!(after["dashboards"].get("fixture-test").is_none());
    assert_eq!(
        after["apis"].as_array().unwrap().len(),
        2,
        "the other stage's API and the untagged namesake stay"
    );

    // Idempotent: a second destroy finds nothing and succeeds.
    let again = ours.wsctl(&moto.url(), &["destroy", "--yes"]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(String::from_utf8_lossy(&again.stdout).contains("Nothing to destroy"));
    // And the other stage still deploys with no change.
    let out = theirs.wsctl(&moto.url(), &["plan", "--no-build", "--output", "json"]);
    assert_eq!(
        stdout_json(&out)["changes"],
        serde_json::json!([]),
        "{}",
        text(&out)
    );
}

/// `<api-N>` → `<api>`.
fn regex_lite_replace(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("<api-") {
        out.push_str(&rest[..i]);
        out.push_str("<api>");
        let tail = &rest[i + 5..];
        let end = tail.find('>').map(|e| e + 1).unwrap_or(0);
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}
