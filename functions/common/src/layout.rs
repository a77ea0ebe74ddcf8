//! The tables the bundled functions read and write, and what each of their roles needs from
//! its environment: the one definition that the store's code takes every key and index name
//! from, and that wsctl checks a wsctl.yaml against before it deploys these functions (a table
//! whose key or index differs would deploy, then fail on every call with a DynamoDB
//! `ValidationException`).
//!
//! What may vary from one stack to another (the physical table names, the attribute each table's
//! TTL reads) reaches the functions through their environment: [`table_env`], [`ttl_env`].

/// A key attribute's DynamoDB type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    S,
    N,
}

impl AttrType {
    /// As DynamoDB's `AttributeType` (and wsctl.yaml's `name:N`) spells it.
    pub const fn code(self) -> &'static str {
        match self {
            AttrType::S => "S",
            AttrType::N => "N",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub name: &'static str,
    pub kind: AttrType,
}

impl Attr {
    const fn s(name: &'static str) -> Attr {
        Attr {
            name,
            kind: AttrType::S,
        }
    }
    const fn n(name: &'static str) -> Attr {
        Attr {
            name,
            kind: AttrType::N,
        }
    }
}

/// A global secondary index the functions query (its projection is every attribute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Index {
    pub name: &'static str,
    pub partition_key: Attr,
    pub sort_key: Option<Attr>,
}

/// One table: its key exactly (a key attribute more or less changes every `GetItem`), the
/// indexes the functions query (others may exist). Every table's items carry an expiry, in the
/// attribute its `ttl_attribute` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    /// Its name under `tables:` in wsctl.yaml, which [`table_env`] turns into a variable.
    pub name: &'static str,
    pub partition_key: Attr,
    pub sort_key: Option<Attr>,
    pub indexes: &'static [Index],
}

impl Table {
    /// The sort key's name, for tables that have one (a compile-time error otherwise).
    pub const fn sort_key_name(&self) -> &'static str {
        match self.sort_key {
            Some(a) => a.name,
            None => panic!("this table has no sort key"),
        }
    }
}

/// A connection: one item per live connection.
pub const CONNECTIONS: Table = Table {
    name: "connections",
    partition_key: Attr::s("pk"),
    sort_key: None,
    indexes: &[],
};

/// A connection's subscriptions, to delete them when it goes.
pub const BY_CONNECTION: Index = Index {
    name: "by-connection",
    partition_key: Attr::s("connection"),
    sort_key: Some(Attr::s("channel")),
};

/// One item per channel and connection subscribed to it (or present in it).
pub const SUBSCRIPTIONS: Table = Table {
    name: "subscriptions",
    partition_key: Attr::s("channel"),
    sort_key: Some(Attr::s("connection")),
    indexes: &[BY_CONNECTION],
};

/// Published messages, by channel and serial (read in serial order).
pub const HISTORY: Table = Table {
    name: "history",
    partition_key: Attr::s("channel"),
    sort_key: Some(Attr::n("serial")),
    indexes: &[],
};

/// Per-channel serials, publish ids, publish order, fan-out claims, and the limits' state.
pub const COUNTERS: Table = Table {
    name: "counters",
    partition_key: Attr::s("channel"),
    sort_key: None,
    indexes: &[],
};

pub const TABLES: [&Table; 4] = [&CONNECTIONS, &SUBSCRIPTIONS, &HISTORY, &COUNTERS];

/// How a role uses a table, which its grant in wsctl.yaml must allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    Read,
    Write,
    ReadWrite,
}

/// One function of the pub/sub binary (Lambda's `Handler` setting picks it) and what it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Role {
    pub handler: &'static str,
    pub tables: &'static [(&'static Table, Use)],
    /// Hands fan-out (and presence `leave`s) to the publish function.
    pub invokes_publish: bool,
    /// Posts to the stage's `@connections` API.
    pub manages_connections: bool,
    /// Enforces the per-client limits, which reach it in [`crate::limits::LIMITS_ENV`].
    pub enforces_limits: bool,
}

pub const ROLES: [Role; 4] = [
    Role {
        handler: "connect",
        // Counts each user's open connections (`limits.connections_per_user`).
        tables: &[(&CONNECTIONS, Use::Write), (&COUNTERS, Use::ReadWrite)],
        invokes_publish: false,
        manages_connections: false,
        enforces_limits: true,
    },
    Role {
        handler: "disconnect",
        tables: &[
            (&CONNECTIONS, Use::Write),
            // Its subscriptions are found through the index, then deleted.
            (&SUBSCRIPTIONS, Use::ReadWrite),
            // Frees its place among its user's open connections.
            (&COUNTERS, Use::Write),
        ],
        invokes_publish: true,
        manages_connections: false,
        enforces_limits: false,
    },
    Role {
        handler: "message",
        tables: &[
            // Reads who a connection is; a subscriber it finds gone while posting a small
            // channel's message is removed, as the publish function removes one.
            (&CONNECTIONS, Use::ReadWrite),
            (&SUBSCRIPTIONS, Use::ReadWrite),
            (&HISTORY, Use::ReadWrite),
            (&COUNTERS, Use::ReadWrite),
        ],
        invokes_publish: true,
        manages_connections: true,
        enforces_limits: true,
    },
    Role {
        handler: "publish",
        tables: &[
            // A connection found gone is removed with its subscriptions.
            (&CONNECTIONS, Use::Write),
            (&SUBSCRIPTIONS, Use::ReadWrite),
            (&HISTORY, Use::ReadWrite),
            (&COUNTERS, Use::ReadWrite),
        ],
        invokes_publish: true,
        manages_connections: true,
        enforces_limits: false,
    },
];

/// The role a `Handler` setting names.
pub fn role(handler: &str) -> Option<&'static Role> {
    ROLES.iter().find(|r| r.handler == handler)
}

/// The function the pub/sub roles hand fan-out to.
pub const PUBLISH_FUNCTION: &str = "publish";

/// The attribute a table's TTL reads when wsctl.yaml names none.
pub const DEFAULT_TTL_ATTRIBUTE: &str = "ttl";

/// The `@connections` base URL of the stage.
pub const CONNECTIONS_URL_ENV: &str = "WSCTL_CONNECTIONS_URL";

fn env_suffix(logical: &str) -> String {
    logical.to_ascii_uppercase().replace('-', "_")
}

/// The variable holding a table's physical name.
pub fn table_env(table: &str) -> String {
    format!("WSCTL_TABLE_{}", env_suffix(table))
}

/// The variable naming the attribute a table's TTL reads (its `ttl_attribute`).
pub fn ttl_env(table: &str) -> String {
    format!("WSCTL_TTL_ATTRIBUTE_{}", env_suffix(table))
}

/// The variable holding another function's physical name.
pub fn function_env(function: &str) -> String {
    format!("WSCTL_FUNCTION_{}", env_suffix(function))
}

/// A variable a role cannot start without.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needed {
    pub variable: String,
    /// What it holds.
    pub what: String,
    /// The wsctl.yaml setting that makes wsctl set it.
    pub fix: String,
}

impl Use {
    /// As wsctl.yaml's `tables:` grant spells it.
    pub const fn grant(self) -> &'static str {
        match self {
            Use::Read => "read",
            Use::Write => "write",
            Use::ReadWrite => "read-write",
        }
    }
}

/// Every variable `role` cannot start without.
pub fn needed_env(role: &Role) -> Vec<Needed> {
    let mut out = Vec::new();
    for (table, used) in role.tables {
        let fix = format!("`tables: {{ {}: {} }}`", table.name, used.grant());
        out.push(Needed {
            variable: table_env(table.name),
            what: format!("the name of the `{}` table", table.name),
            fix: fix.clone(),
        });
        out.push(Needed {
            variable: ttl_env(table.name),
            what: format!("the attribute the `{}` table's TTL reads", table.name),
            fix,
        });
    }
    if role.invokes_publish {
        out.push(Needed {
            variable: function_env(PUBLISH_FUNCTION),
            what: "the name of the publish function, which fans messages out".into(),
            fix: format!("`invoke: [{PUBLISH_FUNCTION}]`"),
        });
    }
    if role.manages_connections {
        out.push(Needed {
            variable: CONNECTIONS_URL_ENV.into(),
            what: "the stage's `@connections` URL".into(),
            fix: "`manage_connections: true`".into(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_uses_only_tables_of_the_layout_and_keys_have_one_type_per_table() {
        for role in ROLES {
            for (t, _) in role.tables {
                assert!(TABLES.contains(t), "{}: {}", role.handler, t.name);
            }
        }
        for t in TABLES {
            let mut keys = vec![Some(t.partition_key), t.sort_key];
            for i in t.indexes {
                keys.extend([Some(i.partition_key), i.sort_key]);
            }
            for a in keys.iter().flatten() {
                for b in keys.iter().flatten() {
                    assert!(
                        a.name != b.name || a.kind == b.kind,
                        "{}: {}",
                        t.name,
                        a.name
                    );
                }
            }
        }
    }

    #[test]
    fn variable_names_follow_the_logical_names() {
        assert_eq!(table_env("connections"), "WSCTL_TABLE_CONNECTIONS");
        assert_eq!(ttl_env("my-table"), "WSCTL_TTL_ATTRIBUTE_MY_TABLE");
        assert_eq!(function_env("publish"), "WSCTL_FUNCTION_PUBLISH");
    }
}
