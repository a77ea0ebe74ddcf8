//! The stage's alarms, their topic and its dashboard, from `alarms:` and `dashboard:`.
//!
//! The metrics are the services' own for the stack's API, functions and tables ("Monitoring
//! WebSocket API execution with CloudWatch metrics", API Gateway Developer Guide; "Types of
//! metrics for Lambda functions"; "DynamoDB metrics and dimensions") and the functions' own,
//! which they write in the embedded metric format (`wsctl_functions::metrics`, namespace
//! [`NAMESPACE`], dimension `Function`, the function's name).

use serde_json::{Value, json};

use super::super::model::*;
use crate::aws::cloudwatch::alarm::AlarmMetric;
use crate::config::{AlarmsConfig, Config};
use crate::names::*;

pub use wsctl_functions::metrics::NAMESPACE;

/// Metrics one alarm reads at most: PutMetricAlarm takes ten metrics besides the expression
/// ("Metrics", PutMetricAlarm, CloudWatch API Reference).
pub const MAX_ALARM_METRICS: usize = 10;

/// The reasons the authorizer refuses a handshake for (`HandshakesRefused`'s `Reason`).
const REFUSAL_REASONS: [&str; 3] = ["invalid", "no_token", "unavailable"];

/// The topic, the alarms and the dashboard the config asks for.
pub fn monitoring(config: &Config, target: &Target) -> Vec<Spec> {
    let names = config.names();
    let tags = names.tags(&config.tags);
    let mut out = Vec::new();
    let mut alarm_arns = Vec::new();
    if let Some(alarms) = &config.alarms {
        let mut actions: Vec<String> = alarms.topic.iter().cloned().collect();
        if !alarms.emails.is_empty() {
            let mut emails = alarms.emails.clone();
            emails.sort();
            emails.dedup();
            out.push(Spec::Topic(TopicSpec {
                name: names.alarm_topic(),
                emails,
                tags: tags.clone(),
            }));
            actions.push(target.arn("sns", &names.alarm_topic()));
        }
        for spec in alarm_specs(config, alarms, target, &actions, &tags) {
            alarm_arns.push(target.arn("cloudwatch", &format!("alarm:{}", spec.name)));
            out.push(Spec::Alarm(spec));
        }
    }
    if config.dashboard {
        out.push(Spec::Dashboard(DashboardSpec {
            name: names.dashboard(),
            body: dashboard(config, target, &alarm_arns),
        }));
    }
    out
}

/// The stack's functions' names, and those of the functions that post to connections (which
/// write the delivery and fan-out metrics).
fn function_names(config: &Config) -> (Vec<String>, Vec<String>) {
    let names = config.names();
    let all = config.functions.keys().map(|k| names.function(k)).collect();
    let posting = config
        .functions
        .iter()
        .filter(|(_, f)| f.manage_connections)
        .map(|(k, _)| names.function(k))
        .collect();
    (all, posting)
}

/// What each alarm reads, and how: (key, description, stat, combine, metrics).
fn alarm_metrics(
    config: &Config,
    target: &Target,
) -> Vec<(&'static str, &'static str, &'static str, Vec<AlarmMetric>)> {
    let names = config.names();
    let (functions, posting) = function_names(config);
    let metric = |namespace: &str, name: &str, dimensions: &[(&str, &str)]| AlarmMetric {
        namespace: namespace.to_string(),
        name: name.to_string(),
        dimensions: dimensions
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let lambda = |name: &str| -> Vec<AlarmMetric> {
        functions
            .iter()
            .map(|f| metric("AWS/Lambda", name, &[("FunctionName", f)]))
            .collect()
    };
    let own = |name: &str, of: &[String]| -> Vec<AlarmMetric> {
        of.iter()
            .map(|f| metric(NAMESPACE, name, &[("Function", f)]))
            .collect()
    };
    let tables: Vec<AlarmMetric> = config
        .tables
        .keys()
        .flat_map(|t| {
            let table = names.table(t);
            ["ReadThrottleEvents", "WriteThrottleEvents"]
                .map(|m| metric("AWS/DynamoDB", m, &[("TableName", &table)]))
        })
        .collect();
    let authorizer: Vec<AlarmMetric> = config
        .authorizer
        .iter()
        .flat_map(|a| {
            let f = names.function(&a.function);
            REFUSAL_REASONS.map(|r| {
                metric(
                    NAMESPACE,
                    "HandshakesRefused",
                    &[("Function", f.as_str()), ("Reason", r)],
                )
            })
        })
        .collect();
    vec![
        (
            "function_errors",
            "Invocations of the stack's functions that failed",
            "Sum",
            lambda("Errors"),
        ),
        (
            "function_throttles",
            "Invocations Lambda refused for concurrency",
            "Sum",
            lambda("Throttles"),
        ),
        (
            "integration_errors",
            "Messages and connects whose function failed or could not be reached",
            "Sum",
            vec![metric(
                "AWS/ApiGateway",
                "IntegrationError",
                &[("ApiId", target.api()), ("Stage", &config.stage)],
            )],
        ),
        (
            "table_throttles",
            "Reads and writes DynamoDB throttled",
            "Sum",
            tables,
        ),
        (
            "failed_posts",
            "Posts to connections that failed (not gone)",
            "Sum",
            own("FailedPosts", &posting),
        ),
        (
            "refused_handshakes",
            "Handshakes the authorizer refused",
            "Sum",
            authorizer,
        ),
        (
            "fanout_ms",
            "The longest fan-out, in milliseconds",
            "Maximum",
            own("FanoutDuration", &posting),
        ),
    ]
}

fn alarm_specs(
    config: &Config,
    alarms: &AlarmsConfig,
    target: &Target,
    actions: &[String],
    tags: &Tags,
) -> Vec<AlarmSpec> {
    let names = config.names();
    let enabled = alarms.enabled();
    alarm_metrics(config, target)
        .into_iter()
        .filter_map(|(key, description, stat, metrics)| {
            let setting = enabled.iter().find(|s| s.key == key)?;
            // A stack without what the alarm reads (no tables, no authorizer) has no such alarm.
            if metrics.is_empty() {
                return None;
            }
            Some(AlarmSpec {
                name: names.alarm(key),
                description: format!("{description} ({}, `alarms.{key}`)", names.api()),
                stat: stat.to_string(),
                combine: match stat {
                    "Maximum" => "MAX",
                    _ => "SUM",
                }
                .to_string(),
                metrics,
                period_seconds: (alarms.period_minutes * 60) as i32,
                periods: alarms.periods as i32,
                threshold: setting.threshold,
                actions: actions.to_vec(),
                tags: tags.clone(),
            })
        })
        .collect()
}

/// The alarms of `alarms:` that would read more metrics than an alarm takes, for the config
/// check: (key, metrics).
pub fn oversized_alarms(config: &Config, target: &Target) -> Vec<(&'static str, usize)> {
    let Some(alarms) = &config.alarms else {
        return Vec::new();
    };
    let enabled = alarms.enabled();
    alarm_metrics(config, target)
        .into_iter()
        .filter(|(key, ..)| enabled.iter().any(|s| s.key == *key))
        .filter(|(.., metrics)| metrics.len() > MAX_ALARM_METRICS)
        .map(|(key, .., metrics)| (key, metrics.len()))
        .collect()
}

/// The dashboard, laid out for whoever is on call: what the clients see first (connections,
/// errors, deliveries), then why (functions, tables), then the alarms.
fn dashboard(config: &Config, target: &Target, alarm_arns: &[String]) -> Value {
    let names = config.names();
    let region = target.region.as_str();
    let api = target.api();
    let stage = config.stage.as_str();
    let (functions, posting) = function_names(config);
    let tables: Vec<String> = config.tables.keys().map(|t| names.table(t)).collect();
    let apigw = |metric: &str| json!(["AWS/ApiGateway", metric, "ApiId", api, "Stage", stage]);
    let per = |namespace: &str, metric: &str, dimension: &str, of: &[String]| -> Vec<Value> {
        of.iter()
            .map(|v| json!([namespace, metric, dimension, v]))
            .collect()
    };
    let graph = |title: &str, stat: &str, metrics: Vec<Value>| {
        json!({
            "type": "metric",
            "width": 12,
            "height": 6,
            "properties": {
                "title": title,
                "region": region,
                "view": "timeSeries",
                "stat": stat,
                "period": 60,
                "metrics": metrics,
            }
        })
    };
    let mut widgets = vec![json!({
        "type": "text",
        "width": 24,
        "height": 2,
        "properties": {
            "markdown": format!(
                "# {}\n{}: `wsctl deploy` writes this dashboard again, `wsctl destroy` deletes it. `wsctl logs --connection ID` traces one client.",
                names.api(),
                names.dashboard_mark()
            ),
        }
    })];
    widgets.push(graph(
        "Connections and messages",
        "Sum",
        vec![apigw("ConnectCount"), apigw("MessageCount")],
    ));
    widgets.push(graph(
        "API Gateway errors",
        "Sum",
        vec![
            apigw("IntegrationError"),
            apigw("ExecutionError"),
            apigw("ClientError"),
        ],
    ));
    widgets.push(graph(
        "Deliveries",
        "Sum",
        ["Delivered", "Gone", "FailedPosts", "ThrottledPosts"]
            .iter()
            .flat_map(|m| per(NAMESPACE, m, "Function", &posting))
            .collect(),
    ));
    widgets.push(graph(
        "Longest fan-out (ms)",
        "Maximum",
        per(NAMESPACE, "FanoutDuration", "Function", &posting),
    ));
    if let Some(auth) = &config.authorizer {
        let f = names.function(&auth.function);
        let mut metrics = vec![json!([NAMESPACE, "HandshakesAccepted", "Function", f])];
        metrics.extend(
            REFUSAL_REASONS
                .iter()
                .map(|r| json!([NAMESPACE, "HandshakesRefused", "Function", f, "Reason", r])),
        );
        widgets.push(graph("Handshakes", "Sum", metrics));
    }
    widgets.push(graph(
        "Function errors and throttles",
        "Sum",
        ["Errors", "Throttles"]
            .iter()
            .flat_map(|m| per("AWS/Lambda", m, "FunctionName", &functions))
            .collect(),
    ));
    widgets.push(graph(
        "Function duration (p99, ms)",
        "p99",
        per("AWS/Lambda", "Duration", "FunctionName", &functions),
    ));
    widgets.push(graph(
        "Concurrent executions",
        "Maximum",
        per(
            "AWS/Lambda",
            "ConcurrentExecutions",
            "FunctionName",
            &functions,
        ),
    ));
    if !tables.is_empty() {
        widgets.push(graph(
            "Table throttles",
            "Sum",
            ["ReadThrottleEvents", "WriteThrottleEvents"]
                .iter()
                .flat_map(|m| per("AWS/DynamoDB", m, "TableName", &tables))
                .collect(),
        ));
    }
    if !alarm_arns.is_empty() {
        widgets.push(json!({
            "type": "alarm",
            "width": 24,
            "height": 3,
            "properties": { "title": "Alarms", "alarms": alarm_arns }
        }));
    }
    json!({ "widgets": widgets })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn config(extra: &str) -> Config {
        let text = format!(
            "{}\n{extra}",
            include_str!("../../../../templates/wsctl.yaml")
        );
        Config::parse(std::path::Path::new("wsctl.yaml"), &text).unwrap()
    }

    #[test]
    fn alarms_sum_the_stacks_functions_and_tell_every_topic() {
        let config = config(
            "alarms: { topic: \"arn:aws:sns:eu-west-1:123456789012:oncall\", emails: [b@x.io, a@x.io, a@x.io], fanout_ms: null, failed_posts: 3 }\n",
        );
        let target = super::super::sizes::stand_in_target(&config);
        let specs = monitoring(&config, &target);
        let topic = specs
            .iter()
            .find_map(|s| match s {
                Spec::Topic(t) => Some(t),
                _ => None,
            })
            .unwrap();
        assert_eq!(topic.emails, ["a@x.io", "b@x.io"]);
        let alarms: BTreeMap<&str, &AlarmSpec> = specs
            .iter()
            .filter_map(|s| match s {
                Spec::Alarm(a) => Some((a.name.as_str(), a)),
                _ => None,
            })
            .collect();
        let prefix = config.names().prefix();
        assert!(!alarms.contains_key(format!("{prefix}fanout-ms").as_str()));
        let errors = alarms[format!("{prefix}function-errors").as_str()];
        assert_eq!(errors.metrics.len(), config.functions.len());
        assert_eq!(errors.combine, "SUM");
        assert_eq!(errors.actions.len(), 2, "{:?}", errors.actions);
        assert_eq!(
            alarms[format!("{prefix}failed-posts").as_str()].threshold,
            3.0
        );
        let Some(Spec::Dashboard(d)) = specs.last() else {
            panic!("no dashboard")
        };
        let widgets = d.body["widgets"].as_array().unwrap();
        assert!(
            widgets[0]["properties"]["markdown"]
                .as_str()
                .unwrap()
                .contains(&config.names().dashboard_mark())
        );
        assert_eq!(
            widgets.last().unwrap()["properties"]["alarms"]
                .as_array()
                .unwrap()
                .len(),
            alarms.len()
        );
    }

    #[test]
    fn no_section_no_alarms_and_the_dashboard_can_be_turned_off() {
        let c = config("");
        let specs = monitoring(&c, &super::super::sizes::stand_in_target(&c));
        assert!(matches!(specs.as_slice(), [Spec::Dashboard(_)]));
        let off = config("dashboard: false\n");
        assert!(monitoring(&off, &super::super::sizes::stand_in_target(&off)).is_empty());
    }
}
