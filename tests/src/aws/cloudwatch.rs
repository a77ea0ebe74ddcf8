//! What CloudWatch checks of alarms and dashboards and moto does not: moto keeps any JSON as a
//! dashboard and any alarm it is given.
//!
//! - PutDashboard refuses a body that is not a dashboard with `InvalidParameterInput` and its
//!   `DashboardValidationMessages` ("PutDashboard", CloudWatch API Reference; "Dashboard Body
//!   Structure and Syntax": every widget has a `type`, `width` 1-24 and `height` 1-1000; a
//!   metric widget's `metrics` are arrays of namespace, metric name and dimension name/value
//!   pairs, with an optional rendering object last, and it names its `region`; a text widget
//!   has `markdown`; an alarm widget lists `alarms`). A dashboard has at most 500 widgets
//!   ("CloudWatch service quotas").
//! - PutMetricAlarm refuses with `ValidationError` an alarm of more than ten metrics besides
//!   its expressions, of more than five actions a state, a description over 1,024 characters,
//!   or a period that is not 10, 30 or a multiple of 60 seconds ("PutMetricAlarm").

use serde_json::{Value, json};

use crate::proxy::{Behaviour, Call, Exchange, Reply};

pub struct Checks;

impl Behaviour for Checks {
    fn answer(&self, call: &Call, req: &Exchange) -> Option<Reply> {
        if call.service != "monitoring" {
            return None;
        }
        let input = req.json();
        let problems = match call.operation.as_str() {
            "PutDashboard" => dashboard_problems(&input),
            "PutMetricAlarm" => alarm_problems(&input),
            _ => return None,
        };
        if problems.is_empty() {
            return None;
        }
        Some(match call.operation.as_str() {
            "PutDashboard" => Reply::cbor_error(
                400,
                "InvalidParameterInput",
                "The field DashboardBody must be a valid JSON object",
                json!({"dashboardValidationMessages": problems.iter().map(|(path, m)| json!({"DataPath": path, "Message": m})).collect::<Vec<_>>()}),
            ),
            _ => Reply::cbor_error(
                400,
                "ValidationError",
                &problems
                    .iter()
                    .map(|(path, m)| format!("{path}: {m}"))
                    .collect::<Vec<_>>()
                    .join("; "),
                json!({}),
            ),
        })
    }
}

fn dashboard_problems(input: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(body) = input["DashboardBody"]
        .as_str()
        .and_then(|b| serde_json::from_str::<Value>(b).ok())
    else {
        return vec![("/".into(), "Should be a JSON object".into())];
    };
    let Some(widgets) = body["widgets"].as_array() else {
        return vec![("/widgets".into(), "Should be an array".into())];
    };
    if widgets.len() > 500 {
        out.push(("/widgets".into(), "Should have at most 500 items".into()));
    }
    for (i, w) in widgets.iter().enumerate() {
        let at = |field: &str| format!("/widgets/{i}/{field}");
        let size = |field: &str, max: i64| w[field].as_i64().is_none_or(|v| (1..=max).contains(&v));
        if !size("width", 24) {
            out.push((at("width"), "Should be between 1 and 24".into()));
        }
        if !size("height", 1000) {
            out.push((at("height"), "Should be between 1 and 1000".into()));
        }
        let p = &w["properties"];
        match w["type"].as_str() {
            Some("text") if p["markdown"].is_string() => {}
            Some("text") => out.push((at("properties/markdown"), "Should be a string".into())),
            Some("alarm") if p["alarms"].as_array().is_some_and(|a| !a.is_empty()) => {}
            Some("alarm") => out.push((
                at("properties/alarms"),
                "Should be a non-empty array".into(),
            )),
            Some("metric") => {
                if !p["region"].is_string() {
                    out.push((at("properties/region"), "Should be present".into()));
                }
                let Some(metrics) = p["metrics"].as_array() else {
                    out.push((at("properties/metrics"), "Should be an array".into()));
                    continue;
                };
                for (j, m) in metrics.iter().enumerate() {
                    let parts = m.as_array().cloned().unwrap_or_default();
                    let strings = parts.iter().take_while(|v| v.is_string()).count();
                    let rest_ok =
                        parts[strings..].iter().all(Value::is_object) && parts.len() - strings <= 1;
                    if strings < 2 || strings % 2 != 0 || !rest_ok {
                        out.push((
                            at(&format!("properties/metrics/{j}")),
                            "Should be [namespace, metric, dimension name, value, ..., {options}]"
                                .into(),
                        ));
                    }
                }
            }
            Some("log" | "explorer" | "custom") => {}
            _ => out.push((
                at("type"),
                "Should be one of metric, text, log, alarm, explorer, custom".into(),
            )),
        }
    }
    out
}

fn alarm_problems(input: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let queries = input["Metrics"].as_array().cloned().unwrap_or_default();
    let metrics = queries
        .iter()
        .filter(|q| q["MetricStat"].is_object())
        .count();
    if metrics > 10 {
        out.push((
            "Metrics".into(),
            format!("{metrics} metrics; at most 10 in one alarm"),
        ));
    }
    for state in ["AlarmActions", "OKActions", "InsufficientDataActions"] {
        if input[state].as_array().is_some_and(|a| a.len() > 5) {
            out.push((state.into(), "at most 5 actions".into()));
        }
    }
    if input["AlarmDescription"]
        .as_str()
        .is_some_and(|d| d.chars().count() > 1024)
    {
        out.push(("AlarmDescription".into(), "at most 1024 characters".into()));
    }
    for q in &queries {
        if let Some(period) = q["MetricStat"]["Period"].as_i64()
            && !(period == 10 || period == 30 || (period > 0 && period % 60 == 0))
        {
            out.push((
                "Metrics.MetricStat.Period".into(),
                format!("{period} is not 10, 30 or a multiple of 60"),
            ));
        }
    }
    out
}
