//! Lambda's asynchronous side as AWS has it and moto does not: a role IAM created moments ago
//! is refused until it propagates, and a function idle long enough is `Inactive`. Both through
//! the proxy's behaviours (`wsctl_tests::aws`).

use std::process::Stdio;
use std::time::{Duration, Instant};

use wsctl_tests::aws::{behaviours, lambda::Idle};
use wsctl_tests::proxy::Proxy;
use wsctl_tests::*;

fn deploy(project: &Project, endpoint: &str) {
    let out = project.wsctl(endpoint, &["deploy", "--no-build", "--no-progress"]);
    assert!(out.status.success(), "deploy failed:\n{}", text(&out));
}

/// Runs a deploy, killed if it outlives `guard` (far longer than it needs; a guard against a
/// wait that never ends, not a measure of speed).
fn deploy_within(project: &Project, endpoint: &str, guard: Duration) -> std::process::Output {
    let mut child = project
        .command(endpoint, &["deploy", "--no-build", "--no-progress"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > guard {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// The function's role was swapped outside wsctl and its own role deleted: the deploy creates
/// the role again and points the function back at it, and Lambda refuses the new role until
/// IAM has propagated it, for UpdateFunctionConfiguration as for CreateFunction.
#[test]
fn a_function_updated_to_a_role_just_created_waits_for_the_role() {
    build_fixture();
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.url());
    let project = Project::new();
    deploy(&project, &proxy.url());
    // Each function was refused once while its new role propagated, and created on a retry.
    let creates = |p: &Proxy| {
        p.calls()
            .iter()
            .filter(|c| c.operation == "POST /2015-03-31/functions")
            .count()
    };
    assert!(creates(&proxy) > 5, "{:?}", proxy.mutations());

    let role = "fixture-test-connect";
    let rt = tokio::runtime::Runtime::new().unwrap();
    let wsctl_role = rt.block_on(async {
        let sdk = sdk(&moto.url()).await;
        let iam = aws_sdk_iam::Client::new(&sdk);
        let lambda = aws_sdk_lambda::Client::new(&sdk);
        let other = iam
            .create_role()
            .role_name("someone-elses")
            .assume_role_policy_document(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
            )
            .send()
            .await
            .unwrap()
            .role
            .unwrap()
            .arn;
        let before = lambda
            .get_function_configuration()
            .function_name(role)
            .send()
            .await
            .unwrap()
            .role
            .unwrap();
        lambda
            .update_function_configuration()
            .function_name(role)
            .role(&other)
            .send()
            .await
            .unwrap();
        for policy in iam
            .list_role_policies()
            .role_name(role)
            .send()
            .await
            .unwrap()
            .policy_names
        {
            iam.delete_role_policy()
                .role_name(role)
                .policy_name(policy)
                .send()
                .await
                .unwrap();
        }
        iam.delete_role().role_name(role).send().await.unwrap();
        before
    });

    proxy.clear();
    let out = deploy_within(&project, &proxy.url(), Duration::from_secs(120));
    assert!(out.status.success(), "{}", text(&out));
    let updates = proxy
        .calls()
        .iter()
        .filter(|c| c.operation == format!("PUT /2015-03-31/functions/{role}/configuration"))
        .count();
    assert!(
        updates >= 2,
        "UpdateFunctionConfiguration was not refused and retried: {:?}",
        proxy.mutations()
    );
    let now = rt.block_on(async {
        aws_sdk_lambda::Client::new(&sdk(&moto.url()).await)
            .get_function_configuration()
            .function_name(role)
            .send()
            .await
            .unwrap()
            .role
            .unwrap()
    });
    assert_eq!(now, wsctl_role);
}

/// An idle function (`Inactive`, StateReasonCode `Idle`) takes the update and the deploy ends
/// once the update has: its state is Lambda's to restore on the next invocation.
#[test]
fn a_deploy_updating_an_idle_function_finishes_promptly() {
    build_fixture();
    let moto = Moto::start();
    let idle = Idle::default();
    let mut played = behaviours();
    played.push(Box::new(idle.clone()));
    let proxy = Proxy::with(&moto.url(), played);
    let project = Project::new();
    deploy(&project, &proxy.url());

    idle.mark("fixture-test-message");
    let config = project.read_config();
    project.write_config(&config.replacen("    memory: 256\n", "    memory: 512\n", 1));
    // wsctl polls twice a second; an unhandled Inactive would poll until its 300 s timeout.
    let out = deploy_within(&project, &proxy.url(), Duration::from_secs(90));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        idle.polls() < 20,
        "{} state reads of an idle function",
        idle.polls()
    );
    let memory = tokio::runtime::Runtime::new().unwrap().block_on(async {
        aws_sdk_lambda::Client::new(&sdk(&moto.url()).await)
            .get_function_configuration()
            .function_name("fixture-test-message")
            .send()
            .await
            .unwrap()
            .memory_size
    });
    assert_eq!(memory, Some(512));
}
