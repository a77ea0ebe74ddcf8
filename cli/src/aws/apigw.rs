//! The WebSocket API and what it holds: integrations, the `$connect` authorizer, routes, stage.
//!
//! The API is found by name and tags; its children have no tags and are found through it.
//! Ids are mapped back to logical names (an integration to its function, a route's target to
//! a function) so live state compares with the config.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_apigatewayv2::types::{
    AccessLogSettings, AuthorizationType, AuthorizerType, DeploymentStatus, IntegrationType,
    ProtocolType, RouteSettings,
};
use serde::Serialize;

use aws_sdk_sts::error::ProvideErrorMetadata;

use super::{AwsError, CallContext, Clients, TagChange, all_pages, found};
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

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiSpec {
    pub name: String,
    pub route_selection_expression: String,
    pub tags: Tags,
}

impl Resource for ApiSpec {
    const LABEL: &'static str = "api";
    const WAVE: u8 = 0;

    fn name(&self) -> &str {
        &self.name
    }

    /// Deleting the API closes every WebSocket connection to its stages, and a new one has a
    /// new URL. An API left by an interrupted create (`name#id`) never served a client.
    fn drops(name: &str, action: &crate::engine::plan::Action) -> Option<&'static str> {
        if name.contains('#') {
            return None;
        }
        stage_drops(action)
    }

    /// A change of the API's own settings (its route selection) reaches clients through a
    /// deployment; its tags do not.
    fn needs_deployment(action: &crate::engine::plan::Action) -> bool {
        matches!(action, crate::engine::plan::Action::Update(fields) if fields.iter().any(|f| f.field != "tags"))
    }

    /// Reads the API's integrations, authorizer, routes and stage too: they are found through
    /// it, and a route names its integration and authorizer by ids that only this read maps
    /// back to names.
    async fn read(
        clients: &Clients,
        names: &Names,
        _expected: &[String],
        live: &mut LiveState,
    ) -> Result<(), AwsError> {
        let wanted = names.api();
        let ours = owned_apis(clients, names).await?;
        let mut ours = ours.into_iter();
        let Some((api, tags)) = ours.next() else {
            return Ok(());
        };
        for (extra, tags) in ours {
            let id = extra.api_id.unwrap_or_default();
            let name = format!("{wanted}#{id}");
            let spec = ApiSpec {
                name: name.clone(),
                route_selection_expression: extra.route_selection_expression.unwrap_or_default(),
                tags,
            };
            live.resources.insert(
                ResourceId {
                    kind: Kind::Api,
                    name,
                },
                Live {
                    spec: Spec::Api(spec),
                    physical_id: Some(id),
                },
            );
        }
        let api_id = api.api_id.unwrap_or_default();
        let spec = ApiSpec {
            name: wanted.clone(),
            route_selection_expression: api.route_selection_expression.unwrap_or_default(),
            tags,
        };
        live.resources.insert(
            ResourceId {
                kind: Kind::Api,
                name: wanted,
            },
            Live {
                spec: Spec::Api(spec),
                physical_id: Some(api_id.clone()),
            },
        );

        let mut insert = |kind: Kind, name: String, spec: Spec, id: String| {
            let mut key = ResourceId { kind, name };
            if live.resources.contains_key(&key) {
                // A second child with the same key (an interrupted create): it goes.
                key.name = format!("{}#{id}", key.name);
            }
            live.resources.insert(
                key,
                Live {
                    spec,
                    physical_id: Some(id),
                },
            );
        };

        let mut integration_function: BTreeMap<String, String> = BTreeMap::new();
        let integrations = all_pages(async |token| {
            let page = clients
                .apigw
                .get_integrations()
                .api_id(&api_id)
                .set_next_token(token)
                .send()
                .await
                .ctx("GetIntegrations", &api_id)?;
            Ok((page.items.unwrap_or_default(), page.next_token))
        })
        .await?;
        {
            for i in integrations {
                let id = i.integration_id.unwrap_or_default();
                let uri = i.integration_uri.unwrap_or_default();
                let function = logical_function(names, &uri).unwrap_or_else(|| uri.clone());
                integration_function.insert(id.clone(), function.clone());
                let spec = IntegrationSpec {
                    function: function.clone(),
                    uri,
                    timeout_ms: i.timeout_in_millis.unwrap_or_default(),
                };
                insert(Kind::Integration, function, Spec::Integration(spec), id);
            }
        }

        let routes = all_pages(async |token| {
            let page = clients
                .apigw
                .get_routes()
                .api_id(&api_id)
                .set_next_token(token)
                .send()
                .await
                .ctx("GetRoutes", &api_id)?;
            Ok((page.items.unwrap_or_default(), page.next_token))
        })
        .await?;

        let authorizers = read_authorizers(
            clients,
            &api_id,
            routes
                .iter()
                .filter_map(|r| r.authorizer_id.clone())
                .filter(|a| !a.is_empty()),
        )
        .await?;
        let mut authorizer_name = BTreeMap::new();
        for a in authorizers {
            let id = a.authorizer_id.unwrap_or_default();
            let name = a.name.unwrap_or_else(|| id.clone());
            authorizer_name.insert(id.clone(), name.clone());
            let uri = a.authorizer_uri.unwrap_or_default();
            let spec = AuthorizerSpec {
                name: name.clone(),
                function: logical_function(names, &uri).unwrap_or_else(|| uri.clone()),
                uri,
                identity_source: a.identity_source.unwrap_or_default(),
            };
            insert(Kind::Authorizer, name, Spec::Authorizer(spec), id);
        }

        for r in routes {
            let id = r.route_id.unwrap_or_default();
            let function = r
                .target
                .as_deref()
                .and_then(|t| t.strip_prefix("integrations/"))
                .map(|i| {
                    integration_function
                        .get(i)
                        .cloned()
                        .unwrap_or_else(|| format!("(missing integration {i})"))
                });
            let named = r.authorizer_id.as_ref().filter(|a| !a.is_empty()).map(|a| {
                authorizer_name
                    .get(a)
                    .cloned()
                    .unwrap_or_else(|| format!("(missing authorizer {a})"))
            });
            let authorizer = match r.authorization_type {
                Some(AuthorizationType::Custom) => named,
                // An id left behind by a change to NONE still holds the authorizer: the plan
                // shows it, and the route update clears it.
                _ => named.map(|a| format!("(unused, still names {a})")),
            };
            let key = r.route_key.unwrap_or_default();
            let spec = RouteSpec {
                route_key: key.clone(),
                function,
                authorizer,
            };
            insert(Kind::Route, key, Spec::Route(spec), id);
        }

        let stages = all_pages(async |token| {
            let page = clients
                .apigw
                .get_stages()
                .api_id(&api_id)
                .set_next_token(token)
                .send()
                .await
                .ctx("GetStages", &api_id)?;
            Ok((page.items.unwrap_or_default(), page.next_token))
        })
        .await?;
        for s in stages {
            let settings = s
                .default_route_settings
                .unwrap_or_else(|| RouteSettings::builder().build());
            let spec = StageSpec {
                name: s.stage_name.clone().unwrap_or_default(),
                auto_deploy: s.auto_deploy.unwrap_or(false),
                throttling_burst: settings.throttling_burst_limit.unwrap_or_default(),
                throttling_rate: settings.throttling_rate_limit.unwrap_or_default(),
                access_log: s.access_log_settings.and_then(|a| {
                    Some(AccessLog {
                        destination_arn: a.destination_arn.filter(|d| !d.is_empty())?,
                        format: a.format.unwrap_or_default(),
                        role: String::new(),
                    })
                }),
                tags: s.tags.map(|t| t.into_iter().collect()).unwrap_or_default(),
            };
            let name = s.stage_name.unwrap_or_default();
            insert(Kind::Stage, name.clone(), Spec::Stage(spec), name);
        }
        Ok(())
    }

    async fn create(&self, cx: &Applying<'_>) -> Result<Option<String>, AwsError> {
        let clients = cx.clients;
        let created = clients
            .apigw
            .create_api()
            .name(&self.name)
            .protocol_type(ProtocolType::Websocket)
            .route_selection_expression(&self.route_selection_expression)
            .set_tags(Some(self.tags.clone().into_iter().collect()))
            .description("WebSocket API managed by wsctl")
            .send()
            .await
            .ctx("CreateApi", &self.name)?;
        Ok(Some(created.api_id.unwrap_or_default()))
    }

    async fn update(
        &self,
        current: &Self,
        physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<Option<String>, AwsError> {
        let Some(id) = physical_id else {
            return self.create(cx).await;
        };
        update_api(cx.clients, id, self, current).await?;
        Ok(Some(id.to_string()))
    }

    /// By id: API names are not unique, and an interrupted create may have left a namesake.
    async fn delete(
        _name: &str,
        physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<(), AwsError> {
        let api_id = physical_id.unwrap_or(cx.api_id());
        found(cx.clients.apigw.delete_api().api_id(api_id).send().await)
            .ctx("DeleteApi", api_id)?;
        Ok(())
    }
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

/// Lists the authorizers. Where the list call is unavailable (an emulator lacking it), those
/// the routes reference are read one by one: an authorizer no route uses can then only go with
/// its API. Throttles (429: the control plane allows 10 requests a second per account, burst
/// 40, "Amazon API Gateway quotas") are retried as every other call's are.
async fn read_authorizers(
    clients: &Clients,
    api_id: &str,
    referenced: impl Iterator<Item = String>,
) -> Result<Vec<aws_sdk_apigatewayv2::types::Authorizer>, AwsError> {
    let mut listed = Vec::new();
    let mut token = None;
    loop {
        let page = clients
            .apigw
            .get_authorizers()
            .api_id(api_id)
            .set_next_token(token.clone())
            .customize()
            .config_override(attempts())
            .send()
            .await;
        match page {
            Ok(page) => {
                listed.extend(page.items.unwrap_or_default());
                token = page.next_token.filter(|t| !t.is_empty());
                if token.is_none() {
                    return Ok(listed);
                }
            }
            Err(e) if token.is_none() && unimplemented(&e) => break,
            Err(e) => return Err(super::classify(e, "GetAuthorizers", api_id)),
        }
    }
    let mut ids: Vec<String> = referenced.collect();
    ids.sort();
    ids.dedup();
    let mut out = Vec::new();
    for id in ids {
        if let Some(a) = found(
            clients
                .apigw
                .get_authorizer()
                .api_id(api_id)
                .authorizer_id(&id)
                .send()
                .await,
        )
        .ctx("GetAuthorizer", &id)?
        {
            out.push(
                aws_sdk_apigatewayv2::types::Authorizer::builder()
                    .authorizer_id(id)
                    .set_name(a.name)
                    .set_authorizer_uri(a.authorizer_uri)
                    .set_identity_source(a.identity_source)
                    .build(),
            );
        }
    }
    Ok(out)
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

async fn update_api(
    clients: &Clients,
    api_id: &str,
    spec: &ApiSpec,
    current: &ApiSpec,
) -> Result<(), AwsError> {
    if spec.route_selection_expression != current.route_selection_expression {
        clients
            .apigw
            .update_api()
            .api_id(api_id)
            .route_selection_expression(&spec.route_selection_expression)
            .send()
            .await
            .ctx("UpdateApi", &spec.name)?;
    }
    let Some(change) = TagChange::between(Some(&current.tags), &spec.tags) else {
        return Ok(());
    };
    let arn = api_resource_arn(&clients.region, api_id);
    retag(clients, &arn, change, &spec.name, false).await?;
    Ok(())
}

/// Applies a tag change to an API Gateway resource (an API, a stage, a domain name) by its ARN
/// (API reference, "Tags": `/v2/tags/{resource-arn}`). With `lenient`, an emulator lacking the
/// calls is answered `Ok(false)` rather than an error, for the caller to fall back.
pub async fn retag(
    clients: &Clients,
    arn: &str,
    change: TagChange<'_>,
    name: &str,
    lenient: bool,
) -> Result<bool, AwsError> {
    let lacking = std::sync::atomic::AtomicBool::new(false);
    let lenient = lenient && emulated(clients);
    let config = || {
        if lenient {
            attempts()
        } else {
            aws_sdk_apigatewayv2::config::Builder::default()
        }
    };
    change
        .apply(
            async |keys| {
                let sent = clients
                    .apigw
                    .untag_resource()
                    .resource_arn(arn)
                    .set_tag_keys(Some(keys))
                    .customize()
                    .config_override(config())
                    .send()
                    .await;
                match sent {
                    Err(e) if lenient && unimplemented(&e) => {
                        lacking.store(true, std::sync::atomic::Ordering::Relaxed);
                        Ok(())
                    }
                    other => other.ctx("UntagResource", name).map(drop),
                }
            },
            async |tags| {
                if lacking.load(std::sync::atomic::Ordering::Relaxed) {
                    return Ok(());
                }
                let sent = clients
                    .apigw
                    .tag_resource()
                    .resource_arn(arn)
                    .set_tags(Some(tags.clone().into_iter().collect()))
                    .customize()
                    .config_override(config())
                    .send()
                    .await;
                match sent {
                    Err(e) if lenient && unimplemented(&e) => {
                        lacking.store(true, std::sync::atomic::Ordering::Relaxed);
                        Ok(())
                    }
                    other => other.ctx("TagResource", name).map(drop),
                }
            },
        )
        .await?;
    Ok(!lacking.load(std::sync::atomic::Ordering::Relaxed))
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntegrationSpec {
    /// The function it invokes (logical key).
    pub function: String,
    pub uri: String,
    pub timeout_ms: i32,
}

impl IntegrationSpec {
    async fn put(
        &self,
        cx: &Applying<'_>,
        existing: Option<&str>,
    ) -> Result<Option<String>, AwsError> {
        let (clients, api_id) = (cx.clients, cx.api_id());
        if let Some(id) = existing {
            clients
                .apigw
                .update_integration()
                .api_id(api_id)
                .integration_id(id)
                .integration_uri(&self.uri)
                .timeout_in_millis(self.timeout_ms)
                .send()
                .await
                .ctx("UpdateIntegration", &self.function)?;
            return Ok(Some(id.to_string()));
        }
        let created = clients
            .apigw
            .create_integration()
            .api_id(api_id)
            .integration_type(IntegrationType::AwsProxy)
            .integration_method("POST")
            .integration_uri(&self.uri)
            .timeout_in_millis(self.timeout_ms)
            .send()
            .await
            .ctx("CreateIntegration", &self.function)?;
        Ok(Some(created.integration_id.unwrap_or_default()))
    }
}

impl Resource for IntegrationSpec {
    const LABEL: &'static str = "integration";
    const WAVE: u8 = 3;

    fn name(&self) -> &str {
        &self.function
    }

    fn needs_deployment(_action: &crate::engine::plan::Action) -> bool {
        true
    }

    async fn create(&self, cx: &Applying<'_>) -> Result<Option<String>, AwsError> {
        self.put(cx, None).await
    }

    async fn update(
        &self,
        _current: &Self,
        physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<Option<String>, AwsError> {
        self.put(cx, physical_id).await
    }

    async fn delete(
        _name: &str,
        physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<(), AwsError> {
        let Some(id) = physical_id else {
            return Ok(());
        };
        let request = cx.clients.apigw.delete_integration();
        found(request.api_id(cx.api_id()).integration_id(id).send().await)
            .ctx("DeleteIntegration", id)?;
        Ok(())
    }

    fn goes_with(_name: &str, other: &ResourceId) -> bool {
        goes_with_the_api(other)
    }
}

/// How long a route's released reference to an authorizer may take to be seen.
const REFERENCE_RELEASE: super::Pace = super::Pace {
    first: Duration::from_secs(1),
    max: Duration::from_secs(5),
    window: Duration::from_secs(60),
};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuthorizerSpec {
    pub name: String,
    pub function: String,
    pub uri: String,
    pub identity_source: Vec<String>,
}

impl AuthorizerSpec {
    async fn put(
        &self,
        cx: &Applying<'_>,
        existing: Option<&str>,
    ) -> Result<Option<String>, AwsError> {
        let (clients, api_id) = (cx.clients, cx.api_id());
        if let Some(id) = existing {
            clients
                .apigw
                .update_authorizer()
                .api_id(api_id)
                .authorizer_id(id)
                .authorizer_uri(&self.uri)
                .set_identity_source(Some(self.identity_source.clone()))
                .send()
                .await
                .ctx("UpdateAuthorizer", &self.name)?;
            return Ok(Some(id.to_string()));
        }
        let created = clients
            .apigw
            .create_authorizer()
            .api_id(api_id)
            .name(&self.name)
            .authorizer_type(AuthorizerType::Request)
            .authorizer_uri(&self.uri)
            .set_identity_source(Some(self.identity_source.clone()))
            .send()
            .await
            .ctx("CreateAuthorizer", &self.name)?;
        Ok(Some(created.authorizer_id.unwrap_or_default()))
    }
}

impl Resource for AuthorizerSpec {
    const LABEL: &'static str = "authorizer";
    const WAVE: u8 = 3;

    fn name(&self) -> &str {
        &self.name
    }

    fn needs_deployment(_action: &crate::engine::plan::Action) -> bool {
        true
    }

    async fn create(&self, cx: &Applying<'_>) -> Result<Option<String>, AwsError> {
        self.put(cx, None).await
    }

    async fn update(
        &self,
        _current: &Self,
        physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<Option<String>, AwsError> {
        self.put(cx, physical_id).await
    }

    async fn delete(
        _name: &str,
        physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<(), AwsError> {
        let Some(id) = physical_id else {
            return Ok(());
        };
        // Routes let go of it in an earlier step; API Gateway may still see the reference for
        // a moment (409 "Cannot delete authorizer …, is referenced in route", sst #5586).
        let referenced: fn(&str, &str) -> bool =
            |code, message| code == "ConflictException" && message.contains("referenced");
        let deleted = super::while_refused(
            "DeleteAuthorizer",
            id,
            REFERENCE_RELEASE,
            referenced,
            || {
                cx.clients
                    .apigw
                    .delete_authorizer()
                    .api_id(cx.api_id())
                    .authorizer_id(id)
                    .send()
            },
        )
        .await;
        match deleted {
            Err(AwsError::Service { code, .. }) if code == "NotFoundException" => Ok(()),
            other => other.map(drop),
        }
    }

    fn goes_with(_name: &str, other: &ResourceId) -> bool {
        goes_with_the_api(other)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteSpec {
    pub route_key: String,
    /// Function whose integration the route targets.
    pub function: Option<String>,
    /// Authorizer name when the route uses one (only `$connect` can).
    pub authorizer: Option<String>,
}

impl RouteSpec {
    async fn put(
        &self,
        cx: &Applying<'_>,
        existing: Option<&str>,
    ) -> Result<Option<String>, AwsError> {
        let (clients, api_id) = (cx.clients, cx.api_id());
        let integration = self
            .function
            .as_deref()
            .and_then(|f| cx.live.physical_id(Kind::Integration, f));
        let authorizer = self
            .authorizer
            .as_deref()
            .and_then(|a| cx.live.physical_id(Kind::Authorizer, a));
        let target = integration.map(|i| format!("integrations/{i}"));
        let auth_type = if authorizer.is_some() {
            AuthorizationType::Custom
        } else {
            AuthorizationType::None
        };
        if let Some(id) = existing {
            clients
                .apigw
                .update_route()
                .api_id(api_id)
                .route_id(id)
                .set_target(target)
                .authorization_type(auth_type)
                // UpdateRoute changes only what it is sent: `NONE` alone leaves the old
                // authorizer's id on the route, which then keeps the authorizer from being
                // deleted (409 "is referenced in route"; cloudformation-coverage-roadmap #2184).
                .authorizer_id(authorizer.unwrap_or_default())
                .send()
                .await
                .ctx("UpdateRoute", &self.route_key)?;
            return Ok(Some(id.to_string()));
        }
        let created = clients
            .apigw
            .create_route()
            .api_id(api_id)
            .route_key(&self.route_key)
            .set_target(target)
            .authorization_type(auth_type)
            .set_authorizer_id(authorizer.map(str::to_string))
            .send()
            .await
            .ctx("CreateRoute", &self.route_key)?;
        Ok(Some(created.route_id.unwrap_or_default()))
    }
}

impl Resource for RouteSpec {
    const LABEL: &'static str = "route";
    const WAVE: u8 = 5;

    fn name(&self) -> &str {
        &self.route_key
    }

    fn needs_deployment(_action: &crate::engine::plan::Action) -> bool {
        true
    }

    async fn create(&self, cx: &Applying<'_>) -> Result<Option<String>, AwsError> {
        self.put(cx, None).await
    }

    async fn update(
        &self,
        _current: &Self,
        physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<Option<String>, AwsError> {
        self.put(cx, physical_id).await
    }

    async fn delete(
        _name: &str,
        physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<(), AwsError> {
        let Some(id) = physical_id else {
            return Ok(());
        };
        let request = cx.clients.apigw.delete_route();
        found(request.api_id(cx.api_id()).route_id(id).send().await).ctx("DeleteRoute", id)?;
        Ok(())
    }

    fn goes_with(_name: &str, other: &ResourceId) -> bool {
        goes_with_the_api(other)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageSpec {
    pub name: String,
    pub auto_deploy: bool,
    pub throttling_burst: i32,
    pub throttling_rate: f64,
    pub access_log: Option<AccessLog>,
    pub tags: Tags,
}

/// Where and how the stage writes its access log (API reference, AccessLogSettings).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccessLog {
    /// The log group's ARN, without the `:*` of its streams.
    pub destination_arn: String,
    pub format: String,
    /// The account's CloudWatch Logs role API Gateway writes through: said in the plan, never
    /// compared (it is the account's setting, planned on its own).
    #[serde(skip)]
    pub role: String,
}

impl AccessLog {
    fn settings(access_log: Option<&AccessLog>) -> AccessLogSettings {
        // An empty AccessLogSettings turns access logging off.
        let builder = AccessLogSettings::builder();
        match access_log {
            Some(a) => builder
                .destination_arn(&a.destination_arn)
                .format(&a.format)
                .build(),
            None => builder.build(),
        }
    }
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

/// The endpoint has no such operation: an emulator answering an unknown URL (404) or a call it
/// lacks (500/501) without an AWS error code. AWS itself names every error it returns.
fn unimplemented<E: ProvideErrorMetadata>(
    err: &aws_smithy_runtime_api::client::result::SdkError<
        E,
        aws_smithy_runtime_api::http::Response,
    >,
) -> bool {
    let code = err.as_service_error().and_then(|e| e.code());
    let status = err.raw_response().map(|r| r.status().as_u16());
    matches!(
        code,
        None | Some("NotImplemented" | "NotImplementedException")
    ) && matches!(status, Some(404 | 405 | 500 | 501))
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

impl StageSpec {
    /// UpdateStage and stage tagging, in place: the stage keeps its deployment, its URL and
    /// its connected clients. `Ok(false)` when the endpoint lacks one of the calls.
    async fn update_in_place(
        &self,
        current: &StageSpec,
        cx: &Applying<'_>,
    ) -> Result<bool, AwsError> {
        let (clients, api_id) = (cx.clients, cx.api_id());
        let logs_changed = self.access_log != current.access_log;
        let settings_changed = self.auto_deploy != current.auto_deploy
            || self.throttling_burst != current.throttling_burst
            || self.throttling_rate != current.throttling_rate
            || logs_changed;
        if settings_changed {
            let sent = clients
                .apigw
                .update_stage()
                .api_id(api_id)
                .stage_name(&self.name)
                .auto_deploy(self.auto_deploy)
                .set_access_log_settings(
                    logs_changed.then(|| AccessLog::settings(self.access_log.as_ref())),
                )
                .default_route_settings(
                    RouteSettings::builder()
                        .throttling_burst_limit(self.throttling_burst)
                        .throttling_rate_limit(self.throttling_rate)
                        .build(),
                )
                .customize()
                .config_override(attempts())
                .send()
                .await;
            match sent {
                Err(e) if emulated(clients) && unimplemented(&e) => {
                    cx.reporter.note(
                        "the endpoint does not implement UpdateStage; replacing the stage instead",
                    );
                    return Ok(false);
                }
                other => {
                    other.ctx("UpdateStage", &self.name)?;
                }
            }
        }
        let Some(change) = TagChange::between(Some(&current.tags), &self.tags) else {
            return Ok(true);
        };
        let arn = stage_resource_arn(&clients.region, api_id, &self.name);
        if !retag(clients, &arn, change, &self.name, true).await? {
            cx.reporter.note(
                "the endpoint does not implement tagging a stage; replacing the stage instead",
            );
            return Ok(false);
        }
        Ok(true)
    }
}

impl Resource for StageSpec {
    const LABEL: &'static str = "stage";
    const WAVE: u8 = 6;

    fn name(&self) -> &str {
        &self.name
    }

    fn drops(_name: &str, action: &crate::engine::plan::Action) -> Option<&'static str> {
        stage_drops(action)
    }

    /// A new stage serves nothing before its first deployment; its settings change in place.
    fn needs_deployment(action: &crate::engine::plan::Action) -> bool {
        matches!(
            action,
            crate::engine::plan::Action::Create | crate::engine::plan::Action::Replace(_)
        )
    }

    async fn create(&self, cx: &Applying<'_>) -> Result<Option<String>, AwsError> {
        let (clients, api_id) = (cx.clients, cx.api_id());
        clients
            .apigw
            .create_stage()
            .api_id(api_id)
            .stage_name(&self.name)
            .auto_deploy(self.auto_deploy)
            .default_route_settings(
                RouteSettings::builder()
                    .throttling_burst_limit(self.throttling_burst)
                    .throttling_rate_limit(self.throttling_rate)
                    .build(),
            )
            .set_access_log_settings(
                self.access_log
                    .as_ref()
                    .map(|a| AccessLog::settings(Some(a))),
            )
            .set_tags(Some(self.tags.clone().into_iter().collect()))
            .description("managed by wsctl")
            .send()
            .await
            .ctx("CreateStage", &self.name)?;
        Ok(Some(self.name.clone()))
    }

    /// Every field of a stage changes in place on AWS (UpdateStage, TagResource). An emulator
    /// lacking those calls gets the stage replaced instead, without asking again: a local
    /// emulator's stage serves no client (`wsctl dev` serves its own gateway from what the
    /// control plane says), so nothing is dropped, and stopping half-way through an apply to
    /// ask would leave the stack half-changed for no gain.
    async fn update(
        &self,
        current: &Self,
        physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<Option<String>, AwsError> {
        if physical_id.is_none() {
            return self.create(cx).await;
        }
        if self.update_in_place(current, cx).await? {
            return Ok(Some(self.name.clone()));
        }
        Self::delete(&self.name, physical_id, cx).await?;
        self.create(cx).await
    }
    async fn delete(
        _name: &str,
        physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<(), AwsError> {
        let Some(id) = physical_id else {
            return Ok(());
        };
        let request = cx.clients.apigw.delete_stage();
        found(request.api_id(cx.api_id()).stage_name(id).send().await).ctx("DeleteStage", id)?;
        Ok(())
    }

    fn goes_with(_name: &str, other: &ResourceId) -> bool {
        goes_with_the_api(other)
    }

    fn note(&self, current: Option<&Self>) -> Option<String> {
        let a = self.access_log.as_ref()?;
        if current.is_some_and(|c| c.access_log.is_some()) || a.role.is_empty() {
            return None;
        }
        let group = a
            .destination_arn
            .rsplit("log-group:")
            .next()
            .unwrap_or_default();
        Some(format!(
            "API Gateway writes the stage's access log to log group {group}, through the account's CloudWatch Logs role {}",
            a.role
        ))
    }
}

/// How long a deploy waits for the stage's own auto-deployment before deploying it itself, and
/// then for that deployment to finish. AWS deploys within seconds; these only bound a hang.
const AUTO_DEPLOY_WAIT: Duration = Duration::from_secs(10);
/// How CreateDeployment waits for the account's next slot (one every 5 s).
const DEPLOYMENT_SLOT: super::Pace = super::Pace {
    first: Duration::from_secs(5),
    max: Duration::from_secs(10),
    window: Duration::from_secs(120),
};
const DEPLOYMENT_WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(500);

/// The deployment a stage serves, and what its last auto-deployment said.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Served {
    pub deployment_id: Option<String>,
    pub message: Option<String>,
}

/// What the stage serves now (default when it does not exist yet).
pub async fn served(clients: &Clients, api_id: &str, stage: &str) -> Result<Served, AwsError> {
    let got = found(
        clients
            .apigw
            .get_stage()
            .api_id(api_id)
            .stage_name(stage)
            .send()
            .await,
    )
    .ctx("GetStage", stage)?;
    Ok(got
        .map(|s| Served {
            deployment_id: s.deployment_id,
            message: s.last_deployment_status_message,
        })
        .unwrap_or_default())
}

/// Makes sure the stage serves what was just changed under the API. Routes, integrations and
/// authorizers reach clients only through a deployment ("Deploy WebSocket APIs in API
/// Gateway": every change other than stage settings needs a redeployment). A stage with
/// AutoDeploy deploys by itself, asynchronously: the stage then names a new `DeploymentId`,
/// and a failed attempt is reported only in its `LastDeploymentStatusMessage` (API reference,
/// Stage). So: wait for a new deployment and read its `DeploymentStatus` (GetDeployment:
/// PENDING, DEPLOYED or FAILED); if none came, deploy with CreateDeployment (StageName).
pub async fn confirm_deployment(
    clients: &Clients,
    api_id: &str,
    stage: &str,
    before: &Served,
    note: &dyn Fn(&str),
) -> Result<(), AwsError> {
    if emulated(clients) {
        let probe = clients
            .apigw
            .get_deployments()
            .api_id(api_id)
            .max_results("1")
            .customize()
            .config_override(attempts())
            .send()
            .await;
        match probe {
            Err(e) if unimplemented(&e) => {
                // moto has no deployments: its control plane is all there is to serve.
                note(
                    "the endpoint does not implement deployments; not checking that the stage serves the changes",
                );
                return Ok(());
            }
            other => {
                other.ctx("GetDeployments", api_id)?;
            }
        }
    }
    let started = Instant::now();
    loop {
        let now = served(clients, api_id, stage).await?;
        match &now.deployment_id {
            Some(id) if now.deployment_id != before.deployment_id => {
                if let Some(done) = settled(clients, api_id, stage, id, started).await? {
                    return done;
                }
            }
            // The attempt is over and the stage kept its old deployment: it failed.
            _ if now.message.is_some() && now.message != before.message => {
                return Err(not_deployed(stage, now.message.unwrap_or_default()));
            }
            _ => {}
        }
        if started.elapsed() >= AUTO_DEPLOY_WAIT {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    note(&format!(
        "stage {stage} did not deploy the changes by itself within {} s; deploying them",
        AUTO_DEPLOY_WAIT.as_secs()
    ));
    // "CreateDeployment: 1 request every 5 seconds per account" ("Amazon API Gateway
    // quotas"): another stack of the account deploying at the same moment takes the slot.
    let created = super::while_refused(
        "CreateDeployment",
        stage,
        DEPLOYMENT_SLOT,
        |code, _| code == "TooManyRequestsException",
        || {
            clients
                .apigw
                .create_deployment()
                .api_id(api_id)
                .stage_name(stage)
                .description("deployed by wsctl")
                .send()
        },
    )
    .await?;
    let id = created.deployment_id.unwrap_or_default();
    match created.deployment_status {
        Some(DeploymentStatus::Failed) => Err(not_deployed(
            stage,
            created.deployment_status_message.unwrap_or_default(),
        )),
        Some(DeploymentStatus::Pending) => settled(clients, api_id, stage, &id, Instant::now())
            .await?
            .unwrap_or_else(|| {
                Err(not_deployed(
                    stage,
                    "the deployment is still PENDING".into(),
                ))
            }),
        _ => Ok(()),
    }
}

/// Waits for deployment `id` to leave PENDING: `None` if it is still pending when the wait
/// (counted from `since`) is over.
async fn settled(
    clients: &Clients,
    api_id: &str,
    stage: &str,
    id: &str,
    since: Instant,
) -> Result<Option<Result<(), AwsError>>, AwsError> {
    loop {
        let d = clients
            .apigw
            .get_deployment()
            .api_id(api_id)
            .deployment_id(id)
            .send()
            .await
            .ctx("GetDeployment", id)?;
        match d.deployment_status {
            Some(DeploymentStatus::Failed) => {
                let message = d.deployment_status_message.unwrap_or_default();
                return Ok(Some(Err(not_deployed(stage, message))));
            }
            Some(DeploymentStatus::Pending) if since.elapsed() < DEPLOYMENT_WAIT => {
                tokio::time::sleep(POLL).await;
            }
            Some(DeploymentStatus::Pending) => return Ok(None),
            _ => return Ok(Some(Ok(()))),
        }
    }
}

fn not_deployed(stage: &str, message: String) -> AwsError {
    AwsError::NotDeployed {
        stage: stage.to_string(),
        message,
    }
}
