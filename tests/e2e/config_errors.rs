//! Bad config and missing credentials: the user-error exit code, a message naming the
//! field or the fix, and not a single AWS call.

use wsctl_tests::proxy::Proxy;
use wsctl_tests::*;

fn refused(edit: impl Fn(&str) -> String, field: &str, hint: &str) {
    refused_in(Project::new(), edit, field, hint)
}

fn refused_in(project: Project, edit: impl Fn(&str) -> String, field: &str, hint: &str) {
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.url());
    let edited = edit(&project.read_config());
    assert_ne!(
        edited,
        project.read_config(),
        "the edit for {field} changed nothing"
    );
    project.write_config(&edited);
    for command in [
        &["plan", "--no-build"][..],
        &["deploy", "--no-build"],
        &["status"],
        &["destroy", "--yes"],
    ] {
        let out = project.wsctl(&proxy.url(), command);
        assert_eq!(out.status.code(), Some(2), "{command:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("wsctl.yaml"), "names the file: {err}");
        assert!(err.contains(field), "names `{field}`: {err}");
        assert!(err.contains(hint), "says what is allowed (`{hint}`): {err}");
    }
    assert_eq!(proxy.calls(), vec![], "a bad config must not reach AWS");
}

#[test]
fn unknown_key() {
    refused(
        |c| c.replacen("    memory: 256\n", "    memory: 256\n    memroy: 512\n", 1),
        "memroy",
        "memory",
    );
}

#[test]
fn wrong_type() {
    refused(
        |c| c.replacen("timeout: 30", "timeout: thirty", 1),
        "thirty",
        "timeout",
    );
}

#[test]
fn invalid_route_key() {
    refused(
        |c| c.replacen("  subscribe: message\n", "  $subscribe: message\n", 1),
        "routes.$subscribe",
        "$connect, $disconnect and $default",
    );
}

#[test]
fn memory_out_of_range() {
    refused(
        |c| c.replacen("memory: 256", "memory: 20000", 1),
        "functions.message.memory",
        "128 to 10240",
    );
}

#[test]
fn route_to_an_undeclared_function() {
    refused(
        |c| c.replacen("  subscribe: message\n", "  subscribe: messages\n", 1),
        "routes.subscribe",
        "declared: authorizer, connect",
    );
}

#[test]
fn missing_credentials_are_one_sentence_and_the_fix() {
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.url());
    let project = Project::new();
    let mut cmd = project.command(&proxy.url(), &["status"]);
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no AWS credentials were found"), "{err}");
    assert!(
        err.contains("aws configure") && err.contains("AWS_ACCESS_KEY_ID"),
        "{err}"
    );
    assert!(err.lines().count() <= 3, "no raw SDK dump: {err}");
    assert_eq!(proxy.calls(), vec![]);
}

#[test]
fn missing_region_names_the_three_ways_to_set_it() {
    let project = Project::new();
    project.write_config(&project.read_config().replace("region: us-east-1\n", ""));
    let out = project.wsctl("http://127.0.0.1:9", &["status"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no AWS region") && err.contains("--region") && err.contains("AWS_REGION"),
        "{err}"
    );
}

#[test]
fn init_writes_a_config_that_loads_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wsctl.yaml");
    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new(wsctl_bin());
        cmd.arg("--config").arg(&path).args(args);
        cmd.output().unwrap()
    };
    assert!(run(&["init"]).status.success());
    let text_written = std::fs::read_to_string(&path).unwrap();
    assert!(text_written.contains("stack: chat") && text_written.contains("$connect: connect"));
    // The schema its first line names is beside it, the same `wsctl schema` prints.
    assert!(text_written.starts_with("# yaml-language-server: $schema=wsctl.schema.json\n"));
    let schema = std::fs::read_to_string(dir.path().join("wsctl.schema.json")).unwrap();
    let printed = run(&["schema"]);
    assert!(printed.status.success(), "{}", text(&printed));
    assert_eq!(schema, String::from_utf8_lossy(&printed.stdout));
    assert!(schema.contains(r#""additionalProperties": false"#));
    let again = run(&["init"]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert!(run(&["init", "--force"]).status.success());
}

#[test]
fn a_variable_lambda_reserves() {
    refused(
        |c| {
            c.replacen(
                r#"FANOUT_PAGE: "500" }"#,
                r#"FANOUT_PAGE: "500", LAMBDA_TASK_ROOT: /opt }"#,
                1,
            )
        },
        "functions.publish.environment.LAMBDA_TASK_ROOT",
        "Lambda sets it",
    );
}

#[test]
fn a_tag_character_dynamodb_refuses() {
    refused(
        |c| c.replacen("tags: { team: realtime }", "tags: { team: 'real#time' }", 1),
        "tags.team",
        "DynamoDB's rule",
    );
    // API Gateway and Lambda take `@`; the tables of the stack would not.
    refused(
        |c| {
            c.replacen(
                "tags: { team: realtime }",
                "tags: { owner: 'ana@example.com' }",
                1,
            )
        },
        "tags.owner",
        "DynamoDB's rule",
    );
}

#[test]
fn an_index_name_dynamodb_refuses() {
    refused(
        |c| c.replacen("by-connection:", "bc:", 1),
        "tables.subscriptions.indexes.bc",
        "3-255",
    );
}

/// The bundled functions read the connections table by `pk`: a stack that renames it would
/// deploy, then fail every `$connect` with DynamoDB's `ValidationException` ("The provided key
/// element does not match the schema", GetItem/PutItem API reference).
#[test]
fn a_renamed_key_of_a_table_the_bundled_functions_use() {
    let project = Project::new();
    dev::dev_config(project.dir.path());
    refused_in(
        project,
        |c| c.replacen("    partition_key: pk\n", "    partition_key: id\n", 1),
        "tables.connections.partition_key",
        r#"the bundled functions need "pk" (S); write `partition_key: pk`"#,
    );
}
