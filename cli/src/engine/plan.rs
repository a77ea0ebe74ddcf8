//! The plan: a pure comparison of desired specs with what is live, field by field.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::Value;

use super::model::{Kind, LiveState, ResourceId, Spec};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub before: Value,
    pub after: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "action", content = "fields")]
pub enum Action {
    Create,
    Update(Vec<FieldChange>),
    Replace(Vec<FieldChange>),
    Delete,
}

impl Action {
    pub fn symbol(&self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update(_) => "~",
            Action::Replace(_) => "-/+",
            Action::Delete => "-",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    #[serde(flatten)]
    pub id: ResourceId,
    #[serde(flatten)]
    pub action: Action,
    /// The desired spec (absent for deletes).
    #[serde(skip)]
    pub after: Option<Spec>,
    /// What the change cannot do yet, and when it can ([`Spec::note`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    pub changes: Vec<Change>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn count(&self, symbol: &str) -> usize {
        self.changes
            .iter()
            .filter(|c| c.action.symbol() == symbol)
            .count()
    }
}

/// Compares `desired` with `live`. Resources live but not desired are deleted; only kinds in
/// `kinds` are considered, so apply can plan one wave at a time with fresh ids.
pub fn diff(desired: &[Spec], live: &LiveState, kinds: &[Kind]) -> Plan {
    let wanted: BTreeMap<ResourceId, &Spec> = desired
        .iter()
        .filter(|s| kinds.contains(&s.kind()))
        .map(|s| (s.id(), s))
        .collect();
    let mut changes = Vec::new();
    for (id, spec) in &wanted {
        let current = live.resources.get(id).map(|l| &l.spec);
        let action = match current {
            None => Some(Action::Create),
            Some(current) => compare(spec, current),
        };
        if let Some(action) = action {
            let note = current
                .filter(|_| matches!(action, Action::Update(_)))
                .and_then(|c| spec.note(c));
            changes.push(Change {
                id: id.clone(),
                action,
                after: Some((*spec).clone()),
                note,
            });
        }
    }
    for id in live.resources.keys() {
        if kinds.contains(&id.kind) && !wanted.contains_key(id) {
            changes.push(Change {
                id: id.clone(),
                action: Action::Delete,
                after: None,
                note: None,
            });
        }
    }
    changes.sort_by(|a, b| order(a).cmp(&order(b)));
    Plan { changes }
}

/// Creates and updates in dependency order, then deletes in reverse dependency order.
fn order(c: &Change) -> (bool, i32, &ResourceId) {
    let deleting = c.action == Action::Delete;
    let rank = c.id.kind as i32;
    (deleting, if deleting { -rank } else { rank }, &c.id)
}

fn compare(desired: &Spec, current: &Spec) -> Option<Action> {
    let (want, have) = (desired.fields(), current.fields());
    let mut fields = Vec::new();
    for (field, after) in &want {
        let before = have.get(field).cloned().unwrap_or(Value::Null);
        if !same(&before, after) {
            fields.push(FieldChange {
                field: field.clone(),
                before,
                after: after.clone(),
            });
        }
    }
    if fields.is_empty() {
        return None;
    }
    let immutable = desired.kind().immutable_fields();
    if fields.iter().any(|f| immutable.contains(&f.field.as_str())) {
        Some(Action::Replace(fields))
    } else {
        Some(Action::Update(fields))
    }
}

/// Equality that treats numbers by value (`1000` and `1000.0` are one throttling rate).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.changes.is_empty() {
            return writeln!(f, "No changes: the stack matches the config.");
        }
        for change in &self.changes {
            writeln!(f, "{:>3} {}", change.action.symbol(), change.id)?;
            if let Action::Update(fields) | Action::Replace(fields) = &change.action {
                for field in fields {
                    writeln!(
                        f,
                        "      {}: {} -> {}",
                        field.field,
                        brief(&field.before),
                        brief(&field.after)
                    )?;
                }
            }
            if let Some(note) = &change.note {
                writeln!(f, "      note: {note}")?;
            }
        }
        writeln!(
            f,
            "\nPlan: {} to create, {} to update, {} to replace, {} to delete.",
            self.count("+"),
            self.count("~"),
            self.count("-/+"),
            self.count("-")
        )
    }
}

/// A value short enough for one line; policies and environments are summarised.
fn brief(v: &Value) -> String {
    let text = match v {
        Value::Null => "(none)".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.chars().count() > 100 {
        format!("{}…", text.chars().take(99).collect::<String>())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model::*;

    fn route(key: &str, function: &str) -> Spec {
        Spec::Route(RouteSpec {
            route_key: key.into(),
            function: Some(function.into()),
            authorizer: None,
        })
    }

    fn stage(burst: i32) -> Spec {
        Spec::Stage(StageSpec {
            name: "dev".into(),
            auto_deploy: true,
            throttling_burst: burst,
            throttling_rate: 100.0,
            tags: Tags::new(),
        })
    }

    fn live(specs: &[Spec]) -> LiveState {
        LiveState {
            resources: specs
                .iter()
                .map(|s| {
                    (
                        s.id(),
                        Live {
                            spec: s.clone(),
                            physical_id: None,
                        },
                    )
                })
                .collect(),
            foreign: vec![],
        }
    }

    #[test]
    fn identical_state_is_an_empty_plan() {
        let specs = vec![route("$default", "message"), stage(10)];
        assert!(diff(&specs, &live(&specs), &Kind::ALL).is_empty());
    }

    #[test]
    fn missing_changed_and_extra_resources() {
        let desired = vec![
            route("$default", "message"),
            route("join", "message"),
            stage(10),
        ];
        let current = live(&[
            route("$default", "other"),
            route("old", "message"),
            stage(10),
        ]);
        let plan = diff(&desired, &current, &Kind::ALL);
        let summary: Vec<(String, &str)> = plan
            .changes
            .iter()
            .map(|c| (c.id.name.clone(), c.action.symbol()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("$default".into(), "~"),
                ("join".into(), "+"),
                ("old".into(), "-")
            ]
        );
        let Action::Update(fields) = &plan.changes[0].action else {
            panic!()
        };
        assert_eq!(fields.len(), 1);
        assert_eq!(fields[0].field, "function");
        assert_eq!(fields[0].before, Value::from("other"));
    }

    #[test]
    fn immutable_field_change_is_a_replace() {
        let plan = diff(&[stage(20)], &live(&[stage(10)]), &Kind::ALL);
        assert!(
            matches!(&plan.changes[0].action, Action::Replace(f) if f[0].field == "throttling_burst")
        );
        assert_eq!(plan.count("-/+"), 1);
    }

    #[test]
    fn numbers_compare_by_value_and_kinds_filter() {
        let mut rate = StageSpec {
            name: "dev".into(),
            auto_deploy: true,
            throttling_burst: 1,
            throttling_rate: 1000.0,
            tags: Tags::new(),
        };
        let desired = vec![Spec::Stage(rate.clone()), route("a", "f")];
        rate.throttling_rate = 1000.0;
        let plan = diff(&desired, &live(&[Spec::Stage(rate)]), &[Kind::Stage]);
        assert!(plan.is_empty(), "{plan}");
    }

    #[test]
    fn deletes_come_last_in_reverse_dependency_order() {
        let current = live(&[
            stage(1),
            route("a", "f"),
            Spec::Api(ApiSpec {
                name: "x".into(),
                route_selection_expression: "e".into(),
                tags: Tags::new(),
            }),
        ]);
        let desired = vec![Spec::Secret(SecretSpec {
            name: "s".into(),
            tags: Tags::new(),
        })];
        let plan = diff(&desired, &current, &Kind::ALL);
        let kinds: Vec<Kind> = plan.changes.iter().map(|c| c.id.kind).collect();
        assert_eq!(
            kinds,
            vec![Kind::Secret, Kind::Stage, Kind::Route, Kind::Api]
        );
    }

    #[test]
    fn plan_renders_symbols_and_fields() {
        let plan = diff(
            &[route("join", "m"), stage(2)],
            &live(&[stage(1)]),
            &Kind::ALL,
        );
        let text = plan.to_string();
        assert!(text.contains("  + route join"), "{text}");
        assert!(text.contains("-/+ stage dev"), "{text}");
        assert!(text.contains("throttling_burst: 1 -> 2"), "{text}");
        assert!(
            text.contains("1 to create, 0 to update, 1 to replace, 0 to delete"),
            "{text}"
        );
    }
}
