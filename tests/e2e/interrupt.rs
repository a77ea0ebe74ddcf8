//! A deploy killed after its k-th mutating call, for every k, is finished by a plain re-run:
//! same resources as an uninterrupted deploy, nothing extra.

use std::time::{Duration, Instant};

use wsctl_tests::proxy::Proxy;
use wsctl_tests::*;

#[test]
fn a_deploy_killed_at_any_mutation_converges_on_rerun() {
    build_fixture();
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.url());
    let project = Project::new();
    // A function serving three routes (its permissions meet Lambda's 409s), a table with
    // deletion protection, alarms telling a topic the stack makes, the publish endpoint and the
    // stack's event bus.
    let history = "  history: { partition_key: channel, sort_key: \"serial:N\"";
    project.write_config(
        &(project
            .read_config()
            .replacen(
                "  subscribe: message\n",
                "  subscribe: message\n  unsubscribe: message\n",
                1,
            )
            .replacen(history, &format!("{history}, deletion_protection: true"), 1)
            .replacen("  publish:\n", "  publish:\n    handler: publish\n", 1)
            + "publish_endpoint: true\n"
            + "events: { connections: true }\n"
            // One alarm of each kind of metric math is enough: every alarm is one call.
            + "alarms: { emails: [oncall@example.com], function_throttles: null, integration_errors: null, table_throttles: null, failed_posts: null, refused_handshakes: null, fanout_ms: null }\n"),
    );
    assert!(project.read_config().contains("deletion_protection: true"));
    let rt = tokio::runtime::Runtime::new().unwrap();

    let out = project.wsctl(&proxy.url(), &["deploy", "--no-build", "--no-progress"]);
    assert!(out.status.success(), "{}", text(&out));
    let total = proxy.mutations().len();
    let reference = rt.block_on(inventory::snapshot(&moto.url()));

    for k in 1..total {
        moto.reset();
        proxy.reset_behaviours();
        proxy.freeze_after(k);
        let mut child = project
            .command(&proxy.url(), &["deploy", "--no-build", "--no-progress"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while !proxy.frozen() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("k={k}: deploy ended ({status}) before its {k}th mutation");
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "k={k}: never reached mutation {k}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(
            proxy.mutations().len(),
            k,
            "k={k}: the proxy let through more than k mutations"
        );

        proxy.clear();
        let rerun = project.wsctl(&proxy.url(), &["deploy", "--no-build", "--no-progress"]);
        assert!(
            rerun.status.success(),
            "k={k}: re-run failed:\n{}",
            text(&rerun)
        );
        let state = rt.block_on(inventory::snapshot(&moto.url()));
        assert_eq!(
            state, reference,
            "k={k}: interrupted-then-resumed deploy differs from an uninterrupted one"
        );
        let again = project.wsctl(&proxy.url(), &["plan", "--no-build", "--output", "json"]);
        assert_eq!(
            stdout_json(&again)["changes"],
            serde_json::json!([]),
            "k={k}: {}",
            text(&again)
        );
    }
}
