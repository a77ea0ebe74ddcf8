//! Everything in the emulated account, read through the AWS SDK and normalised (random API
//! ids replaced), so two accounts can be compared and an orphan shows up as a difference.
//! It lists the whole account, not one stack: that is what makes orphans visible.

use std::collections::BTreeMap;

use serde_json::{Value, json};

pub async fn snapshot(endpoint: &str) -> Value {
    let sdk = crate::sdk(endpoint).await;
    let (iam, lambda, dynamodb, logs, ssm, apigw) = (
        aws_sdk_iam::Client::new(&sdk),
        aws_sdk_lambda::Client::new(&sdk),
        aws_sdk_dynamodb::Client::new(&sdk),
        aws_sdk_cloudwatchlogs::Client::new(&sdk),
        aws_sdk_ssm::Client::new(&sdk),
        aws_sdk_apigatewayv2::Client::new(&sdk),
    );
    let mut out = BTreeMap::new();

    let mut roles = BTreeMap::new();
    for role in iam.list_roles().send().await.unwrap().roles {
        let name = role.role_name;
        let tags: BTreeMap<String, String> = iam
            .list_role_tags()
            .role_name(&name)
            .send()
            .await
            .unwrap()
            .tags
            .into_iter()
            .map(|t| (t.key, t.value))
            .collect();
        let mut policies = BTreeMap::new();
        for p in iam
            .list_role_policies()
            .role_name(&name)
            .send()
            .await
            .unwrap()
            .policy_names
        {
            let doc = iam
                .get_role_policy()
                .role_name(&name)
                .policy_name(&p)
                .send()
                .await
                .unwrap()
                .policy_document;
            policies.insert(p, decode(&doc));
        }
        // ListRoles leaves out a role's permissions boundary; GetRole has it.
        let boundary = iam
            .get_role()
            .role_name(&name)
            .send()
            .await
            .unwrap()
            .role
            .and_then(|r| r.permissions_boundary)
            .and_then(|b| b.permissions_boundary_arn);
        roles.insert(
            name,
            json!({"path": role.path, "tags": tags, "policies": policies, "boundary": boundary}),
        );
    }
    out.insert("roles", json!(roles));

    // Customer managed policies (a stack's permissions boundary): path, tags and the document
    // of the default version.
    let mut managed = BTreeMap::new();
    let local = aws_sdk_iam::types::PolicyScopeType::Local;
    for policy in iam
        .list_policies()
        .scope(local)
        .send()
        .await
        .unwrap()
        .policies
        .unwrap_or_default()
    {
        let arn = policy.arn.unwrap_or_default();
        let tags: BTreeMap<String, String> = iam
            .list_policy_tags()
            .policy_arn(&arn)
            .send()
            .await
            .unwrap()
            .tags
            .into_iter()
            .map(|t| (t.key, t.value))
            .collect();
        let document = iam
            .get_policy_version()
            .policy_arn(&arn)
            .version_id(policy.default_version_id.unwrap_or_default())
            .send()
            .await
            .unwrap()
            .policy_version
            .and_then(|v| v.document)
            .map(|d| decode(&d));
        managed.insert(
            arn,
            json!({"path": policy.path, "tags": tags, "document": document}),
        );
    }
    out.insert("managed_policies", json!(managed));

    let mut functions = BTreeMap::new();
    for f in lambda
        .list_functions()
        .send()
        .await
        .unwrap()
        .functions
        .unwrap_or_default()
    {
        let name = f.function_name.unwrap_or_default();
        let got = lambda
            .get_function()
            .function_name(&name)
            .send()
            .await
            .unwrap();
        let c = got.configuration.unwrap();
        let policy = policy_statements(&lambda, &name)
            .await
            .map_or(Value::Null, Value::from);
        functions.insert(
            name,
            json!({
                "role": c.role, "memory": c.memory_size, "timeout": c.timeout, "runtime": c.runtime.map(|r| r.as_str().to_string()),
                "arch": c.architectures.map(|a| a.iter().map(|x| x.as_str().to_string()).collect::<Vec<_>>()),
                "env": c.environment.and_then(|e| e.variables).map(|v| v.into_iter().collect::<BTreeMap<_, _>>()),
                "code": c.code_sha256, "tags": got.tags.map(|t| t.into_iter().collect::<BTreeMap<_, _>>()), "policy": policy,
            }),
        );
    }
    out.insert("functions", json!(functions));

    let mut tables = BTreeMap::new();
    for name in dynamodb
        .list_tables()
        .send()
        .await
        .unwrap()
        .table_names
        .unwrap_or_default()
    {
        let t = dynamodb
            .describe_table()
            .table_name(&name)
            .send()
            .await
            .unwrap()
            .table
            .unwrap();
        let ttl = dynamodb
            .describe_time_to_live()
            .table_name(&name)
            .send()
            .await
            .unwrap()
            .time_to_live_description
            .unwrap();
        let tags: BTreeMap<String, String> = dynamodb
            .list_tags_of_resource()
            .resource_arn(t.table_arn.clone().unwrap())
            .send()
            .await
            .unwrap()
            .tags
            .unwrap_or_default()
            .into_iter()
            .map(|t| (t.key, t.value))
            // When wsctl last changed the TTL: a time, and absent when a deploy was stopped
            // right after the change (the next one has nothing to change).
            .filter(|(k, _)| k != "wsctl:ttl-changed")
            .collect();
        let keys = |k: &[aws_sdk_dynamodb::types::KeySchemaElement]| {
            k.iter()
                .map(|k| format!("{}:{}", k.attribute_name, k.key_type.as_str()))
                .collect::<Vec<_>>()
        };
        let indexes: BTreeMap<String, Vec<String>> = t
            .global_secondary_indexes()
            .iter()
            .map(|i| {
                (
                    i.index_name.clone().unwrap_or_default(),
                    keys(i.key_schema()),
                )
            })
            .collect();
        let recovery = dynamodb
            .describe_continuous_backups()
            .table_name(&name)
            .send()
            .await
            .unwrap()
            .continuous_backups_description
            .and_then(|d| d.point_in_time_recovery_description)
            .and_then(|p| p.point_in_time_recovery_status)
            .map(|s| s.as_str().to_string());
        tables.insert(
            name,
            json!({
                "recovery": recovery,
                "deletion_protection": t.deletion_protection_enabled,
                "keys": keys(t.key_schema()), "indexes": indexes, "billing": t.billing_mode_summary.as_ref().and_then(|b| b.billing_mode.clone()).map(|b| b.as_str().to_string()),
                "ttl": [ttl.attribute_name, ttl.time_to_live_status.map(|s| s.as_str().to_string())], "tags": tags,
            }),
        );
    }
    out.insert("tables", json!(tables));

    let mut groups = BTreeMap::new();
    for g in logs
        .describe_log_groups()
        .send()
        .await
        .unwrap()
        .log_groups
        .unwrap_or_default()
    {
        let arn = g.arn.unwrap_or_default();
        let tags = logs
            .list_tags_for_resource()
            .resource_arn(arn.trim_end_matches(":*"))
            .send()
            .await
            .unwrap()
            .tags;
        groups.insert(
            g.log_group_name.unwrap_or_default(),
            json!({"retention": g.retention_in_days, "tags": tags}),
        );
    }
    out.insert("log_groups", json!(groups));

    let mut params = BTreeMap::new();
    for p in ssm
        .describe_parameters()
        .send()
        .await
        .unwrap()
        .parameters
        .unwrap_or_default()
    {
        let name = p.name.unwrap_or_default();
        let tags: BTreeMap<String, String> = ssm
            .list_tags_for_resource()
            .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
            .resource_id(&name)
            .send()
            .await
            .unwrap()
            .tag_list
            .unwrap_or_default()
            .into_iter()
            .map(|t| (t.key, t.value))
            .collect();
        params.insert(
            name,
            json!({"type": p.r#type.map(|t| t.as_str().to_string()), "tags": tags}),
        );
    }
    out.insert("parameters", json!(params));

    out.insert("alarms", alarms(&sdk).await);
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&sdk);
    let mut dashboards = BTreeMap::new();
    for d in cloudwatch
        .list_dashboards()
        .send()
        .await
        .unwrap()
        .dashboard_entries
        .unwrap_or_default()
    {
        let name = d.dashboard_name.unwrap_or_default();
        let body = cloudwatch
            .get_dashboard()
            .dashboard_name(&name)
            .send()
            .await
            .unwrap()
            .dashboard_body
            .unwrap_or_default();
        dashboards.insert(
            name,
            serde_json::from_str::<Value>(&body).unwrap_or(Value::String(body)),
        );
    }
    out.insert("dashboards", json!(dashboards));
    out.insert("topics", topics(&sdk).await);

    let mut apis = Vec::new();
    let mut ids = Vec::new();
    for api in apigw
        .get_apis()
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default()
    {
        let id = api.api_id.clone().unwrap_or_default();
        ids.push(id.clone());
        let integrations = apigw
            .get_integrations()
            .api_id(&id)
            .send()
            .await
            .unwrap()
            .items
            .unwrap_or_default();
        let uri_of: BTreeMap<String, String> = integrations
            .iter()
            .map(|i| {
                (
                    i.integration_id.clone().unwrap_or_default(),
                    i.integration_uri.clone().unwrap_or_default(),
                )
            })
            .collect();
        let mut integration_list: Vec<Value> = integrations
            .iter()
            .map(|i| json!({"uri": i.integration_uri, "type": i.integration_type.as_ref().map(|t| t.as_str().to_string()), "timeout": i.timeout_in_millis}))
            .collect();
        integration_list.sort_by_key(|v| v.to_string());
        let mut routes = Vec::new();
        for r in apigw
            .get_routes()
            .api_id(&id)
            .send()
            .await
            .unwrap()
            .items
            .unwrap_or_default()
        {
            let authorizer = match &r.authorizer_id {
                Some(a) => {
                    let got = apigw
                        .get_authorizer()
                        .api_id(&id)
                        .authorizer_id(a)
                        .send()
                        .await
                        .unwrap();
                    json!({"name": got.name, "type": got.authorizer_type.map(|t| t.as_str().to_string()), "uri": got.authorizer_uri, "identity": got.identity_source})
                }
                None => Value::Null,
            };
            let target = r
                .target
                .as_deref()
                .and_then(|t| t.strip_prefix("integrations/"))
                .and_then(|i| uri_of.get(i))
                .cloned();
            routes.push(json!({
                "key": r.route_key, "target": target, "auth": r.authorization_type.map(|t| t.as_str().to_string()), "authorizer": authorizer,
            }));
        }
        routes.sort_by_key(|v| v.to_string());
        let mut stages = Vec::new();
        for s in apigw
            .get_stages()
            .api_id(&id)
            .send()
            .await
            .unwrap()
            .items
            .unwrap_or_default()
        {
            let settings = s.default_route_settings;
            stages.push(json!({
                "name": s.stage_name, "auto_deploy": s.auto_deploy,
                "burst": settings.as_ref().and_then(|x| x.throttling_burst_limit), "rate": settings.as_ref().and_then(|x| x.throttling_rate_limit),
                "tags": s.tags.map(|t| t.into_iter().collect::<BTreeMap<_, _>>()),
            }));
        }
        apis.push(json!({
            "name": api.name, "protocol": api.protocol_type.map(|p| p.as_str().to_string()), "selection": api.route_selection_expression,
            "tags": api.tags.map(|t| t.into_iter().collect::<BTreeMap<_, _>>()), "integrations": integration_list, "routes": routes, "stages": stages,
        }));
    }
    apis.sort_by_key(|v| v.to_string());
    out.insert("apis", json!(apis));

    // API ids are random: name them by position so equal accounts compare equal.
    let mut text = serde_json::to_string(&out).unwrap();
    for (n, id) in ids.iter().enumerate() {
        text = text.replace(id.as_str(), &format!("<api-{n}>"));
    }
    // So are authorizer ids, which a permission's source ARN names (`…/authorizers/ID`).
    let mut named = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("/authorizers/") {
        let (head, tail) = rest.split_at(at + "/authorizers/".len());
        named.push_str(head);
        named.push_str("<authorizer>");
        let end = tail
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(tail.len());
        rest = &tail[end..];
    }
    named.push_str(rest);
    serde_json::from_str(&named).unwrap()
}

/// IAM policy documents arrive URL-encoded.
pub fn decode(text: &str) -> Value {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    serde_json::from_slice(&out).unwrap_or(Value::Null)
}

/// The statements of a function's resource-based policy, read back through Lambda's GetPolicy,
/// in Sid order (a policy's statements form a set, and parallel AddPermission calls append them
/// in whatever order they land); `None` when the function has no policy.
pub async fn policy_statements(
    lambda: &aws_sdk_lambda::Client,
    function: &str,
) -> Option<Vec<Value>> {
    let got = lambda
        .get_policy()
        .function_name(function)
        .send()
        .await
        .ok()?;
    let policy: Value = serde_json::from_str(&got.policy.unwrap_or_default()).ok()?;
    let mut statements = policy["Statement"].as_array().cloned().unwrap_or_default();
    statements.sort_by_key(|s| s["Sid"].as_str().unwrap_or_default().to_string());
    Some(statements)
}

/// Where each statement lets API Gateway invoke the function from: its `AWS:SourceArn`.
pub fn source_arns(statements: &[Value]) -> Vec<String> {
    statements
        .iter()
        .filter_map(|s| s["Condition"]["ArnLike"]["AWS:SourceArn"].as_str())
        .map(str::to_string)
        .collect()
}

/// Every metric alarm: its settings, metrics and tags.
pub async fn alarms(sdk: &aws_config::SdkConfig) -> Value {
    let cloudwatch = aws_sdk_cloudwatch::Client::new(sdk);
    let mut out = BTreeMap::new();
    for a in cloudwatch
        .describe_alarms()
        .send()
        .await
        .unwrap()
        .metric_alarms
        .unwrap_or_default()
    {
        let tags: BTreeMap<String, String> = cloudwatch
            .list_tags_for_resource()
            .resource_arn(a.alarm_arn().unwrap_or_default())
            .send()
            .await
            .unwrap()
            .tags
            .unwrap_or_default()
            .into_iter()
            .filter_map(|t| Some((t.key?, t.value?)))
            .collect();
        let metrics: Vec<Value> = a
            .metrics()
            .iter()
            .map(|q| {
                let stat = q.metric_stat();
                let metric = stat.and_then(|s| s.metric());
                json!({
                    "id": q.id(),
                    "expression": q.expression(),
                    "return_data": q.return_data(),
                    "stat": stat.and_then(|s| s.stat()),
                    "period": stat.and_then(|s| s.period()),
                    "namespace": metric.and_then(|m| m.namespace()),
                    "metric": metric.and_then(|m| m.metric_name()),
                    "dimensions": metric.map(|m| m.dimensions().iter().map(|d| format!("{}={}", d.name().unwrap_or_default(), d.value().unwrap_or_default())).collect::<Vec<_>>()),
                })
            })
            .collect();
        out.insert(
            a.alarm_name().unwrap_or_default().to_string(),
            json!({
                "description": a.alarm_description(),
                "threshold": a.threshold(),
                "comparison": a.comparison_operator().map(|c| c.as_str().to_string()),
                "periods": a.evaluation_periods(),
                "missing": a.treat_missing_data(),
                "actions": a.alarm_actions(),
                "ok_actions": a.ok_actions(),
                "metrics": metrics,
                "tags": tags,
            }),
        );
    }
    json!(out)
}

/// Every SNS topic: its tags and email subscriptions.
pub async fn topics(sdk: &aws_config::SdkConfig) -> Value {
    let sns = aws_sdk_sns::Client::new(sdk);
    let mut out = BTreeMap::new();
    for t in sns
        .list_topics()
        .send()
        .await
        .unwrap()
        .topics
        .unwrap_or_default()
    {
        let arn = t.topic_arn.unwrap_or_default();
        let tags: BTreeMap<String, String> = sns
            .list_tags_for_resource()
            .resource_arn(&arn)
            .send()
            .await
            .unwrap()
            .tags
            .unwrap_or_default()
            .into_iter()
            .map(|t| (t.key, t.value))
            .collect();
        let mut emails: Vec<String> = sns
            .list_subscriptions_by_topic()
            .topic_arn(&arn)
            .send()
            .await
            .unwrap()
            .subscriptions
            .unwrap_or_default()
            .into_iter()
            .filter_map(|s| Some(format!("{}:{}", s.protocol?, s.endpoint?)))
            .collect();
        emails.sort();
        out.insert(arn, json!({"tags": tags, "subscriptions": emails}));
    }
    json!(out)
}
