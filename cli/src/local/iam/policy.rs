//! The policy language as evaluation needs it: statements, their effect, action and resource
//! patterns, and the condition operators.

use serde_json::Value;

use super::*;

/// One policy statement, as evaluation needs it.
#[derive(Debug)]
pub(super) struct Statement {
    pub(super) effect: Effect,
    /// All must hold for the statement to apply.
    pub(super) conditions: Vec<Condition>,
    /// Lower-cased: action names are case-insensitive; resource ARNs are not.
    pub(super) actions: Patterns,
    pub(super) resources: Patterns,
}

/// One key of one operator of a `Condition` block.
#[derive(Debug)]
pub(super) struct Condition {
    pub(super) op: Operator,
    /// `…IfExists`: a key absent from the context passes.
    pub(super) if_exists: bool,
    pub(super) set: SetQualifier,
    /// Lower-cased: condition key names are case-insensitive.
    pub(super) key: String,
    pub(super) values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Operator {
    StringEquals,
    StringEqualsIgnoreCase,
    StringLike,
    ArnLike,
    Bool,
    Null,
    /// The negation of the positive operator inside.
    Not(Positive),
    Unknown,
}

/// The operators a `Not` form negates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Positive {
    StringEquals,
    StringEqualsIgnoreCase,
    StringLike,
    ArnLike,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum SetQualifier {
    Single,
    ForAnyValue,
    ForAllValues,
}

#[derive(Debug, PartialEq)]
pub(super) enum Effect {
    Allow,
    Deny,
    /// Neither: the statement has no effect.
    Other,
}

/// `Key` (any pattern matches), `NotKey` (none does), or neither (nothing matches).
#[derive(Debug)]
pub(super) enum Patterns {
    Any(Vec<String>),
    NoneOf(Vec<String>),
    Absent,
}

/// One policy set's answer: a matching `Deny` whose conditions hold (or cannot be read), else
/// a matching `Allow` whose conditions hold.
pub(super) fn evaluate(
    statements: &[Statement],
    action: &str,
    resource: &str,
    context: &[(String, &str)],
) -> Decision {
    let mut allowed = false;
    for statement in statements {
        if !(statement.actions.cover(action) && statement.resources.cover(resource)) {
            continue;
        }
        match statement.effect {
            Effect::Deny
                if statement
                    .conditions
                    .iter()
                    .all(|c| c.holds(context) != Some(false)) =>
            {
                return Decision::ExplicitDeny;
            }
            Effect::Allow
                if statement
                    .conditions
                    .iter()
                    .all(|c| c.holds(context) == Some(true)) =>
            {
                allowed = true
            }
            _ => {}
        }
    }
    if allowed {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

impl Condition {
    /// The `Condition` block of a statement: operators, each with keys, each with values;
    /// `None` for a block that is not an object of objects.
    fn parse(block: &Value) -> Option<Vec<Condition>> {
        let mut out = Vec::new();
        for (operator, keys) in block.as_object()? {
            let (set, name) = match operator.split_once(':') {
                Some(("ForAnyValue", rest)) => (SetQualifier::ForAnyValue, rest),
                Some(("ForAllValues", rest)) => (SetQualifier::ForAllValues, rest),
                Some(_) => (SetQualifier::Single, ""),
                None => (SetQualifier::Single, operator.as_str()),
            };
            let (name, if_exists) = match name.strip_suffix("IfExists") {
                Some(base) if name != "Null" => (base, true),
                _ => (name, false),
            };
            let op = match name {
                "StringEquals" => Operator::StringEquals,
                "StringEqualsIgnoreCase" => Operator::StringEqualsIgnoreCase,
                "StringLike" => Operator::StringLike,
                "ArnEquals" | "ArnLike" => Operator::ArnLike,
                "StringNotEquals" => Operator::Not(Positive::StringEquals),
                "StringNotEqualsIgnoreCase" => Operator::Not(Positive::StringEqualsIgnoreCase),
                "StringNotLike" => Operator::Not(Positive::StringLike),
                "ArnNotEquals" | "ArnNotLike" => Operator::Not(Positive::ArnLike),
                "Bool" => Operator::Bool,
                "Null" => Operator::Null,
                _ => Operator::Unknown,
            };
            for (key, values) in keys.as_object()? {
                let scalar = |v: &Value| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Bool(b) => Some(b.to_string()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                };
                let values = match values {
                    Value::Array(list) => list.iter().filter_map(scalar).collect(),
                    one => scalar(one).into_iter().collect(),
                };
                out.push(Condition {
                    op,
                    if_exists,
                    set,
                    key: key.to_ascii_lowercase(),
                    values,
                });
            }
        }
        Some(out)
    }

    /// Whether the condition holds for `context`; `None` when the operator is unknown.
    fn holds(&self, context: &[(String, &str)]) -> Option<bool> {
        let present: Vec<&str> = context
            .iter()
            .filter(|(k, _)| *k == self.key)
            .map(|(_, v)| *v)
            .collect();
        let (positive, negated) = match self.op {
            Operator::Unknown => return None,
            Operator::Null => {
                let wants_absent = self.values.iter().any(|v| v == "true");
                return Some(present.is_empty() == wants_absent);
            }
            Operator::Not(p) => (p, true),
            Operator::StringEquals => (Positive::StringEquals, false),
            Operator::StringEqualsIgnoreCase => (Positive::StringEqualsIgnoreCase, false),
            Operator::StringLike => (Positive::StringLike, false),
            Operator::ArnLike => (Positive::ArnLike, false),
            Operator::Bool => (Positive::StringEqualsIgnoreCase, false),
        };
        if present.is_empty() {
            return Some(match self.set {
                SetQualifier::ForAllValues => true,
                SetQualifier::ForAnyValue => false,
                SetQualifier::Single => self.if_exists || negated,
            });
        }
        let matches = |value: &str| {
            self.values.iter().any(|wanted| match positive {
                Positive::StringEquals => wanted == value,
                Positive::StringEqualsIgnoreCase => wanted.eq_ignore_ascii_case(value),
                Positive::StringLike | Positive::ArnLike => glob(wanted, value),
            })
        };
        let hit = |value: &&str| matches(value) != negated;
        Some(match self.set {
            SetQualifier::ForAllValues => present.iter().all(hit),
            SetQualifier::ForAnyValue | SetQualifier::Single => present.iter().any(hit),
        })
    }
}

/// A policy's statements: `Statement` is one object or a list of them.
pub(super) fn statements(policy: &Value) -> Vec<Statement> {
    let list = match policy.get("Statement") {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => Vec::new(),
    };
    list.into_iter()
        .map(|s| Statement {
            effect: match s.get("Effect").and_then(Value::as_str) {
                Some("Allow") => Effect::Allow,
                Some("Deny") => Effect::Deny,
                _ => Effect::Other,
            },
            conditions: match s.get("Condition") {
                None => Vec::new(),
                Some(block) => Condition::parse(block).unwrap_or_else(|| {
                    vec![Condition {
                        op: Operator::Unknown,
                        if_exists: false,
                        set: SetQualifier::Single,
                        key: String::new(),
                        values: Vec::new(),
                    }]
                }),
            },
            actions: Patterns::of(s, "Action", |p| p.to_ascii_lowercase()),
            resources: Patterns::of(s, "Resource", str::to_string),
        })
        .collect()
}

impl Patterns {
    fn of(statement: &Value, key: &str, norm: fn(&str) -> String) -> Patterns {
        // A string or a list of strings; anything else matches nothing.
        let list = |v: &Value| match v {
            Value::String(s) => vec![norm(s)],
            Value::Array(list) => list.iter().filter_map(Value::as_str).map(norm).collect(),
            _ => Vec::new(),
        };
        match (
            statement.get(key),
            statement.get(format!("Not{key}").as_str()),
        ) {
            (Some(v), _) => Patterns::Any(list(v)),
            (None, Some(v)) => Patterns::NoneOf(list(v)),
            (None, None) => Patterns::Absent,
        }
    }

    fn cover(&self, text: &str) -> bool {
        match self {
            Patterns::Any(ps) => ps.iter().any(|p| glob(p, text)),
            Patterns::NoneOf(ps) => !ps.iter().any(|p| glob(p, text)),
            Patterns::Absent => false,
        }
    }
}

/// IAM's wildcards: `*` any run of characters (`/` and `:` included), `?` any one. Walks the
/// bytes, stepping whole characters where a wildcard takes one.
pub(super) fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let width = |i: usize| match t[i] {
        b if b < 0x80 => 1,
        b if b >= 0xF0 => 4,
        b if b >= 0xE0 => 3,
        _ => 2,
    };
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == b'?' {
            pi += 1;
            ti += width(ti);
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            let next = st + width(st);
            pi = sp + 1;
            ti = next;
            star = Some((sp, next));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}
