//! The stage's dashboard, alarms and alarm topic, deployed like the rest of the stack: created
//! and read back, untouched by a second deploy, changed in place, refused when a namesake is
//! not the stack's, and deleted with it. The proxy plays CloudWatch's checks of dashboards and
//! alarms, which moto lacks.

use serde_json::Value;
use wsctl_tests::proxy::Proxy;
use wsctl_tests::*;

const ALARMS: &str =
    "alarms: { emails: [oncall@example.com, second@example.com], failed_posts: 10 }\n";

fn deploy(project: &Project, endpoint: &str) -> std::process::Output {
    let out = project.wsctl(endpoint, &["deploy", "--no-build", "--no-progress"]);
    assert!(out.status.success(), "deploy failed:\n{}", text(&out));
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_and_alarms_are_deployed_read_back_changed_in_place_and_destroyed() {
    build_fixture();
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.url());
    let project = Project::new();
    project.write_config(&format!("{}{ALARMS}", project.read_config()));
    deploy(&project, &proxy.url());
    let sdk = sdk(&moto.url()).await;

    // The alarms: one per default threshold, each summing the stack's functions or tables,
    // telling the stack's topic, tagged with the stack.
    let alarms = inventory::alarms(&sdk).await;
    let names: Vec<&str> = alarms
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "fixture-test-failed-posts",
            "fixture-test-fanout-ms",
            "fixture-test-function-errors",
            "fixture-test-function-throttles",
            "fixture-test-integration-errors",
            "fixture-test-refused-handshakes",
            "fixture-test-table-throttles",
        ]
    );
    let errors = &alarms["fixture-test-function-errors"];
    let functions: Vec<&str> = errors["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["metric"] == "Errors")
        .map(|m| m["dimensions"][0].as_str().unwrap())
        .collect();
    assert_eq!(
        functions,
        [
            "FunctionName=fixture-test-authorizer",
            "FunctionName=fixture-test-connect",
            "FunctionName=fixture-test-disconnect",
            "FunctionName=fixture-test-message",
            "FunctionName=fixture-test-publish",
        ]
    );
    let expression = errors["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["return_data"] == true)
        .unwrap();
    assert_eq!(expression["expression"], "SUM(METRICS())");
    assert_eq!(errors["comparison"], "GreaterThanOrEqualToThreshold");
    assert_eq!(errors["missing"], "notBreaching");
    assert_eq!(errors["tags"]["wsctl:stack"], "fixture");
    let topic_arn = "arn:aws:sns:us-east-1:123456789012:fixture-test-alarms";
    assert_eq!(errors["actions"], serde_json::json!([topic_arn]));
    assert_eq!(errors["ok_actions"], serde_json::json!([topic_arn]));
    // The fan-out alarm watches the longest fan-out of the functions that post.
    let fanout = &alarms["fixture-test-fanout-ms"];
    assert_eq!(fanout["threshold"], 10000.0);
    let posting: Vec<&str> = fanout["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["dimensions"][0].as_str())
        .collect();
    assert_eq!(
        posting,
        [
            "Function=fixture-test-message",
            "Function=fixture-test-publish"
        ]
    );

    let topics = inventory::topics(&sdk).await;
    assert_eq!(
        topics[topic_arn]["subscriptions"],
        serde_json::json!(["email:oncall@example.com", "email:second@example.com"])
    );
    assert_eq!(topics[topic_arn]["tags"]["wsctl:stage"], "test");

    // The dashboard: the stack's mark first, the stage's API in its graphs, the alarms last.
    let state = inventory::snapshot(&moto.url()).await;
    let body = &state["dashboards"]["fixture-test"];
    let widgets = body["widgets"].as_array().expect("the stage's dashboard");
    assert!(
        widgets[0]["properties"]["markdown"]
            .as_str()
            .unwrap()
            .contains("wsctl stack `fixture` stage `test`")
    );
    // The API's id, which the snapshot names by position: the real one, not a stand-in.
    let connections = &widgets[1]["properties"]["metrics"][0];
    assert_eq!(connections[1], "ConnectCount");
    assert_eq!(connections[3], "<api-0>");
    assert_eq!(
        widgets.last().unwrap()["properties"]["alarms"]
            .as_array()
            .unwrap()
            .len(),
        7
    );

    // An alarm going off shows in `wsctl status`, with CloudWatch's reason; the rest are
    // counted by state.
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&sdk);
    cloudwatch
        .set_alarm_state()
        .alarm_name("fixture-test-function-errors")
        .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
        .state_reason("Threshold Crossed: 1 datapoint [3.0] was greater than or equal to the threshold (1.0).")
        .send()
        .await
        .unwrap();
    let out = project.wsctl(&proxy.url(), &["status", "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let status = stdout_json(&out);
    let states = status["alarms"].as_array().expect("alarm states");
    assert_eq!(states.len(), 7, "{status:#}");
    let firing: Vec<&Value> = states.iter().filter(|a| a["state"] == "ALARM").collect();
    assert_eq!(firing.len(), 1, "{status:#}");
    assert_eq!(firing[0]["name"], "fixture-test-function-errors");
    assert!(
        firing[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("Threshold Crossed")
    );
    let out = project.wsctl(&proxy.url(), &["status"]);
    let said = text(&out);
    assert!(said.contains("Alarms:           1 in alarm, "), "{said}");
    assert!(
        said.contains("! fixture-test-function-errors since "),
        "{said}"
    );

    // Deployed again unchanged: not one mutating call.
    proxy.clear();
    deploy(&project, &proxy.url());
    assert_eq!(proxy.mutations(), vec![], "the second deploy mutated");

    // A changed threshold and an address fewer: the alarm is put again in place, one address
    // is unsubscribed, nothing else moves.
    let edited = project.read_config().replacen(
        ALARMS,
        "alarms: { emails: [oncall@example.com], failed_posts: 25 }\n",
        1,
    );
    project.write_config(&edited);
    let out = project.wsctl(&proxy.url(), &["plan", "--no-build", "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let plan = stdout_json(&out);
    let changes: Vec<(String, String, String)> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().unwrap().to_string(),
                c["name"].as_str().unwrap().to_string(),
                c["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            (
                "topic".to_string(),
                "fixture-test-alarms".to_string(),
                "update".to_string()
            ),
            (
                "alarm".to_string(),
                "fixture-test-failed-posts".to_string(),
                "update".to_string()
            ),
        ],
        "{plan:#}"
    );
    proxy.clear();
    deploy(&project, &proxy.url());
    let mutations: Vec<String> = proxy.mutations().into_iter().map(|c| c.operation).collect();
    assert_eq!(mutations, ["Unsubscribe", "PutMetricAlarm"]);
    let alarms = inventory::alarms(&sdk).await;
    assert_eq!(alarms["fixture-test-failed-posts"]["threshold"], 25.0);
    assert_eq!(
        inventory::topics(&sdk).await[topic_arn]["subscriptions"],
        serde_json::json!(["email:oncall@example.com"])
    );

    // Alarms turned off and the dashboard with them: all three kinds go, the rest stays.
    let edited = project.read_config().replacen(
        "alarms: { emails: [oncall@example.com], failed_posts: 25 }\n",
        "dashboard: false\n",
        1,
    );
    project.write_config(&edited);
    deploy(&project, &proxy.url());
    let state = inventory::snapshot(&moto.url()).await;
    assert_eq!(state["alarms"], serde_json::json!({}));
    assert_eq!(state["dashboards"], serde_json::json!({}));
    assert_eq!(state["topics"], serde_json::json!({}));
    assert_ne!(state["functions"], serde_json::json!({}));

    // And back, then destroyed with the stack.
    project.write_config(&format!(
        "{}{ALARMS}",
        project.read_config().replacen("dashboard: false\n", "", 1)
    ));
    deploy(&project, &proxy.url());
    let out = project.wsctl(&proxy.url(), &["destroy", "--yes", "--no-progress"]);
    assert!(out.status.success(), "{}", text(&out));
    let state = inventory::snapshot(&moto.url()).await;
    for kind in ["alarms", "dashboards", "topics"] {
        assert_eq!(state[kind], serde_json::json!({}), "{kind} left: {state:#}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dashboard_of_the_stacks_name_that_is_not_its_own_is_never_overwritten() {
    build_fixture();
    let moto = Moto::start();
    let project = Project::new();
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&sdk(&moto.url()).await);
    let theirs = r#"{"widgets":[{"type":"text","width":24,"height":2,"properties":{"markdown":"the team's own"}}]}"#;
    cloudwatch
        .put_dashboard()
        .dashboard_name("fixture-test")
        .dashboard_body(theirs)
        .send()
        .await
        .unwrap();

    let out = project.wsctl(&moto.url(), &["deploy", "--no-build", "--no-progress"]);
    assert!(!out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("dashboard fixture-test"),
        "the namesake is named: {said}"
    );
    let body = cloudwatch
        .get_dashboard()
        .dashboard_name("fixture-test")
        .send()
        .await
        .unwrap()
        .dashboard_body
        .unwrap();
    assert_eq!(body, theirs, "their dashboard is as it was");
    let state = inventory::snapshot(&moto.url()).await;
    assert_eq!(
        state["functions"],
        serde_json::json!({}),
        "nothing was created"
    );
}

#[test]
fn a_body_cloudwatch_would_refuse_is_refused_by_the_proxy_as_cloudwatch_does() {
    // The proxy's own check, against the request shape the SDK sends (CBOR): an alarm of
    // eleven metrics and a metric widget without a region are refused, by name.
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.url());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let cloudwatch = aws_sdk_cloudwatch::Client::new(&sdk(&proxy.url()).await);
        let bad = r#"{"widgets":[{"type":"metric","width":12,"height":6,"properties":{"metrics":[["AWS/Lambda","Errors","FunctionName"]]}}]}"#;
        let err = cloudwatch
            .put_dashboard()
            .dashboard_name("x")
            .dashboard_body(bad)
            .send()
            .await
            .unwrap_err();
        let err = aws_sdk_cloudwatch::error::DisplayErrorContext(&err).to_string();
        assert!(err.contains("InvalidParameterInput"), "{err}");
        use aws_sdk_cloudwatch::types::{Metric, MetricDataQuery, MetricStat};
        let mut queries: Vec<MetricDataQuery> = (0..11)
            .map(|i| {
                MetricDataQuery::builder()
                    .id(format!("m{i}"))
                    .return_data(false)
                    .metric_stat(
                        MetricStat::builder()
                            .metric(
                                Metric::builder()
                                    .namespace("AWS/Lambda")
                                    .metric_name("Errors")
                                    .build(),
                            )
                            .period(300)
                            .stat("Sum")
                            .build(),
                    )
                    .build()
            })
            .collect();
        queries.push(
            MetricDataQuery::builder()
                .id("total")
                .expression("SUM(METRICS())")
                .return_data(true)
                .build(),
        );
        let err = cloudwatch
            .put_metric_alarm()
            .alarm_name("x")
            .set_metrics(Some(queries))
            .evaluation_periods(1)
            .threshold(1.0)
            .comparison_operator(
                aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanOrEqualToThreshold,
            )
            .send()
            .await
            .unwrap_err();
        let err = aws_sdk_cloudwatch::error::DisplayErrorContext(&err).to_string();
        assert!(err.contains("at most 10"), "{err}");
    });
}
