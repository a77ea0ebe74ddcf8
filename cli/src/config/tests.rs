use super::access_logs::ACCESS_LOG_FORMAT;
use super::*;

pub(crate) const GOOD: &str = r#"
stack: chat
functions:
  connect: { crate: fn/connect, tables: { connections: read-write } }
  message: { crate: fn/message, memory: 256 }
routes:
  $connect: connect
  $default: message
  sendmessage: message
tables:
  connections: { partition_key: pk, sort_key: "serial:N" }
"#;

fn problems(text: &str) -> Vec<Problem> {
    match Config::parse(Path::new("wsctl.yaml"), text) {
        Err(ConfigError::Invalid { problems, .. }) => problems,
        other => panic!("expected validation problems, got {other:?}"),
    }
}

#[test]
fn good_config_gets_defaults() {
    let c = Config::parse(Path::new("wsctl.yaml"), GOOD).unwrap();
    assert_eq!(c.stage, "dev");
    assert_eq!(c.architecture, Arch::Arm64);
    assert_eq!(c.functions["connect"].memory, 128);
    assert_eq!(c.functions["message"].memory, 256);
    assert_eq!(c.route_selection_expression, DEFAULT_ROUTE_SELECTION);
    assert_eq!(c.tables["connections"].ttl_attribute, "ttl");
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let err = Config::parse(Path::new("wsctl.yaml"), &format!("{GOOD}colour: blue\n")).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("colour"), "{text}");
    assert!(text.contains("wsctl.yaml"), "{text}");
}

#[test]
fn wrong_type_is_a_parse_error() {
    let err = Config::parse(
        Path::new("w.yaml"),
        &GOOD.replace("memory: 256", "memory: lots"),
    )
    .unwrap_err();
    assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
    assert!(err.to_string().contains("lots"), "{err}");
}

#[test]
fn every_problem_is_reported_with_its_field() {
    let text = GOOD.replace("memory: 256", "memory: 64").replace(
        "sendmessage: message",
        "$sendmessage: message\n  ok: nowhere",
    );
    let p = problems(&text);
    let fields: Vec<&str> = p.iter().map(|p| p.field.as_str()).collect();
    assert!(fields.contains(&"functions.message.memory"), "{p:?}");
    assert!(fields.contains(&"routes.$sendmessage"), "{p:?}");
    assert!(fields.contains(&"routes.ok"), "{p:?}");
    assert_eq!(p.len(), 3, "{p:?}");
}

#[test]
fn key_types_and_references_are_checked() {
    let text = GOOD
        .replace("read-write", "read-write, history: read")
        .replace("serial:N", "serial:X");
    let p = problems(&text);
    assert!(
        p.iter()
            .any(|p| p.field == "functions.connect.tables.history"),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|p| p.field == "tables.connections.sort_key" && p.message.contains("S, N and B")),
        "{p:?}"
    );
}

#[test]
fn authorizer_needs_a_connect_route() {
    let text = GOOD.replace("  $connect: connect\n", "") + "authorizer: { function: connect }\n";
    let p = problems(&text);
    assert!(p.iter().any(|p| p.field == "authorizer"), "{p:?}");
}

#[test]
fn the_init_template_is_a_valid_config() {
    let c = Config::parse(
        Path::new("wsctl.yaml"),
        include_str!("../../../templates/wsctl.yaml"),
    )
    .unwrap();
    assert_eq!(c.functions.len(), 5);
    assert_eq!(c.authorizer.unwrap().function, "authorizer");
}

#[test]
fn the_template_with_every_commented_option_is_valid() {
    // Uncommenting the optional settings must give a config that loads as documented.
    let template = include_str!("../../../templates/wsctl.yaml");
    let text: String = template
        .lines()
        .map(|l| {
            let t = l.trim_start();
            let optional = [
                "# reserved_concurrency",
                "# audience",
                "# oidc",
                "#   issuer",
                "#   audience",
                "#   capabilities_claim",
                "#   default_capabilities",
                "# publish_endpoint",
                "# events",
                "#   connections",
                "#   presence",
                "#   messages",
            ];
            if optional.iter().any(|o| t.starts_with(o)) {
                l.replacen("# ", "", 1)
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let c = Config::parse(Path::new("wsctl.yaml"), &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let auth = c.authorizer.unwrap();
    let oidc = auth.oidc.expect("oidc");
    assert_eq!(
        (auth.audience.as_deref(), oidc.audience.as_str()),
        (Some("chat"), "chat-app")
    );
    assert_eq!(c.functions["publish"].reserved_concurrency, Some(100));
    assert!(c.publish_endpoint);
    let events = c.events.expect("events");
    assert_eq!(events.messages, ["orders-*"]);
    assert!(events.owns_bus());
}

#[test]
fn the_publish_endpoint_needs_the_bundled_publish_function() {
    let found = problems(&format!("{GOOD}publish_endpoint: true\n"));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].field, "publish_endpoint");
    assert!(found[0].message.contains("handler: publish"), "{found:?}");
}

#[test]
fn reserved_concurrency_is_at_least_one() {
    let zero = GOOD.replace("memory: 256 }", "memory: 256, reserved_concurrency: 0 }");
    let p = problems(&zero);
    assert!(
        p.iter()
            .any(|p| p.field == "functions.message.reserved_concurrency"),
        "{p:?}"
    );
    let one = GOOD.replace("memory: 256 }", "memory: 256, reserved_concurrency: 1 }");
    assert!(Config::parse(Path::new("wsctl.yaml"), &one).is_ok());
}

#[test]
fn a_handler_is_lambdas_handler_setting() {
    for bad in ["\"\"", "\"two words\"", &"h".repeat(129)] {
        let text = GOOD.replace("memory: 256 }", &format!("memory: 256, handler: {bad} }}"));
        let p = problems(&text);
        assert!(
            p.iter().any(|p| p.field == "functions.message.handler"),
            "{bad}: {p:?}"
        );
    }
    let good = GOOD.replace("memory: 256 }", "memory: 256, handler: message }");
    let c = Config::parse(Path::new("wsctl.yaml"), &good).unwrap();
    assert_eq!(c.functions["message"].handler.as_deref(), Some("message"));
    assert_eq!(c.functions["connect"].handler, None);
}

#[test]
fn oidc_settings_are_checked() {
    let text = GOOD.to_string()
        + "authorizer:\n  function: connect\n  audience: ''\n  oidc:\n    issuer: ftp://id\n    audience: ''\n    jwks_url: http://id.example.com/keys\n    default_capabilities: { 'room-*': [subscribe, dance] }\n";
    let fields: Vec<String> = problems(&text).into_iter().map(|p| p.field).collect();
    for f in [
        "authorizer.audience",
        "authorizer.oidc.issuer",
        "authorizer.oidc.audience",
        "authorizer.oidc.jwks_url",
        "authorizer.oidc.default_capabilities.room-*",
    ] {
        assert!(fields.iter().any(|x| x == f), "{f} not in {fields:?}");
    }
}

fn fields(text: &str) -> Vec<(String, String)> {
    problems(text)
        .into_iter()
        .map(|p| (p.field, p.message))
        .collect()
}

#[test]
fn index_names_follow_dynamodbs_rule() {
    let with_index = |name: &str| {
        GOOD.replace(
            "sort_key: \"serial:N\" }",
            &format!(
                "sort_key: \"serial:N\", indexes: {{ '{name}': {{ partition_key: serial:N }} }} }}"
            ),
        )
    };
    for bad in ["ab", "by connection", "by/x", &"i".repeat(256)] {
        let p = fields(&with_index(bad));
        assert!(
            p.iter()
                .any(|(f, m)| f == &format!("tables.connections.indexes.{bad}")
                    && m.contains("3-255")),
            "{bad}: {p:?}"
        );
    }
    for good in ["ByConnection", "by_connection.v2", "abc", "by-connection"] {
        assert!(
            Config::parse(Path::new("wsctl.yaml"), &with_index(good)).is_ok(),
            "{good}"
        );
    }
}

#[test]
fn tags_follow_api_gateways_rules_and_count() {
    let with_tags = |tags: &str| format!("{GOOD}tags: {{ {tags} }}\n");
    for (tags, field, says) in [
        ("'team#1': x", "tags.team#1", "'#'"),
        ("team: 'a,b'", "tags.team", "','"),
        ("owner: 'ana@example.com'", "tags.owner", "DynamoDB"),
        ("'AWS:x': y", "tags.AWS:x", "reserved"),
        ("'wsctl:stack': y", "tags.wsctl:stack", "reserved"),
        (&format!("'{}': y", "k".repeat(129)), "tags.kkk", "1-128"),
        (&format!("team: '{}'", "v".repeat(257)), "tags.team", "256"),
    ] {
        let p = fields(&with_tags(tags));
        assert!(
            p.iter()
                .any(|(f, m)| f.starts_with(field) && m.contains(says)),
            "{tags}: {p:?}"
        );
    }
    let fine = with_tags("'team name': 'Équipe temps-réel', 'a.b:c/d=e+f-g_i': '日本 1'");
    assert!(Config::parse(Path::new("wsctl.yaml"), &fine).is_ok());

    // wsctl adds its own two, and a table one more: 47 of the user's is the most.
    let many = |n: usize| {
        with_tags(
            &(0..n)
                .map(|i| format!("t{i}: v"))
                .collect::<Vec<_>>()
                .join(", "),
        )
    };
    assert!(Config::parse(Path::new("wsctl.yaml"), &many(47)).is_ok());
    let p = fields(&many(48));
    assert!(
        p.iter()
            .any(|(f, m)| f == "tags" && m.contains("50") && m.contains("at most 47")),
        "{p:?}"
    );
}

#[test]
fn lambdas_reserved_variables_are_refused_and_tz_is_not() {
    let with_env = |env: &str| {
        GOOD.replace(
            "memory: 256 }",
            &format!("memory: 256, environment: {{ {env} }} }}"),
        )
    };
    for key in [
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
        "AWS_REGION",
        "AWS_LAMBDA_RUNTIME_API",
        "_HANDLER",
        "X",
    ] {
        let p = fields(&with_env(&format!("{key}: v")));
        assert!(
            p.iter()
                .any(|(f, _)| f == &format!("functions.message.environment.{key}")),
            "{key}: {p:?}"
        );
    }
    assert!(Config::parse(Path::new("wsctl.yaml"), &with_env("TZ: Europe/Paris")).is_ok());
}

#[test]
fn tables_the_bundled_functions_cannot_use_are_refused_naming_the_field() {
    let template = include_str!("../../../templates/wsctl.yaml");
    let renamed = template.replace("    partition_key: pk\n", "    partition_key: id\n");
    assert_ne!(renamed, template);
    let p = problems(&renamed);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].field, "tables.connections.partition_key");
    assert!(
        p[0].message
            .contains(r#"the bundled functions need "pk" (S); write `partition_key: pk`"#),
        "{p:?}"
    );

    let edits = [
        (
            "sort_key: serial:N",
            "sort_key: serial",
            "tables.history.sort_key",
        ),
        (
            "by-connection: {",
            "by-conn: {",
            "tables.subscriptions.indexes.by-connection",
        ),
        (
            "{ partition_key: connection, sort_key: channel }",
            "{ partition_key: connection:N, sort_key: channel }",
            "tables.subscriptions.indexes.by-connection.partition_key",
        ),
        (
            "  counters:\n    partition_key: channel\n",
            "",
            "tables.counters",
        ),
        (
            "    partition_key: pk\n",
            "    partition_key: pk\n    sort_key: at:N\n",
            "tables.connections.sort_key",
        ),
        (
            "history: read-write, counters: read-write }\n    manage",
            "history: read-write, counters: read }\n    manage",
            "functions.message.tables.counters",
        ),
        // A wsctl.yaml written before the message function posted small channels itself: it
        // removes the subscribers it finds gone.
        (
            "tables: { connections: read-write, subscriptions: read-write, history: read-write, counters: read-write }\n    manage_connections: true      # may post",
            "tables: { connections: read, subscriptions: read-write, history: read-write, counters: read-write }\n    manage_connections: true      # may post",
            "functions.message.tables.connections",
        ),
        ("    handler: publish\n", "", "functions.publish.handler"),
        (
            "    tables: { connections: read-write, subscriptions: read-write, counters: read-write }\n    invoke: [publish]",
            "    tables: { connections: read-write, subscriptions: read-write, counters: read-write }",
            "functions.disconnect.invoke",
        ),
        // A wsctl.yaml written before the per-client limits: `$connect` counts each user's
        // connections in `counters`, and `$disconnect` frees the place.
        (
            "tables: { connections: read-write, counters: read-write }",
            "tables: { connections: read-write }",
            "functions.connect.tables.counters",
        ),
        (
            "subscriptions: read-write, counters: read-write }\n    invoke",
            "subscriptions: read-write }\n    invoke",
            "functions.disconnect.tables.counters",
        ),
        (
            "    read_secret: true",
            "    read_secret: false",
            "functions.authorizer.read_secret",
        ),
    ];
    for (from, to, field) in edits {
        let text = template.replacen(from, to, 1);
        assert_ne!(text, template, "{from}");
        let p = problems(&text);
        assert!(p.iter().any(|p| p.field == field), "{field}: {p:?}");
    }

    // What may vary reaches the functions through their environment.
    let ttl = template.replace("ttl_attribute: ttl", "ttl_attribute: expires_at");
    assert_ne!(ttl, template);
    Config::parse(Path::new("wsctl.yaml"), &ttl).unwrap();
    // Functions of one's own shape their tables as they like (GOOD's sort key, say).
    Config::parse(Path::new("wsctl.yaml"), GOOD).unwrap();
}

#[test]
fn key_attr_parses_types() {
    assert_eq!(
        KeyAttr::parse("pk").unwrap(),
        KeyAttr {
            name: "pk".into(),
            kind: "S".into()
        }
    );
    assert_eq!(KeyAttr::parse("n:N").unwrap().kind, "N");
    assert!(KeyAttr::parse(":N").is_err());
}

#[test]
fn a_named_boundary_must_be_a_managed_policys_arn() {
    let with = |arn: &str| format!("{GOOD}permissions_boundary: \"{arn}\"\n");
    for good in [
        "arn:aws:iam::123456789012:policy/org/app-boundary",
        "arn:aws-cn:iam::123456789012:policy/b",
    ] {
        let config = Config::parse(Path::new("wsctl.yaml"), &with(good)).unwrap();
        assert_eq!(config.permissions_boundary.as_deref(), Some(good));
    }
    for bad in [
        "arn:aws:iam::123456789012:role/b",
        "arn:aws:iam::12345:policy/b",
        "app-boundary",
        "arn:aws:iam::123456789012:policy/",
    ] {
        let found = problems(&with(bad));
        assert_eq!(found.len(), 1, "{bad}: {found:?}");
        assert_eq!(found[0].field, "permissions_boundary");
        assert!(
            found[0].message.contains("not a managed policy's ARN"),
            "{found:?}"
        );
    }
}

#[test]
fn access_logs_are_checked_for_retention_format_and_role() {
    let with = |logs: &str| format!("{GOOD}access_logs: {logs}\n");
    let fields = |text: &str| -> Vec<String> {
        problems(&with(text))
            .into_iter()
            .map(|p| format!("{}: {}", p.field, p.message))
            .collect()
    };
    let ok = Config::parse(Path::new("wsctl.yaml"), &with("{}")).unwrap();
    let logs = ok.access_logs.unwrap();
    assert_eq!(logs.account_role(), AccountRole::Existing);
    assert_eq!(logs.format(), ACCESS_LOG_FORMAT);
    let line: serde_json::Value = serde_json::from_str(ACCESS_LOG_FORMAT).unwrap();
    assert_eq!(line["connectionId"], "$context.connectionId");

    let create = Config::parse(Path::new("wsctl.yaml"), &with("{ account_role: create }"));
    assert_eq!(
        create.unwrap().access_logs.unwrap().account_role(),
        AccountRole::Create
    );
    let arn = "arn:aws:iam::123456789012:role/ops/apigw-logs";
    let named = Config::parse(
        Path::new("wsctl.yaml"),
        &with(&format!("{{ account_role: '{arn}' }}")),
    );
    assert_eq!(
        named.unwrap().access_logs.unwrap().account_role(),
        AccountRole::Arn(arn)
    );

    let bad = fields("{ account_role: yes-please }");
    assert!(
        bad[0].starts_with(
            "access_logs.account_role: `yes-please` is neither `create` nor an IAM role ARN"
        ),
        "{bad:?}"
    );
    let bad = fields("{ account_role: 'arn:aws:iam::123456789012:user/bob' }");
    assert_eq!(bad.len(), 1, "{bad:?}");
    let bad = fields("{ retention_days: 10 }");
    assert!(
        bad[0].starts_with("access_logs.retention_days: 10 is not a CloudWatch Logs retention"),
        "{bad:?}"
    );
    let bad = fields("{ format: '$context.connectionId $context.status' }");
    assert!(
        bad[0].starts_with("access_logs.format: must contain `$context.requestId`"),
        "{bad:?}"
    );
    let bad = fields("{ format: \"$context.requestId\\n$context.status\" }");
    assert!(
        bad[0].starts_with("access_logs.format: must be one line"),
        "{bad:?}"
    );
    let long = format!(
        "{{ format: '$context.requestId {}' }}",
        "$context.status ".repeat(200)
    );
    let bad = fields(&long);
    assert!(
        bad[0].starts_with("access_logs.format: is 3") && bad[0].contains("at most 3 KB"),
        "{bad:?}"
    );
    let unknown = Config::parse(Path::new("wsctl.yaml"), &with("{ retention: 7 }"))
        .unwrap_err()
        .to_string();
    assert!(unknown.contains("retention"), "{unknown}");
}

#[test]
fn a_custom_domain_is_checked_against_dns_acm_and_api_mapping_rules() {
    let with = |domain: &str| format!("{GOOD}region: eu-west-1\ndomain: {domain}\n");
    let cert = "arn:aws:acm:eu-west-1:123456789012:certificate/abc";
    let ok = Config::parse(
        Path::new("wsctl.yaml"),
        &with(&format!(
            "{{ name: ws.example.com, certificate_arn: '{cert}' }}"
        )),
    )
    .unwrap();
    let domain = ok.domain.as_ref().unwrap();
    assert_eq!(
        domain.mapping_key("dev"),
        "dev",
        "the stage path by default"
    );

    let fields = |text: &str| -> Vec<String> {
        problems(&with(text))
            .into_iter()
            .map(|p| format!("{}: {}", p.field, p.message))
            .collect()
    };
    let bad_name = fields(&format!(
        "{{ name: 'WS_example', certificate_arn: '{cert}' }}"
    ));
    assert!(
        bad_name[0].starts_with("domain.name: `WS_example` is not a host name"),
        "{bad_name:?}"
    );
    let other_region = fields(
        "{ name: ws.example.com, certificate_arn: 'arn:aws:acm:us-east-1:123456789012:certificate/x' }",
    );
    assert!(
        other_region[0].contains("the certificate is in us-east-1, the stack in eu-west-1"),
        "{other_region:?}"
    );
    let not_acm = fields("{ name: ws.example.com, certificate_arn: 'arn:aws:iam::1:x' }");
    assert!(
        not_acm[0].contains("is not an ACM certificate ARN"),
        "{not_acm:?}"
    );
    let bad_path = fields(&format!(
        "{{ name: ws.example.com, certificate_arn: '{cert}', path: '/v1//x' }}"
    ));
    assert!(bad_path[0].starts_with("domain.path:"), "{bad_path:?}");
    let root = Config::parse(
        Path::new("wsctl.yaml"),
        &with(&format!(
            "{{ name: ws.example.com, certificate_arn: '{cert}', path: '' }}"
        )),
    )
    .unwrap();
    assert_eq!(root.domain.unwrap().mapping_key("dev"), "");
}

#[test]
fn events_name_their_bus_and_send_something() {
    let ok = Config::parse(
        Path::new("wsctl.yaml"),
        &format!("{GOOD}events: {{ connections: true, messages: [\"orders-*\"] }}\n"),
    )
    .unwrap();
    let events = ok.events.clone().unwrap();
    assert!(events.owns_bus());
    assert_eq!(events.bus(&ok.names()), "chat-dev");
    let fields = |text: &str| -> Vec<String> {
        problems(&format!("{GOOD}region: eu-west-1\n{text}"))
            .into_iter()
            .map(|p| format!("{}: {}", p.field, p.message))
            .collect()
    };
    let nothing = fields("events: {}\n");
    assert!(
        nothing[0].starts_with("events: sends nothing"),
        "{nothing:?}"
    );
    let elsewhere = fields(
        "events: { connections: true, bus: \"arn:aws:events:us-east-1:123456789012:event-bus/app\" }\n",
    );
    assert!(
        elsewhere[0].contains("the bus is in us-east-1, the stack in eu-west-1"),
        "{elsewhere:?}"
    );
    let bad = fields("events: { bus: \"my bus\", messages: [\"a#b\", \"\"] }\n");
    assert_eq!(bad.len(), 3, "{bad:?}");
    assert!(
        bad[0].starts_with("events.bus: \"my bus\" is not a bus name"),
        "{bad:?}"
    );
    assert!(bad[1].starts_with("events.messages[0]"), "{bad:?}");
}
