//! Throttles and quotas as AWS answers them: a throttled read is waited out, a quota is named
//! at once, and a limit wsctl can know is refused before the first change.

use std::sync::Arc;

use wsctl_tests::aws::apigw::ThrottledReads;
use wsctl_tests::aws::dynamodb::TableQuota;
use wsctl_tests::aws::lambda::AccountConcurrency;
use wsctl_tests::proxy::{Behaviour, Proxy};
use wsctl_tests::*;

fn with_first(first: Box<dyn Behaviour>) -> Vec<Box<dyn Behaviour>> {
    let mut all = vec![first];
    all.extend(wsctl_tests::aws::behaviours());
    all
}

/// Every command that reads the API waits out API Gateway's 429s, the authorizer list
/// included (it is read without the SDK's retries, so that an emulator lacking it is not
/// retried into a long back-off).
#[test]
fn throttled_control_plane_reads_are_waited_out_by_every_command() {
    build_fixture();
    let moto = Moto::start();
    let throttle = Arc::new(ThrottledReads::default());
    let proxy = Proxy::with(&moto.url(), with_first(Box::new(throttle.clone())));
    let project = Project::new();
    for args in [
        &["deploy", "--no-build", "--no-progress"][..],
        &["plan", "--no-build"],
        &["status"],
        &["destroy", "--yes"],
    ] {
        let out = project.wsctl(&proxy.url(), args);
        assert!(out.status.success(), "{args:?}:\n{}", text(&out));
    }
    assert!(
        throttle.refused() > 5,
        "only {} reads throttled",
        throttle.refused()
    );
    let authorizers = proxy
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("/authorizers"))
        .count();
    assert!(
        authorizers >= 2,
        "the authorizer list was never throttled and read again ({authorizers} reads)"
    );
}

/// A DynamoDB quota (`LimitExceededException`) is not a throttle: it is reported once, naming
/// the quota and where to raise it, not retried eight times into "still throttled".
#[test]
fn a_table_quota_is_named_at_once_and_not_retried() {
    build_fixture();
    let moto = Moto::start();
    let proxy = Proxy::with(&moto.url(), with_first(Box::new(TableQuota)));
    let project = Project::new();
    let out = project.wsctl(&proxy.url(), &["deploy", "--no-build", "--no-progress"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("account quota is reached") && err.contains("Service Quotas"),
        "{err}"
    );
    assert!(!err.contains("throttled"), "{err}");
    let mut creates: Vec<String> = proxy
        .requests()
        .iter()
        .filter(|r| r.call.operation == "CreateTable")
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["TableName"].to_string()
        })
        .collect();
    assert!(!creates.is_empty());
    let all = creates.len();
    creates.sort();
    creates.dedup();
    assert_eq!(
        all,
        creates.len(),
        "a CreateTable was sent again: {creates:?}"
    );
}

/// A reservation that would leave the account less unreserved concurrency than Lambda's
/// minimum is refused before any change, with the numbers; one that fits is made.
#[test]
fn a_reservation_the_account_cannot_hold_is_refused_before_any_change() {
    build_fixture();
    let moto = Moto::start();
    let project = Project::new();
    let reserve = |n: u32| {
        let config = project.read_config();
        let config = match config.find("    reserved_concurrency:") {
            Some(at) => {
                let end = at + config[at..].find('\n').unwrap();
                format!(
                    "{}    reserved_concurrency: {n}{}",
                    &config[..at],
                    &config[end..]
                )
            }
            None => config.replacen(
                "    timeout: 30\n",
                &format!("    timeout: 30\n    reserved_concurrency: {n}\n"),
                1,
            ),
        };
        project.write_config(&config);
    };

    // A new account's small limit: nothing can be reserved from 150 while 100 stay free.
    let small = Proxy::with(
        &moto.url(),
        with_first(Box::new(AccountConcurrency::with_limit(150))),
    );
    reserve(100);
    let out = project.wsctl(&small.url(), &["deploy", "--no-build", "--no-progress"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "fixture-test-publish +100",
        "150",
        "at least 100",
        "at most 50 more",
    ] {
        assert!(err.contains(needle), "{needle:?} missing: {err}");
    }
    assert_eq!(small.mutations(), vec![], "something was changed");

    let proxy = Proxy::start(&moto.url());
    let out = project.wsctl(&proxy.url(), &["deploy", "--no-build", "--no-progress"]);
    assert!(out.status.success(), "{}", text(&out));
    reserve(950);
    proxy.clear();
    let out = project.wsctl(&proxy.url(), &["deploy", "--no-build", "--no-progress"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("+850") && err.contains("900 unreserved") && err.contains("at most 800 more"),
        "{err}"
    );
    assert_eq!(proxy.mutations(), vec![], "something was changed");
}

/// Lambda keeps a function's resource-based policy under 20 KB, one statement per route it
/// serves (played by [`wsctl_tests::aws::lambda::PolicyLimit`]). The most routes the config
/// accepts on one function deploy; one more is refused at load, before any call.
#[test]
fn the_most_routes_the_config_accepts_on_one_function_fit_its_policy() {
    build_fixture();
    let moto = Moto::start();
    let limit = wsctl_tests::aws::lambda::PolicyLimit::default();
    let proxy = Proxy::with(&moto.url(), with_first(Box::new(limit.clone())));
    let project = Project::new();
    let base = project.read_config();
    let with_routes = |n: usize| {
        let extra: String = (0..n)
            .map(|i| format!("  action-number-{i:03}: message\n"))
            .collect();
        project.write_config(&base.replacen("routes:\n", &format!("routes:\n{extra}"), 1));
    };
    let accepted = |n: usize| {
        with_routes(n);
        let out = project.wsctl(&proxy.url(), &["plan", "--no-build"]);
        match out.status.code() {
            Some(0) => true,
            Some(2) => {
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(err.contains("20480"), "{err}");
                false
            }
            _ => panic!("{}", text(&out)),
        }
    };
    // The largest accepted count, between 10 (accepted) and 80 (refused).
    let (mut ok, mut refused) = (10, 80);
    assert!(accepted(ok) && !accepted(refused));
    while refused - ok > 1 {
        let mid = (ok + refused) / 2;
        if accepted(mid) {
            ok = mid;
        } else {
            refused = mid;
        }
    }
    proxy.clear();
    with_routes(refused);
    let out = project.wsctl(&proxy.url(), &["deploy", "--no-build", "--no-progress"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(proxy.calls().is_empty(), "a refused config reached AWS");

    with_routes(ok);
    let out = project.wsctl(&proxy.url(), &["deploy", "--no-build", "--no-progress"]);
    assert!(out.status.success(), "{ok} routes:\n{}", text(&out));
    assert_eq!(
        limit.refused(),
        0,
        "Lambda refused a permission of {ok} routes"
    );
}

/// Two changes of one thing at once are refused by IAM (`ConcurrentModification`) and SSM
/// (`TooManyUpdates`) until the other is done; the deploy sends them again.
#[test]
fn concurrent_modifications_of_iam_and_ssm_are_sent_again() {
    build_fixture();
    let moto = Moto::start();
    let conflicts = Arc::new(wsctl_tests::aws::ssm::ConcurrentUpdates::default());
    let proxy = Proxy::with(&moto.url(), with_first(Box::new(conflicts.clone())));
    let project = Project::new();
    let out = project.wsctl(&proxy.url(), &["deploy", "--no-build", "--no-progress"]);
    assert!(out.status.success(), "{}", text(&out));
    let mut refused = conflicts.refused();
    refused.sort();
    assert_eq!(refused, ["PutParameter", "PutRolePolicy"]);
}
