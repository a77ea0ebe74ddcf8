//! The publish endpoint: a function URL on the publish function with `AuthType` `AWS_IAM`, so
//! Lambda checks each request's SigV4 signature and the caller's IAM permissions before the
//! function runs ("Control access to Lambda function URLs", Lambda Developer Guide).
//!
//! A function URL costs nothing beyond the function's own invocation, accepts a 6 MB body and
//! is throttled by the function's concurrency; an HTTP API route in front would add $1.00 per
//! million requests, a hop, and a 30 s limit to the request. A URL has no tags of its own: it
//! is the stack's when its function is.

use aws_sdk_lambda::types::{FunctionUrlAuthType, InvokeMode};
use serde::Serialize;

use crate::aws::{AwsError, CallContext, Clients, found, while_refused};
use crate::engine::model::{Applying, Kind, Resource, ResourceId};
use crate::engine::plan::Action;

use super::*;

/// The only auth type wsctl creates: an endpoint without it would let anyone publish.
pub const AUTH_TYPE: &str = "AWS_IAM";
/// The response is sent once the function returns (the other mode streams it).
pub const INVOKE_MODE: &str = "BUFFERED";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionUrlSpec {
    /// The function the URL invokes: the URL's name in the stack.
    pub function: String,
    pub auth_type: String,
    pub invoke_mode: String,
}

impl FunctionUrlSpec {
    pub fn new(function: String) -> FunctionUrlSpec {
        FunctionUrlSpec {
            function,
            auth_type: AUTH_TYPE.into(),
            invoke_mode: INVOKE_MODE.into(),
        }
    }
}

impl Resource for FunctionUrlSpec {
    const LABEL: &'static str = "function url";
    const WAVE: u8 = 3;

    fn name(&self) -> &str {
        &self.function
    }

    async fn create(&self, cx: &Applying<'_>) -> Result<Option<String>, AwsError> {
        let created = while_refused(
            "CreateFunctionUrlConfig",
            &self.function,
            BUSY,
            function_busy,
            || {
                cx.clients
                    .lambda
                    .create_function_url_config()
                    .function_name(&self.function)
                    .auth_type(FunctionUrlAuthType::from(self.auth_type.as_str()))
                    .invoke_mode(InvokeMode::from(self.invoke_mode.as_str()))
                    .send()
            },
        )
        .await?;
        Ok(Some(created.function_url))
    }

    async fn update(
        &self,
        _current: &Self,
        _physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<Option<String>, AwsError> {
        let updated = while_refused(
            "UpdateFunctionUrlConfig",
            &self.function,
            BUSY,
            function_busy,
            || {
                cx.clients
                    .lambda
                    .update_function_url_config()
                    .function_name(&self.function)
                    .auth_type(FunctionUrlAuthType::from(self.auth_type.as_str()))
                    .invoke_mode(InvokeMode::from(self.invoke_mode.as_str()))
                    .send()
            },
        )
        .await?;
        Ok(Some(updated.function_url))
    }

    async fn delete(
        name: &str,
        _physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<(), AwsError> {
        while_refused(
            "DeleteFunctionUrlConfig",
            name,
            BUSY,
            function_busy,
            || async {
                found(
                    cx.clients
                        .lambda
                        .delete_function_url_config()
                        .function_name(name)
                        .send()
                        .await,
                )
            },
        )
        .await?;
        Ok(())
    }

    /// Deleting a function deletes its URL.
    fn goes_with(name: &str, other: &ResourceId) -> bool {
        other.kind == Kind::Function && other.name == name
    }

    /// A URL's address is Lambda's choice: one created again has another, and every backend
    /// that publishes through it must be given the new one.
    fn drops(_name: &str, action: &Action) -> Option<&'static str> {
        matches!(action, Action::Delete | Action::Replace(_)).then_some(
            "the publish endpoint's URL, which backends call (a new one has another address)",
        )
    }
}

/// `function`'s URL and its address, if it has one.
pub async fn read_url(
    clients: &Clients,
    function: &str,
) -> Result<Option<(FunctionUrlSpec, String)>, AwsError> {
    let got = found(
        clients
            .lambda
            .get_function_url_config()
            .function_name(function)
            .send()
            .await,
    )
    .ctx("GetFunctionUrlConfig", function)?;
    Ok(got.map(|got| {
        (
            FunctionUrlSpec {
                function: function.to_string(),
                auth_type: got.auth_type.as_str().to_string(),
                invoke_mode: got
                    .invoke_mode
                    .map(|m| m.as_str().to_string())
                    .unwrap_or_else(|| INVOKE_MODE.into()),
            },
            got.function_url,
        )
    }))
}
