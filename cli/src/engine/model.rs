//! The stack as plain data: what the config asks for and what AWS has are both expressed as
//! [`Spec`]s, so planning is a comparison of values and needs no I/O. Each kind's spec type is
//! declared with its service's calls in `aws/` and registered in [`super::kinds`].
//!
//! References between resources are logical (a route names its function, not an integration
//! id): the reader resolves ids back to names, which keeps desired and current comparable and
//! makes physical ids an apply-time detail.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::Value;

pub use super::kinds::*;
pub use crate::aws::dynamodb::IndexSpec;

pub use crate::names::Tags;

/// A resource's identity within the stack: its kind and its stable (deterministic) name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ResourceId {
    pub kind: Kind,
    pub name: String,
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.label(), self.name)
    }
}

impl Spec {
    pub fn id(&self) -> ResourceId {
        ResourceId {
            kind: self.kind(),
            name: self.name().to_string(),
        }
    }

    /// Top-level fields as JSON values, the unit of comparison.
    pub fn fields(&self) -> BTreeMap<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map.into_iter().collect(),
            _ => BTreeMap::new(),
        }
    }
}

/// A resource as read from AWS: its spec and the id AWS gave it (when it is not the name).
#[derive(Debug, Clone, PartialEq)]
pub struct Live {
    pub spec: Spec,
    pub physical_id: Option<String>,
}

/// Everything of the stack found in the account.
#[derive(Debug, Clone, Default)]
pub struct LiveState {
    pub resources: BTreeMap<ResourceId, Live>,
    /// Resources with a name the stack would use but without its tags: never touched.
    pub foreign: Vec<ResourceId>,
}

impl LiveState {
    pub fn physical_id(&self, kind: Kind, name: &str) -> Option<&str> {
        let id = ResourceId {
            kind,
            name: name.to_string(),
        };
        self.resources
            .get(&id)
            .and_then(|l| l.physical_id.as_deref())
    }

    /// The stack has one authorizer at most.
    pub fn authorizer_id(&self) -> Option<&str> {
        self.resources
            .iter()
            .find(|(id, _)| id.kind == Kind::Authorizer)
            .and_then(|(_, l)| l.physical_id.as_deref())
    }

    /// The CloudWatch Logs role of API Gateway's account settings, when it was read and is set.
    pub fn logging_role(&self) -> Option<&str> {
        self.resources
            .iter()
            .find_map(|(id, l)| match (&id.kind, &l.spec) {
                (Kind::Account, Spec::Account(a)) => Some(a.cloudwatch_role_arn.as_str()),
                _ => None,
            })
    }

    pub fn api_id(&self) -> Option<&str> {
        self.resources
            .iter()
            .find(|(id, _)| id.kind == Kind::Api && !id.name.contains('#'))
            .and_then(|(_, l)| l.physical_id.as_deref())
    }
}
