//! Tables change the way DynamoDB lets them (tests/src/aws/dynamodb.rs plays its waits): a
//! replaced table's name is reused once it is free, TTL changes once an hour, and indexes are
//! added and removed in place, one at a time, keeping the data.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::primitives::{DateTime, DateTimeFormat};
use aws_sdk_dynamodb::types::{AttributeValue, Tag};
use wsctl_tests::aws::dynamodb::Tables;
use wsctl_tests::proxy::Proxy;
use wsctl_tests::*;

/// The tag in which wsctl records when it last changed a table's TTL.
const TTL_CHANGED: &str = "wsctl:ttl-changed";

/// With `--yes`: replacing a table deletes its items, which deploy otherwise asks about
/// (that question is tested in `stage.rs`).
fn deploy(project: &Project, endpoint: &str) -> std::process::Output {
    let out = project.wsctl(
        endpoint,
        &["deploy", "--yes", "--no-build", "--no-progress"],
    );
    assert!(out.status.success(), "deploy failed:\n{}", text(&out));
    out
}

fn plan(project: &Project, endpoint: &str) -> String {
    let out = project.wsctl(endpoint, &["plan", "--no-build"]);
    assert!(out.status.success(), "plan failed:\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn edit(project: &Project, from: &str, to: &str) {
    let config = project.read_config();
    assert!(config.contains(from), "{from:?} not in the config");
    project.write_config(&config.replacen(from, to, 1));
}

fn calls(proxy: &Proxy, operation: &str) -> usize {
    proxy
        .calls()
        .iter()
        .filter(|c| c.operation == operation)
        .count()
}

fn dynamodb(rt: &tokio::runtime::Runtime, endpoint: &str) -> aws_sdk_dynamodb::Client {
    rt.block_on(async { aws_sdk_dynamodb::Client::new(&sdk(endpoint).await) })
}

#[test]
fn replacing_a_table_waits_until_its_name_is_free() {
    build_fixture();
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.url());
    let project = Project::new();
    deploy(&project, &proxy.url());

    edit(
        &project,
        "connections: { partition_key: pk,",
        "connections: { partition_key: id,",
    );
    let shown = plan(&project, &proxy.url());
    assert!(
        shown.contains("-/+ table fixture-test-connections (!)\n")
            && shown.contains("\n      partition_key: ")
            && shown
                .contains("{\"name\":\"pk\",\"type\":\"S\"} -> {\"name\":\"id\",\"type\":\"S\"}"),
        "{shown}"
    );
    proxy.clear();
    deploy(&project, &proxy.url());
    assert_eq!(calls(&proxy, "DeleteTable"), 1);
    assert!(
        calls(&proxy, "CreateTable") >= 1,
        "the table was created again"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let dynamodb = dynamodb(&rt, &moto.url());
    let table = rt
        .block_on(
            dynamodb
                .describe_table()
                .table_name("fixture-test-connections")
                .send(),
        )
        .unwrap()
        .table
        .unwrap();
    assert_eq!(table.key_schema()[0].attribute_name, "id");
    assert!(
        plan(&project, &proxy.url()).contains("No changes"),
        "the replacement converged"
    );
}

#[test]
fn a_deploy_right_after_destroy_recreates_the_stack() {
    build_fixture();
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.url());
    let project = Project::new();
    deploy(&project, &proxy.url());
    let out = project.wsctl(&proxy.url(), &["destroy", "--yes", "--no-progress"]);
    assert!(out.status.success(), "{}", text(&out));

    // The tables were deleted last: their names are still DELETING now.
    deploy(&project, &proxy.url());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dynamodb = dynamodb(&rt, &moto.url());
    let mut names = rt
        .block_on(dynamodb.list_tables().send())
        .unwrap()
        .table_names
        .unwrap_or_default();
    names.sort();
    assert_eq!(
        names,
        [
            "fixture-test-connections",
            "fixture-test-history",
            "fixture-test-subscriptions"
        ]
    );
    assert!(plan(&project, &proxy.url()).contains("No changes"));
}

/// When wsctl last changed the table's TTL, as recorded on the table.
fn ttl_changed(rt: &tokio::runtime::Runtime, dynamodb: &aws_sdk_dynamodb::Client) -> i64 {
    let tags = rt
        .block_on(async {
            let arn = dynamodb
                .describe_table()
                .table_name("fixture-test-connections")
                .send()
                .await
                .unwrap()
                .table
                .unwrap()
                .table_arn
                .unwrap();
            dynamodb
                .list_tags_of_resource()
                .resource_arn(arn)
                .send()
                .await
        })
        .unwrap()
        .tags
        .unwrap_or_default();
    // "If you try to add an existing tag (same key), the existing tag value is updated to the
    // new value" (DynamoDB Developer Guide, Tagging restrictions); moto appends a second entry
    // instead, so the value AWS would hold is the last one.
    let tag = tags
        .iter()
        .rfind(|t| t.key == TTL_CHANGED)
        .unwrap_or_else(|| panic!("no {TTL_CHANGED} tag among {tags:?}"));
    DateTime::from_str(&tag.value, DateTimeFormat::DateTime)
        .unwrap_or_else(|e| panic!("{TTL_CHANGED}={}: {e}", tag.value))
        .secs()
}

/// An hour passes for the table's TTL: DynamoDB's window (the proxy's clock) and wsctl's record
/// of its last change (the tag) both move back by an hour.
fn an_hour_passes(rt: &tokio::runtime::Runtime, moto: &Moto, tables: &Tables) {
    tables.age(Duration::from_secs(3601));
    let dynamodb = dynamodb(rt, &moto.url());
    let earlier = ttl_changed(rt, &dynamodb) - 3601;
    let value = DateTime::from_secs(earlier)
        .fmt(DateTimeFormat::DateTime)
        .unwrap();
    rt.block_on(async {
        let arn = dynamodb
            .describe_table()
            .table_name("fixture-test-connections")
            .send()
            .await
            .unwrap()
            .table
            .unwrap()
            .table_arn
            .unwrap();
        dynamodb
            .tag_resource()
            .resource_arn(arn)
            .tags(
                Tag::builder()
                    .key(TTL_CHANGED)
                    .value(value)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
    })
    .unwrap();
}

/// `HH:MM` of the minute at or after `secs`, as the note names it.
fn minute_after(secs: i64) -> String {
    let minute = (secs + 59) / 60 * 60;
    format!("{:02}:{:02}", minute % 86400 / 3600, minute % 3600 / 60)
}

#[test]
fn switching_the_ttl_attribute_makes_one_change_an_hour_and_says_when_the_next_one_is() {
    build_fixture();
    let moto = Moto::start();
    let tables = Arc::new(Tables::default());
    let proxy = Proxy::with(&moto.url(), wsctl_tests::aws::with_tables(tables.clone()));
    let project = Project::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let direct = dynamodb(&rt, &moto.url());
    deploy(&project, &proxy.url());
    an_hour_passes(&rt, &moto, &tables);

    edit(
        &project,
        "ttl_attribute: expires }",
        "ttl_attribute: gone_at }",
    );
    let shown = plan(&project, &proxy.url());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        shown.contains("  ~ table fixture-test-connections")
            && shown.contains("ttl_attribute: expires -> gone_at")
            && shown.contains(
                "TTL on `expires` is turned off now; TTL on `gone_at` can be enabled after"
            ),
        "{shown}"
    );

    proxy.clear();
    let out = deploy(&project, &proxy.url());
    assert_eq!(
        calls(&proxy, "UpdateTimeToLive"),
        1,
        "{:?}",
        proxy.mutations()
    );
    let changed = ttl_changed(&rt, &direct);
    assert!(changed >= now, "the change was recorded by this deploy");
    let note = format!(
        "TTL on `gone_at` can be enabled after {} UTC (DynamoDB allows one TTL change per table per hour); items do not expire until then; re-run deploy then",
        minute_after(changed + 3600)
    );
    assert!(text(&out).contains(&note), "{note}\n{}", text(&out));
    let ttl = rt
        .block_on(
            direct
                .describe_time_to_live()
                .table_name("fixture-test-connections")
                .send(),
        )
        .unwrap()
        .time_to_live_description
        .unwrap();
    assert_eq!(ttl.time_to_live_status.unwrap().as_str(), "DISABLED");

    // Within the hour: the plan still shows the change and when; a deploy sends no TTL call.
    let shown = plan(&project, &proxy.url());
    assert!(
        shown.contains("  ~ table fixture-test-connections")
            && shown.contains("ttl_attribute: (none) -> gone_at")
            && shown.contains(&note),
        "{shown}"
    );
    proxy.clear();
    let out = deploy(&project, &proxy.url());
    assert_eq!(proxy.mutations(), vec![], "{}", text(&out));
    assert!(text(&out).contains(&note), "{}", text(&out));

    an_hour_passes(&rt, &moto, &tables);
    proxy.clear();
    let out = deploy(&project, &proxy.url());
    assert_eq!(calls(&proxy, "UpdateTimeToLive"), 1, "{}", text(&out));
    assert!(
        !text(&out).contains("can be enabled after"),
        "{}",
        text(&out)
    );
    let ttl = rt
        .block_on(
            direct
                .describe_time_to_live()
                .table_name("fixture-test-connections")
                .send(),
        )
        .unwrap()
        .time_to_live_description
        .unwrap();
    assert_eq!(
        (
            ttl.attribute_name.as_deref(),
            ttl.time_to_live_status.unwrap().as_str()
        ),
        (Some("gone_at"), "ENABLED")
    );
    assert!(plan(&project, &proxy.url()).contains("No changes"));
}

fn subscription(rt: &tokio::runtime::Runtime, dynamodb: &aws_sdk_dynamodb::Client) -> bool {
    rt.block_on(
        dynamodb
            .get_item()
            .table_name("fixture-test-subscriptions")
            .key("channel", AttributeValue::S("news".into()))
            .key("connection", AttributeValue::S("c1".into()))
            .send(),
    )
    .unwrap()
    .item
    .is_some()
}

fn indexes(rt: &tokio::runtime::Runtime, dynamodb: &aws_sdk_dynamodb::Client) -> Vec<String> {
    let table = rt
        .block_on(
            dynamodb
                .describe_table()
                .table_name("fixture-test-subscriptions")
                .send(),
        )
        .unwrap()
        .table
        .unwrap();
    let mut names: Vec<String> = table
        .global_secondary_indexes()
        .iter()
        .map(|i| {
            let keys: Vec<&str> = i
                .key_schema()
                .iter()
                .map(|k| k.attribute_name.as_str())
                .collect();
            format!("{}({})", i.index_name.as_deref().unwrap(), keys.join(","))
        })
        .collect();
    names.sort();
    names
}

#[test]
fn indexes_are_added_and_removed_in_place_and_the_data_stays() {
    build_fixture();
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.url());
    let project = Project::new();
    deploy(&project, &proxy.url());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let direct = dynamodb(&rt, &moto.url());
    rt.block_on(
        direct
            .put_item()
            .table_name("fixture-test-subscriptions")
            .item("channel", AttributeValue::S("news".into()))
            .item("connection", AttributeValue::S("c1".into()))
            .item("user", AttributeValue::S("u1".into()))
            .item("at", AttributeValue::N("5".into()))
            .send(),
    )
    .unwrap();

    // Two indexes added: two UpdateTable calls, the second once the first is ACTIVE.
    edit(
        &project,
        "      by-connection: { partition_key: connection, sort_key: channel }\n",
        "      by-connection: { partition_key: connection, sort_key: channel }\n      by-user: { partition_key: user }\n      by-time: { partition_key: channel, sort_key: \"at:N\" }\n",
    );
    let shown = plan(&project, &proxy.url());
    assert!(
        shown.contains("  ~ table fixture-test-subscriptions\n      indexes: {\"by-connection\"")
            && shown.contains("Plan: 0 to create, ")
            && !shown.contains("-/+ table"),
        "{shown}"
    );
    proxy.clear();
    deploy(&project, &proxy.url());
    assert_eq!(calls(&proxy, "UpdateTable"), 2);
    assert_eq!(
        calls(&proxy, "DeleteTable") + calls(&proxy, "CreateTable"),
        0
    );
    assert_eq!(
        indexes(&rt, &direct),
        [
            "by-connection(connection,channel)",
            "by-time(channel,at)",
            "by-user(user)"
        ]
    );
    assert!(
        subscription(&rt, &direct),
        "the item survived adding indexes"
    );
    assert!(plan(&project, &proxy.url()).contains("No changes"));

    // One removed, one whose keys change (removed, then added again): three steps.
    edit(
        &project,
        "      by-connection: { partition_key: connection, sort_key: channel }\n      by-user: { partition_key: user }\n",
        "      by-connection: { partition_key: connection }\n",
    );
    let shown = plan(&project, &proxy.url());
    assert!(
        shown.contains("  ~ table fixture-test-subscriptions (!)\n      (!) rebuilds an index")
            && shown.contains("\n      indexes: "),
        "{shown}"
    );
    proxy.clear();
    deploy(&project, &proxy.url());
    assert_eq!(calls(&proxy, "UpdateTable"), 3);
    assert_eq!(
        calls(&proxy, "DeleteTable") + calls(&proxy, "CreateTable"),
        0
    );
    assert_eq!(
        indexes(&rt, &direct),
        ["by-connection(connection)", "by-time(channel,at)"]
    );
    assert!(
        subscription(&rt, &direct),
        "the item survived removing indexes"
    );
    assert!(plan(&project, &proxy.url()).contains("No changes"));
}

/// An index an earlier run left building (its wait ran out, or it was added by hand) is not
/// taken as ready: the plan names it, and the deploy waits until it can be read before it
/// ships code that queries it, without changing the table.
#[test]
fn an_index_still_backfilling_is_waited_for_by_the_next_deploy() {
    build_fixture();
    let moto = Moto::start();
    let tables = Arc::new(Tables::building_indexes_for(Duration::from_secs(8)));
    let proxy = Proxy::with(&moto.url(), wsctl_tests::aws::with_tables(tables.clone()));
    let project = Project::new();
    deploy(&project, &proxy.url());
    edit(
        &project,
        "      by-connection: { partition_key: connection, sort_key: channel }\n",
        "      by-connection: { partition_key: connection, sort_key: channel }\n      by-user: { partition_key: user }\n",
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    // What an interrupted deploy leaves: the index is made and still being built.
    let through = dynamodb(&rt, &proxy.url());
    rt.block_on(
        through
            .update_table()
            .table_name("fixture-test-subscriptions")
            .attribute_definitions(
                aws_sdk_dynamodb::types::AttributeDefinition::builder()
                    .attribute_name("user")
                    .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .global_secondary_index_updates(
                aws_sdk_dynamodb::types::GlobalSecondaryIndexUpdate::builder()
                    .create(
                        aws_sdk_dynamodb::types::CreateGlobalSecondaryIndexAction::builder()
                            .index_name("by-user")
                            .key_schema(
                                aws_sdk_dynamodb::types::KeySchemaElement::builder()
                                    .attribute_name("user")
                                    .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                                    .build()
                                    .unwrap(),
                            )
                            .projection(
                                aws_sdk_dynamodb::types::Projection::builder()
                                    .projection_type(aws_sdk_dynamodb::types::ProjectionType::All)
                                    .build(),
                            )
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .send(),
    )
    .unwrap();
    let query = || {
        rt.block_on(
            through
                .query()
                .table_name("fixture-test-subscriptions")
                .index_name("by-user")
                .key_condition_expression("#u = :u")
                .expression_attribute_names("#u", "user")
                .expression_attribute_values(":u", AttributeValue::S("u1".into()))
                .send(),
        )
        .map_err(|e| format!("{e:?}"))
    };
    let refused = query().unwrap_err();
    assert!(
        format!("{refused:?}").contains("backfilling"),
        "{refused:?}"
    );
    let shown = plan(&project, &proxy.url());
    assert!(
        shown.contains("building: [\"by-user (backfilling)\"]"),
        "{shown}"
    );
    proxy.clear();
    deploy(&project, &proxy.url());
    assert_eq!(calls(&proxy, "UpdateTable"), 0, "the index was made again");
    query().expect("the index can be read once the deploy is over");
    assert!(plan(&project, &proxy.url()).contains("No changes"));
}

/// Point-in-time recovery is on for the history table by default and deletion protection
/// off on a stage not named like production; both change in place. With protection on,
/// `destroy` and a replacement are refused before any change, naming the way out; turned
/// off, both go ahead. (moto refuses DeleteTable on a protected table as DynamoDB does.)
#[test]
fn recovery_and_deletion_protection_are_table_settings_that_destroy_respects() {
    build_fixture();
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.url());
    let project = Project::new();
    deploy(&project, &proxy.url());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let direct = dynamodb(&rt, &moto.url());
    let recovery = |table: &str| {
        rt.block_on(
            direct
                .describe_continuous_backups()
                .table_name(table)
                .send(),
        )
        .unwrap()
        .continuous_backups_description
        .and_then(|d| d.point_in_time_recovery_description)
        .and_then(|p| p.point_in_time_recovery_status)
        .map(|s| s.as_str().to_string())
    };
    let protection = |table: &str| {
        rt.block_on(direct.describe_table().table_name(table).send())
            .unwrap()
            .table
            .unwrap()
            .deletion_protection_enabled
            .unwrap_or(false)
    };
    assert_eq!(recovery("fixture-test-history").as_deref(), Some("ENABLED"));
    assert_eq!(
        recovery("fixture-test-connections").as_deref(),
        Some("DISABLED")
    );
    assert!(!protection("fixture-test-history"));

    const HISTORY: &str = "  history: { partition_key: channel, sort_key: \"serial:N\"";
    edit(
        &project,
        HISTORY,
        &format!("{HISTORY}, deletion_protection: true, point_in_time_recovery: false"),
    );
    let shown = plan(&project, &proxy.url());
    assert!(
        shown.contains("~ table fixture-test-history")
            && shown.contains("deletion_protection: false -> true"),
        "{shown}"
    );
    proxy.clear();
    deploy(&project, &proxy.url());
    assert!(
        calls(&proxy, "CreateTable") + calls(&proxy, "DeleteTable") == 0,
        "changed in place"
    );
    assert!(protection("fixture-test-history"));
    assert_eq!(
        recovery("fixture-test-history").as_deref(),
        Some("DISABLED")
    );

    proxy.clear();
    let out = project.wsctl(&proxy.url(), &["destroy", "--yes"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("fixture-test-history")
            && err.contains("deletion protection")
            && err.contains("deletion_protection: false"),
        "{err}"
    );
    assert_eq!(proxy.mutations(), vec![], "destroy changed something");

    // A new key replaces the table: refused alike, even with --yes.
    edit(&project, "sort_key: \"serial:N\"", "sort_key: \"seq:N\"");
    let out = project.wsctl(
        &proxy.url(),
        &["deploy", "--yes", "--no-build", "--no-progress"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("deletion protection"),
        "{}",
        text(&out)
    );
    assert_eq!(proxy.mutations(), vec![], "the deploy changed something");
    edit(&project, "sort_key: \"seq:N\"", "sort_key: \"serial:N\"");

    edit(
        &project,
        "deletion_protection: true",
        "deletion_protection: false",
    );
    deploy(&project, &proxy.url());
    assert!(!protection("fixture-test-history"));
    let out = project.wsctl(&proxy.url(), &["destroy", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
}
