use super::*;

// ---- What the bundled functions need of the stack ----------------------------------------
//
// Their code reads fixed key and index names (`wsctl_functions::layout`), so tables that differ
// would deploy and then fail on every call; a missing grant would leave out a variable the
// function needs, and it would fail at cold start. Both are refused here, before any AWS call.

/// The crate directories of the functions wsctl ships, as `wsctl init`'s template names them
/// (relative to wsctl.yaml, or absolute once loaded).
const BUNDLED_PUBSUB: &str = "functions/pubsub";
const BUNDLED_AUTHORIZER: &str = "functions/authorizer";

/// `name` or `name:N`, as wsctl.yaml writes a key.
fn key_spec(a: &layout::Attr) -> String {
    match a.kind {
        layout::AttrType::S => a.name.to_string(),
        kind => format!("{}:{}", a.name, kind.code()),
    }
}

/// What a key field must be: `field` is `partition_key` or `sort_key`.
fn key_need(field: &str, a: &layout::Attr) -> String {
    format!(
        "the bundled functions need \"{}\" ({}); write `{field}: {}`",
        a.name,
        a.kind.code(),
        key_spec(a)
    )
}

/// Whether the configured key `spec` (already checked on its own) is `want`.
fn key_is(spec: Option<&String>, want: Option<&layout::Attr>) -> bool {
    let have = spec.and_then(|s| KeyAttr::parse(s).ok());
    match (have, want) {
        (None, None) => true,
        (Some(h), Some(w)) => h.name == w.name && h.kind == w.kind.code(),
        _ => false,
    }
}

impl FunctionConfig {
    fn is_bundled(&self, dir: &str) -> bool {
        self.crate_path.ends_with(dir)
    }
}

impl Config {
    pub(super) fn bundled_function_problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut bad = |field: String, message: String| out.push(Problem { field, message });
        let mut used: Vec<&layout::Table> = Vec::new();
        for (name, f) in &self.functions {
            let at = format!("functions.{name}");
            if f.is_bundled(BUNDLED_AUTHORIZER) && !f.read_secret {
                bad(
                    format!("{at}.read_secret"),
                    "the bundled authorizer reads the token secret from SSM; set `read_secret: true`"
                        .into(),
                );
            }
            if f.is_bundled(BUNDLED_AUTHORIZER) {
                used.push(&layout::COUNTERS);
                if !f.tables.contains_key(layout::COUNTERS.name) {
                    bad(
                        format!("{at}.tables.{}", layout::COUNTERS.name),
                        format!(
                            "the bundled authorizer reads revocations (`wsctl revoke`) from it; add `tables: {{ {}: read }}`",
                            layout::COUNTERS.name
                        ),
                    );
                }
            }
            if !f.is_bundled(BUNDLED_PUBSUB) {
                continue;
            }
            let handlers = || list(layout::ROLES.iter().map(|r| r.handler));
            let Some(role) = f.handler.as_deref().and_then(layout::role) else {
                bad(
                    format!("{at}.handler"),
                    format!(
                        "the bundled {BUNDLED_PUBSUB} binary serves one of {}; set `handler:` to the one this function is",
                        handlers()
                    ),
                );
                continue;
            };
            for (table, need) in role.tables {
                used.push(*table);
                let enough = matches!(
                    (f.tables.get(table.name), need),
                    (Some(Access::ReadWrite), _)
                        | (Some(Access::Read), layout::Use::Read)
                        | (Some(Access::Write), layout::Use::Write)
                );
                if !enough {
                    bad(
                        format!("{at}.tables.{}", table.name),
                        format!(
                            "the bundled `{}` function needs `{}: {}`",
                            role.handler,
                            table.name,
                            need.grant()
                        ),
                    );
                }
            }
            if role.invokes_publish && !f.invoke.iter().any(|i| i == layout::PUBLISH_FUNCTION) {
                bad(
                    format!("{at}.invoke"),
                    format!(
                        "the bundled `{}` function hands fan-out to the `{p}` function; add `invoke: [{p}]`",
                        role.handler,
                        p = layout::PUBLISH_FUNCTION
                    ),
                );
            }
            if role.manages_connections && !f.manage_connections {
                bad(
                    format!("{at}.manage_connections"),
                    format!(
                        "the bundled `{}` function posts to connections; set `manage_connections: true`",
                        role.handler
                    ),
                );
            }
        }
        used.sort_by_key(|t| t.name);
        used.dedup();
        for want in used {
            let at = format!("tables.{}", want.name);
            let Some(t) = self.tables.get(want.name) else {
                bad(
                    at,
                    format!(
                        "the bundled functions need this table; declare `{}: {{ partition_key: {}{} }}`",
                        want.name,
                        key_spec(&want.partition_key),
                        want.sort_key
                            .map(|k| format!(", sort_key: {}", key_spec(&k)))
                            .unwrap_or_default()
                    ),
                );
                continue;
            };
            if !key_is(Some(&t.partition_key), Some(&want.partition_key)) {
                bad(
                    format!("{at}.partition_key"),
                    key_need("partition_key", &want.partition_key),
                );
            }
            if !key_is(t.sort_key.as_ref(), want.sort_key.as_ref()) {
                bad(
                    format!("{at}.sort_key"),
                    match &want.sort_key {
                        Some(k) => key_need("sort_key", k),
                        None => "the bundled functions read this table by its partition key alone; remove `sort_key`".into(),
                    },
                );
            }
            for index in want.indexes {
                let at = format!("{at}.indexes.{}", index.name);
                let Some(i) = t.indexes.get(index.name) else {
                    bad(
                        at,
                        format!(
                            "the bundled functions query this index; add `{}: {{ partition_key: {}{} }}` under `indexes`",
                            index.name,
                            key_spec(&index.partition_key),
                            index
                                .sort_key
                                .map(|k| format!(", sort_key: {}", key_spec(&k)))
                                .unwrap_or_default()
                        ),
                    );
                    continue;
                };
                if !key_is(Some(&i.partition_key), Some(&index.partition_key)) {
                    bad(
                        format!("{at}.partition_key"),
                        key_need("partition_key", &index.partition_key),
                    );
                }
                if !key_is(i.sort_key.as_ref(), index.sort_key.as_ref()) {
                    bad(
                        format!("{at}.sort_key"),
                        match &index.sort_key {
                            Some(k) => key_need("sort_key", k),
                            None => "the bundled functions need no sort key here; remove it".into(),
                        },
                    );
                }
            }
        }
        out
    }
}
