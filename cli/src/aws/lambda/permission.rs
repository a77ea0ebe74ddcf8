//! The permission that lets the stack's API invoke a function: one statement of its resource
//! policy per route of the stage, and one for the authorizer.

use serde::Serialize;
use serde_json::Value;
use wsctl_functions::partition::Partition;

use crate::aws::{AwsError, CallContext, Clients, found, while_refused};
use crate::engine::model::{Applying, Kind, Resource, ResourceId};
use crate::names::{AUTHORIZER_SID, PERMISSION_SID_PREFIX, ROUTE_SID_PREFIX, route_sid};

use super::*;

/// One statement of a function's resource policy letting the stack's API invoke it, scoped
/// to one source: a route of this stage, or the authorizer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PermissionSpec {
    /// `<function> <route key>`, or `<function> (authorizer)`: unique in the stack (route keys
    /// have no spaces or parentheses).
    #[serde(skip)]
    pub name: String,
    pub function: String,
    pub statement_id: String,
    pub source_arn: String,
}

const AUTHORIZER_LABEL: &str = "(authorizer)";

impl PermissionSpec {
    /// The permission for `route` (`None`: for the authorizer).
    pub fn new(
        function: &str,
        statement_id: &str,
        source_arn: String,
        route: Option<&str>,
    ) -> Self {
        PermissionSpec {
            name: format!("{function} {}", route.unwrap_or(AUTHORIZER_LABEL)),
            function: function.to_string(),
            statement_id: statement_id.to_string(),
            source_arn,
        }
    }
}

impl Resource for PermissionSpec {
    const LABEL: &'static str = "permission";
    const WAVE: u8 = 4;
    const IMMUTABLE_FIELDS: &'static [&'static str] = &["source_arn", "statement_id"];

    fn name(&self) -> &str {
        &self.name
    }

    async fn create(&self, cx: &Applying<'_>) -> Result<Option<String>, AwsError> {
        let principal = Partition::of(&cx.clients.region).service_principal("apigateway");
        while_refused("AddPermission", &self.name, BUSY, function_busy, || {
            cx.clients
                .lambda
                .add_permission()
                .function_name(&self.function)
                .statement_id(&self.statement_id)
                .action("lambda:InvokeFunction")
                .principal(&principal)
                .source_arn(&self.source_arn)
                .send()
        })
        .await?;
        Ok(Some(self.statement_id.clone()))
    }

    /// `physical_id` is the statement id, as read or created.
    async fn delete(
        name: &str,
        physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<(), AwsError> {
        let (function, source) = name.split_once(' ').unwrap_or((name, ""));
        let statement_id = match physical_id {
            Some(sid) => sid.to_string(),
            None if source == AUTHORIZER_LABEL => AUTHORIZER_SID.to_string(),
            None => route_sid(source),
        };
        while_refused("RemovePermission", name, BUSY, function_busy, || async {
            found(
                cx.clients
                    .lambda
                    .remove_permission()
                    .function_name(function)
                    .statement_id(&statement_id)
                    .send()
                    .await,
            )
        })
        .await?;
        Ok(())
    }

    /// A function's policy goes with it.
    fn goes_with(name: &str, other: &ResourceId) -> bool {
        let function = name.split_once(' ').map_or(name, |(f, _)| f);
        other.kind == Kind::Function && other.name == function
    }
}

/// The statements wsctl added to `function`'s policy (their ids start with
/// [`PERMISSION_SID_PREFIX`]), each as the permission it is; others are not the stack's.
pub(super) async fn read_permissions(
    clients: &Clients,
    function: &str,
) -> Result<Vec<PermissionSpec>, AwsError> {
    let Some(policy) = found(
        clients
            .lambda
            .get_policy()
            .function_name(function)
            .send()
            .await,
    )
    .ctx("GetPolicy", function)?
    else {
        return Ok(vec![]);
    };
    let doc: Value =
        serde_json::from_str(policy.policy.as_deref().unwrap_or("{}")).unwrap_or(Value::Null);
    let statements = match &doc["Statement"] {
        Value::Array(list) => list.clone(),
        single @ Value::Object(_) => vec![single.clone()],
        _ => vec![],
    };
    Ok(statements
        .iter()
        .filter_map(|s| {
            let sid = s["Sid"].as_str()?;
            if !sid.starts_with(PERMISSION_SID_PREFIX) {
                return None;
            }
            let source_arn = s["Condition"]["ArnLike"]["AWS:SourceArn"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            // A route's statement is named by the route key its source ends with; any other
            // statement of wsctl's (e.g. an older one for the whole API) by its id, so the plan
            // shows and removes it.
            let source = if sid == AUTHORIZER_SID {
                AUTHORIZER_LABEL.to_string()
            } else if sid.starts_with(ROUTE_SID_PREFIX) {
                source_arn
                    .rsplit('/')
                    .next()
                    .filter(|key| route_sid(key) == sid)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("({sid})"))
            } else {
                format!("({sid})")
            };
            Some(PermissionSpec {
                name: format!("{function} {source}"),
                function: function.to_string(),
                statement_id: sid.to_string(),
                source_arn,
            })
        })
        .collect())
}
