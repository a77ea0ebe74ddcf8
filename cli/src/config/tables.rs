//! `tables:`: the stack's DynamoDB tables, their keys and indexes.

use super::*;

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// `name` (string) or `name:N` / `name:B`.
    pub partition_key: String,
    /// `name` (string) or `name:N` / `name:B`; none for a table of single items.
    #[serde(default)]
    pub sort_key: Option<String>,
    /// The number attribute (epoch seconds) DynamoDB expires items by; the functions get it
    /// as `WSCTL_TTL_ATTRIBUTE_<TABLE>`.
    #[serde(default = "default_ttl_attribute")]
    pub ttl_attribute: String,
    /// Global secondary indexes, by name; a change of keys rebuilds the index.
    #[serde(default)]
    pub indexes: BTreeMap<String, IndexConfig>,
    /// Point-in-time recovery: DynamoDB keeps continuous backups from which the table can be
    /// restored to any second of the last 35 days (billed per GB-month of table size).
    /// Default: on for `history` (what clients cannot send again), off for the others.
    #[serde(default)]
    pub point_in_time_recovery: Option<bool>,
    /// Deletion protection: DynamoDB refuses to delete the table, so neither `wsctl destroy`
    /// nor a replacement can until it is turned off here and deployed. Default: on for
    /// `history` on a stage named like production (`prod`, `production`, `live`, or starting
    /// with `prod-`), off otherwise.
    #[serde(default)]
    pub deletion_protection: Option<bool>,
}

impl TableConfig {
    /// Whether the table keeps point-in-time backups, `logical` being its key in `tables`.
    pub fn point_in_time_recovery(&self, logical: &str) -> bool {
        self.point_in_time_recovery.unwrap_or(logical == "history")
    }

    /// Whether DynamoDB refuses to delete the table.
    pub fn deletion_protection(&self, logical: &str, stage: &str) -> bool {
        let production =
            matches!(stage, "prod" | "production" | "live") || stage.starts_with("prod-");
        self.deletion_protection
            .unwrap_or(logical == "history" && production)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IndexConfig {
    /// `name` (string) or `name:N` / `name:B`.
    pub partition_key: String,
    /// `name` (string) or `name:N` / `name:B`.
    #[serde(default)]
    pub sort_key: Option<String>,
}

/// A key attribute of a table or index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct KeyAttr {
    pub name: String,
    /// `S`, `N` or `B`.
    #[serde(rename = "type")]
    pub kind: String,
}

impl KeyAttr {
    pub fn parse(spec: &str) -> Result<KeyAttr, String> {
        let (name, kind) = match spec.split_once(':') {
            Some((n, k)) => (n, k),
            None => (spec, "S"),
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            return Err(format!(
                "`{spec}` is not a key attribute; write `name` (string) or `name:N` / `name:B`"
            ));
        }
        if !["S", "N", "B"].contains(&kind) {
            return Err(format!(
                "`{spec}` has type `{kind}`; allowed types are S, N and B"
            ));
        }
        Ok(KeyAttr {
            name: name.into(),
            kind: kind.into(),
        })
    }
}
