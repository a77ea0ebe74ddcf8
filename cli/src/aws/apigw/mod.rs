//! The WebSocket API and what it holds: integrations, the `$connect` authorizer, routes, stage.
//!
//! The API is found by name and tags; its children have no tags and are found through it.
//! Ids are mapped back to logical names (an integration to its function, a route's target to
//! a function) so live state compares with the config.

mod api;
mod authorizer;
mod deployment;
mod integration;
mod route;
mod stage;

pub use api::*;
pub use authorizer::*;
pub use deployment::*;
pub use integration::*;
pub use route::*;
pub use stage::*;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_apigatewayv2::types::{
    AccessLogSettings, AuthorizationType, AuthorizerType, DeploymentStatus, IntegrationType,
    ProtocolType, RouteSettings,
};
use serde::Serialize;

use super::{AwsError, CallContext, Clients, TagChange, all_pages, found, unimplemented};
use crate::engine::model::*;
use crate::names::Names;

pub fn api_resource_arn(region: &str, api_id: &str) -> String {
    wsctl_functions::partition::Partition::of(region).arn(
        "apigateway",
        region,
        "",
        &format!("/apis/{api_id}"),
    )
}

/// The stack's APIs (tagged as its own), oldest first: the first is the stack's API, any other
/// was left by an interrupted create.
async fn owned_apis(
    clients: &Clients,
    names: &Names,
) -> Result<Vec<(aws_sdk_apigatewayv2::types::Api, Tags)>, AwsError> {
    let wanted = names.api();
    let apis = all_pages(async |token| {
        let page = clients
            .apigw
            .get_apis()
            .set_next_token(token)
            .send()
            .await
            .ctx("GetApis", &wanted)?;
        let named = page
            .items
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a.name.as_deref() == Some(wanted.as_str()))
            .collect();
        Ok((named, page.next_token))
    })
    .await?;
    // API names are not unique, so an untagged namesake is no conflict: it is simply not ours.
    let mut ours: Vec<_> = apis
        .into_iter()
        .filter_map(|a| {
            let tags = a
                .tags
                .clone()
                .map(|t| t.into_iter().collect::<Tags>())
                .unwrap_or_default();
            names.owns(&tags).then_some((a, tags))
        })
        .collect();
    ours.sort_by_key(|(a, _)| a.created_date.map(|d| d.as_nanos()).unwrap_or_default());
    Ok(ours)
}

/// The id of the stack's API, if it is deployed.
pub async fn find_api(clients: &Clients, names: &Names) -> Result<Option<String>, AwsError> {
    Ok(owned_apis(clients, names)
        .await?
        .into_iter()
        .next()
        .and_then(|(a, _)| a.api_id))
}

/// Deleting (or replacing) a stage, or the API holding it, closes every WebSocket connection
/// to it; a new one has a new URL.
fn stage_drops(action: &crate::engine::plan::Action) -> Option<&'static str> {
    match action {
        crate::engine::plan::Action::Delete => {
            Some("drops every connected client; the URL stops working")
        }
        crate::engine::plan::Action::Replace(_) => {
            Some("drops every connected client; the URL changes")
        }
        _ => None,
    }
}

/// Deleting the stack's API deletes everything it holds. Extra APIs (`name#id`, left by an
/// interrupted create) hold none of the children the stack reads.
fn goes_with_the_api(other: &ResourceId) -> bool {
    other.kind == Kind::Api && !other.name.contains('#')
}

/// `arn:P:apigateway:R:lambda:path/2015-03-31/functions/arn:P:lambda:R:A:function:NAME/invocations`
/// → the logical name of a function of this stack.
fn logical_function(names: &Names, uri: &str) -> Option<String> {
    let arn = uri
        .split("/functions/")
        .nth(1)?
        .strip_suffix("/invocations")?;
    let function = arn.split(":function:").nth(1)?.split(':').next()?;
    function.strip_prefix(&names.prefix()).map(str::to_string)
}

/// The stage's ARN for API Gateway's tagging calls ("Tags" in the API Gateway V2 API reference:
/// a stage is tagged as `arn:aws:apigateway:REGION::/apis/API_ID/stages/STAGE`).
pub fn stage_resource_arn(region: &str, api_id: &str, stage: &str) -> String {
    format!("{}/stages/{stage}", api_resource_arn(region, api_id))
}

/// True when the endpoint is not AWS's own (`--endpoint-url`, `AWS_ENDPOINT_URL`, `wsctl dev`):
/// only there may a call be missing rather than failing.
pub fn emulated(clients: &Clients) -> bool {
    clients.sdk.endpoint_url().is_some()
}

/// The usual retries, except for an emulator's answer to a call it lacks (404/405/500/501 with
/// no AWS error code): that would only be retried into a long back-off. AWS itself names every
/// error it returns (`x-amzn-ErrorType`), so on AWS every retry applies, throttles included.
fn attempts() -> aws_sdk_apigatewayv2::config::Builder {
    aws_sdk_apigatewayv2::config::Builder::default().retry_classifier(LackedCall)
}

#[derive(Debug)]
struct LackedCall;

impl aws_smithy_runtime_api::client::retries::classifiers::ClassifyRetry for LackedCall {
    fn classify_retry(
        &self,
        ctx: &aws_smithy_runtime_api::client::interceptors::context::InterceptorContext,
    ) -> aws_smithy_runtime_api::client::retries::classifiers::RetryAction {
        use aws_smithy_runtime_api::client::retries::classifiers::RetryAction;
        let lacked = ctx.response().is_some_and(|r| {
            matches!(r.status().as_u16(), 404 | 405 | 500 | 501)
                && r.headers().get("x-amzn-errortype").is_none()
                && !r
                    .body()
                    .bytes()
                    .is_some_and(|b| b.windows(8).any(|w| w == b"\"__type\""))
        });
        if lacked {
            RetryAction::RetryForbidden
        } else {
            RetryAction::NoActionIndicated
        }
    }

    fn name(&self) -> &'static str {
        "an emulator lacks the call"
    }
}
