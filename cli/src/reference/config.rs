//! The `wsctl.yaml` reference, from the file's JSON Schema (which is derived from the types
//! wsctl parses the file into): every key, its type, whether it is required, its default,
//! its bounds and its description.

use serde_json::{Map, Value};

use super::{generated_note, markdown_text};
use crate::config;

pub fn page() -> String {
    let schema: Value = serde_json::from_str(&config::json_schema()).expect("the schema is JSON");
    let defs = schema["$defs"].as_object().cloned().unwrap_or_default();
    let mut s = generated_note("the JSON Schema of wsctl.yaml (the types in cli/src/config/)");
    s.push_str("\n# wsctl.yaml\n\n");
    s.push_str(&super::notes("reference/notes/config.md"));
    s.push_str("\n## Every key\n");
    let required = required(&schema);
    for (key, prop) in schema["properties"].as_object().into_iter().flatten() {
        s.push_str(&format!("\n### `{key}`\n\n"));
        s.push_str(&describe(prop, &defs, required.contains(&key.as_str())));
        s.push('\n');
        let mut items = Vec::new();
        children(key, prop, &defs, &mut items);
        if !items.is_empty() {
            s.push('\n');
            for item in items {
                s.push_str(&item);
            }
        }
    }
    s
}

fn required(schema: &Value) -> Vec<&str> {
    schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// The schema a `$ref`, or an optional `anyOf [X, null]`, stands for.
fn resolve<'a>(schema: &'a Value, defs: &'a Map<String, Value>) -> &'a Value {
    if let Some(r) = schema["$ref"].as_str() {
        return resolve(&defs[r.trim_start_matches("#/$defs/")], defs);
    }
    if let Some(any) = schema["anyOf"].as_array() {
        let real: Vec<&Value> = any.iter().filter(|s| s["type"] != "null").collect();
        if real.len() == 1 {
            return resolve(real[0], defs);
        }
    }
    schema
}

/// The sub-keys of an object, and of the values of a map, as list items named by their path.
fn children(path: &str, schema: &Value, defs: &Map<String, Value>, out: &mut Vec<String>) {
    let target = resolve(schema, defs);
    if let Some(props) = target["properties"].as_object() {
        let required = required(target);
        for (key, prop) in props {
            let inner = format!("{path}.{key}");
            let text = describe(prop, defs, required.contains(&key.as_str()));
            out.push(format!("- **`{inner}`**: {}\n", indent(&text)));
            children(&inner, prop, defs, out);
        }
    } else if target["additionalProperties"].is_object() {
        let values = &target["additionalProperties"];
        let inner = format!("{path}.<name>");
        if resolve(values, defs)["properties"].is_object() {
            children(&inner, values, defs, out);
        }
    }
}

/// What a key is: its description, then a line of facts.
fn describe(schema: &Value, defs: &Map<String, Value>, required: bool) -> String {
    let target = resolve(schema, defs);
    let description = schema["description"]
        .as_str()
        .or(target["description"].as_str())
        .map(|d| markdown_text(&unwrap_lines(d)))
        .unwrap_or_default();
    let mut facts = vec![kind(schema, defs)];
    facts.push(if required { "required" } else { "optional" }.into());
    if let Some(d) = schema.get("default").filter(|d| !d.is_null()) {
        facts.push(format!("default `{}`", compact(d)));
    }
    match (&target["minLength"], &target["maxLength"]) {
        (Value::Null, Value::Null) => {}
        (min, Value::Null) => facts.push(format!("at least {min} characters")),
        (Value::Null, max) => facts.push(format!("at most {max} characters")),
        (min, max) => facts.push(format!("{min}–{max} characters")),
    }
    let minimum = target["minimum"].as_f64().filter(|m| *m != 0.0);
    match (minimum, target["maximum"].as_f64()) {
        (None, None) => {}
        (Some(min), None) => facts.push(format!("at least {}", number(min))),
        (None, Some(max)) => facts.push(format!("at most {}", number(max))),
        (Some(min), Some(max)) => facts.push(format!("{}–{}", number(min), number(max))),
    }
    if let Some(pattern) = target["pattern"].as_str() {
        facts.push(format!("matching `{pattern}`"));
    }
    let facts = format!("*{}*", facts.join("; "));
    if description.is_empty() {
        facts
    } else {
        format!("{description} {facts}")
    }
}

/// A type in words: `string`, `map of name → …`, one of the allowed values.
fn kind(schema: &Value, defs: &Map<String, Value>) -> String {
    let target = resolve(schema, defs);
    if let Some(values) = allowed(target) {
        return format!("one of {values}");
    }
    match &target["type"] {
        Value::String(t) if t == "object" => match &target["additionalProperties"] {
            Value::Object(_) => format!(
                "map of name → {}",
                kind(&target["additionalProperties"], defs)
            ),
            _ => "object".into(),
        },
        Value::String(t) if t == "array" => format!("list of {}", kind(&target["items"], defs)),
        Value::String(t) => t.clone(),
        // `null` is named when it means something: a key whose default is a value, which
        // `null` turns off.
        Value::Array(types) => types
            .iter()
            .filter(|t| *t != "null" || schema.get("default").is_some_and(|d| !d.is_null()))
            .filter_map(Value::as_str)
            .map(|t| if t == "null" { "`null` (off)" } else { t })
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "any".into(),
    }
}

/// The values an enum (or a `oneOf` of enums and constants) allows.
fn allowed(schema: &Value) -> Option<String> {
    let mut values = Vec::new();
    let mut add = |s: &Value| {
        for v in s["enum"].as_array().into_iter().flatten() {
            values.push(format!("`{}`", compact(v)));
        }
        if !s["const"].is_null() {
            values.push(format!("`{}`", compact(&s["const"])));
        }
    };
    add(schema);
    for s in schema["oneOf"].as_array().into_iter().flatten() {
        add(s);
    }
    (!values.is_empty()).then(|| values.join(", "))
}

fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.as_f64().map(number).unwrap_or_else(|| n.to_string()),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{k}: {}", compact(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

/// A number as a person writes it: `10`, not `10.0`.
fn number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

/// Doc comments wrap at 100 columns; Markdown paragraphs need no hard breaks.
fn unwrap_lines(text: &str) -> String {
    text.split("\n\n")
        .map(|p| p.split('\n').collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn indent(text: &str) -> String {
    text.replace("\n\n", "\n\n  ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_on_the_page_with_its_type_and_default() {
        let page = page();
        assert!(page.contains("### `stack`"), "{page}");
        assert!(
            page.contains("*string; required; 1–20 characters; matching `^[a-z][a-z0-9-]*$`*"),
            "{page}"
        );
        assert!(
            page.contains("before the alarm goes off. *integer; optional; default `1`*"),
            "{page}"
        );
        assert!(
            page.contains("number or `null` (off); optional; default `10`"),
            "{page}"
        );
        assert!(page.contains("**`functions.<name>.memory`**"), "{page}");
        assert!(page.contains("**`limits.frames.per_second`**"), "{page}");
        assert!(page.contains("one of `arm64`, `x86_64`, `host`"), "{page}");
        assert!(
            page.contains("map of name → one of `read`, `write`, `read-write`"),
            "{page}"
        );
    }
}
