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
    /// What carrying it out loses that no re-run brings back (connected clients, the URL,
    /// stored items): `deploy` asks before making such a change.
    pub drops: Option<&'static str>,
    /// The desired spec (absent for deletes).
    #[serde(skip)]
    pub after: Option<Spec>,
    /// What the change cannot do yet, and when it can ([`Spec::note`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Change {
    fn new(id: ResourceId, action: Action, after: Option<Spec>) -> Change {
        let drops = id.kind.drops(&id.name, &action);
        Change {
            id,
            action,
            drops,
            after,
            note: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    pub changes: Vec<Change>,
}

impl Plan {
    /// A plan in a command's JSON: the list of its changes.
    pub fn serialize_changes<S: serde::Serializer>(
        plan: &Plan,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(&plan.changes, serializer)
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn count(&self, symbol: &str) -> usize {
        self.changes
            .iter()
            .filter(|c| c.action.symbol() == symbol)
            .count()
    }

    /// The changes that lose something (see [`Change::drops`]).
    pub fn dropping(&self) -> Vec<&Change> {
        self.changes.iter().filter(|c| c.drops.is_some()).collect()
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
            let note = match action {
                Action::Create | Action::Update(_) => spec.note(current),
                _ => None,
            };
            let mut change = Change::new(id.clone(), action, Some((*spec).clone()));
            change.note = note;
            changes.push(change);
        }
    }
    for id in live.resources.keys() {
        if kinds.contains(&id.kind) && !wanted.contains_key(id) {
            changes.push(Change::new(id.clone(), Action::Delete, None));
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
            let marker = if change.drops.is_some() { " (!)" } else { "" };
            writeln!(f, "{:>3} {}{marker}", change.action.symbol(), change.id)?;
            if let Some(drops) = change.drops {
                writeln!(f, "      (!) {drops}")?;
            }
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
        )?;
        let dropping = self.dropping().len();
        if dropping > 0 {
            writeln!(
                f,
                "(!) {dropping} change(s) drop connected clients or stored data; `wsctl deploy` asks before making them (--yes skips the question)."
            )?;
        }
        Ok(())
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
            access_log: None,
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

    fn table(partition_key: &str) -> Spec {
        Spec::Table(TableSpec {
            name: "t".into(),
            partition_key: crate::config::KeyAttr {
                name: partition_key.into(),
                kind: "S".into(),
            },
            sort_key: None,
            indexes: Default::default(),
            ttl_attribute: None,
            ttl_changed: None,
            point_in_time_recovery: false,
            deletion_protection: false,
            building: Vec::new(),
            tags: Tags::new(),
        })
    }

    fn api(name: &str) -> Spec {
        Spec::Api(ApiSpec {
            name: name.into(),
            route_selection_expression: "e".into(),
            tags: Tags::new(),
        })
    }

    #[test]
    fn immutable_field_change_is_a_replace() {
        let plan = diff(&[table("id")], &live(&[table("pk")]), &Kind::ALL);
        assert!(
            matches!(&plan.changes[0].action, Action::Replace(f) if f[0].field == "partition_key")
        );
        assert_eq!(plan.count("-/+"), 1);
    }

    /// Throttling and tags change in place (UpdateStage, TagResource): the stage keeps its
    /// clients and URL, so nothing is marked.
    #[test]
    fn a_stage_setting_or_tag_change_is_an_update_that_drops_nothing() {
        let mut tagged = StageSpec {
            name: "dev".into(),
            auto_deploy: true,
            throttling_burst: 10,
            throttling_rate: 100.0,
            access_log: None,
            tags: Tags::new(),
        };
        tagged.tags.insert("team".into(), "b".into());
        let plan = diff(&[Spec::Stage(tagged)], &live(&[stage(20)]), &Kind::ALL);
        let Action::Update(fields) = &plan.changes[0].action else {
            panic!("{plan}")
        };
        let names: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(names, ["tags", "throttling_burst"]);
        assert!(plan.dropping().is_empty(), "{plan}");
        assert!(!plan.to_string().contains("(!)"), "{plan}");
    }

    /// An index whose keys change is deleted and built again: marked; a new index is not.
    #[test]
    fn changing_an_index_s_keys_is_marked_and_adding_one_is_not() {
        let with = |indexes: &[(&str, &str)]| {
            let Spec::Table(mut t) = table("pk") else {
                unreachable!()
            };
            for (name, key) in indexes {
                t.indexes.insert(
                    name.to_string(),
                    crate::aws::dynamodb::IndexSpec {
                        partition_key: crate::config::KeyAttr {
                            name: key.to_string(),
                            kind: "S".into(),
                        },
                        sort_key: None,
                    },
                );
            }
            Spec::Table(t)
        };
        let added = diff(
            &[with(&[("a", "x"), ("b", "y")])],
            &live(&[with(&[("a", "x")])]),
            &Kind::ALL,
        );
        assert_eq!(added.changes.len(), 1);
        assert!(added.dropping().is_empty(), "{added}");
        let rekeyed = diff(
            &[with(&[("a", "z")])],
            &live(&[with(&[("a", "x")])]),
            &Kind::ALL,
        );
        assert!(
            rekeyed.changes[0]
                .drops
                .is_some_and(|d| d.contains("rebuilds an index")),
            "{rekeyed}"
        );
        assert!(rekeyed.to_string().contains("~ table t (!)"), "{rekeyed}");
    }

    #[test]
    fn replacing_or_deleting_a_table_stage_or_api_is_marked_with_what_it_drops() {
        let plan = diff(
            &[table("id")],
            &live(&[
                table("pk"),
                stage(1),
                api("x"),
                api("x#abc"),
                route("a", "f"),
            ]),
            &Kind::ALL,
        );
        let marked: Vec<(String, Option<&str>)> = plan
            .changes
            .iter()
            .map(|c| (c.id.to_string(), c.drops))
            .collect();
        assert_eq!(
            marked,
            vec![
                ("table t".into(), Some("deletes the table's items")),
                (
                    "stage dev".into(),
                    Some("drops every connected client; the URL stops working")
                ),
                ("route a".into(), None),
                (
                    "api x".into(),
                    Some("drops every connected client; the URL stops working")
                ),
                ("api x#abc".into(), None),
            ]
        );
        let text = plan.to_string();
        assert!(
            text.contains("-/+ table t (!)\n      (!) deletes the table's items\n"),
            "{text}"
        );
        assert!(text.contains("  - stage dev (!)"), "{text}");
        assert!(text.contains("  - api x#abc\n"), "{text}");
        assert!(
            text.contains("(!) 3 change(s) drop connected clients or stored data"),
            "{text}"
        );
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(json["changes"][0]["drops"], "deletes the table's items");
        assert_eq!(json["changes"][2]["drops"], Value::Null);
    }

    #[test]
    fn numbers_compare_by_value_and_kinds_filter() {
        let mut rate = StageSpec {
            name: "dev".into(),
            auto_deploy: true,
            throttling_burst: 1,
            throttling_rate: 1000.0,
            access_log: None,
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
        assert!(text.contains("  ~ stage dev\n"), "{text}");
        assert!(text.contains("throttling_burst: 1 -> 2"), "{text}");
        assert!(
            text.contains("1 to create, 1 to update, 0 to replace, 0 to delete"),
            "{text}"
        );
    }
}
