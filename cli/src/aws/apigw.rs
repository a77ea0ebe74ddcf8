//! The WebSocket API and what it holds: integrations, the `$connect` authorizer, routes, stage.
//!
//! The API is found by name and tags; its children have no tags and are found through it.
//! Ids are mapped back to logical names (an integration to its function, a route's target to
//! a function) so live state compares with the config.

use std::collections::BTreeMap;

use aws_config::retry::RetryConfig;
use aws_sdk_apigatewayv2::types::{
    AuthorizationType, AuthorizerType, IntegrationType, ProtocolType, RouteSettings,
};
use serde::Serialize;

use super::{AwsError, Clients, Ctx, TagChange, found};
use crate::engine::desired::Names;
use crate::engine::model::*;

pub fn api_resource_arn(region: &str, api_id: &str) -> String {
    format!("arn:aws:apigateway:{region}::/apis/{api_id}")
}

/// The stack's APIs (tagged as its own), oldest first: the first is the stack's API, any other
/// was left by an interrupted create.
async fn owned_apis(
    clients: &Clients,
    names: &Names,
) -> Result<Vec<(aws_sdk_apigatewayv2::types::Api, Tags)>, AwsError> {
    let wanted = names.api();
    let mut apis = Vec::new();
    let mut token = None;
    loop {
        let page = clients
            .apigw
            .get_apis()
            .set_next_token(token)
            .send()
            .await
            .ctx("GetApis", &wanted)?;
        apis.extend(
            page.items
                .unwrap_or_default()
                .into_iter()
                .filter(|a| a.name.as_deref() == Some(wanted.as_str())),
        );
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
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
        let mut token = None;
        loop {
            let page = clients
                .apigw
                .get_integrations()
                .api_id(&api_id)
                .set_next_token(token)
                .send()
                .await
                .ctx("GetIntegrations", &api_id)?;
            for i in page.items.unwrap_or_default() {
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
            token = page.next_token;
            if token.is_none() {
                break;
            }
        }

        let mut routes = Vec::new();
        let mut token = None;
        loop {
            let page = clients
                .apigw
                .get_routes()
                .api_id(&api_id)
                .set_next_token(token)
                .send()
                .await
                .ctx("GetRoutes", &api_id)?;
            routes.extend(page.items.unwrap_or_default());
            token = page.next_token;
            if token.is_none() {
                break;
            }
        }

        let authorizers = read_authorizers(
            clients,
            &api_id,
            routes.iter().filter_map(|r| r.authorizer_id.clone()),
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
            let authorizer = match r.authorization_type {
                Some(AuthorizationType::Custom) => r.authorizer_id.as_ref().map(|a| {
                    authorizer_name
                        .get(a)
                        .cloned()
                        .unwrap_or_else(|| format!("(missing authorizer {a})"))
                }),
                _ => None,
            };
            let key = r.route_key.unwrap_or_default();
            let spec = RouteSpec {
                route_key: key.clone(),
                function,
                authorizer,
            };
            insert(Kind::Route, key, Spec::Route(spec), id);
        }

        let stages = clients
            .apigw
            .get_stages()
            .api_id(&api_id)
            .send()
            .await
            .ctx("GetStages", &api_id)?;
        for s in stages.items.unwrap_or_default() {
            let settings = s
                .default_route_settings
                .unwrap_or_else(|| RouteSettings::builder().build());
            let spec = StageSpec {
                name: s.stage_name.clone().unwrap_or_default(),
                auto_deploy: s.auto_deploy.unwrap_or(false),
                throttling_burst: settings.throttling_burst_limit.unwrap_or_default(),
                throttling_rate: settings.throttling_rate_limit.unwrap_or_default(),
                tags: s.tags.map(|t| t.into_iter().collect()).unwrap_or_default(),
            };
            let name = s.stage_name.unwrap_or_default();
            insert(Kind::Stage, name.clone(), Spec::Stage(spec), name);
        }
        Ok(())
    }

    async fn create(&self, cx: &Cx<'_>) -> Result<Option<String>, AwsError> {
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
        cx: &Cx<'_>,
    ) -> Result<Option<String>, AwsError> {
        let Some(id) = physical_id else {
            return self.create(cx).await;
        };
        update_api(cx.clients, id, self, current).await?;
        Ok(Some(id.to_string()))
    }

    /// By id: API names are not unique, and an interrupted create may have left a namesake.
    async fn delete(_name: &str, physical_id: Option<&str>, cx: &Cx<'_>) -> Result<(), AwsError> {
        let api_id = physical_id.unwrap_or(cx.api_id());
        found(cx.clients.apigw.delete_api().api_id(api_id).send().await)
            .ctx("DeleteApi", api_id)?;
        Ok(())
    }
}

/// Deleting the stack's API deletes everything it holds. Extra APIs (`name#id`, left by an
/// interrupted create) hold none of the children the stack reads.
fn goes_with_the_api(other: &ResourceId) -> bool {
    other.kind == Kind::Api && !other.name.contains('#')
}

/// Lists the authorizers. Where the list call is unavailable, those the routes reference are
/// read one by one: an authorizer no route uses can then only go with its API.
async fn read_authorizers(
    clients: &Clients,
    api_id: &str,
    referenced: impl Iterator<Item = String>,
) -> Result<Vec<aws_sdk_apigatewayv2::types::Authorizer>, AwsError> {
    let listed = clients
        .apigw
        .get_authorizers()
        .api_id(api_id)
        .customize()
        .config_override(
            aws_sdk_apigatewayv2::config::Builder::default().retry_config(RetryConfig::disabled()),
        )
        .send()
        .await;
    match listed {
        Ok(page) if page.next_token.is_none() => return Ok(page.items.unwrap_or_default()),
        Ok(_) => {}
        Err(e)
            if e.raw_response()
                .is_some_and(|r| r.status().is_server_error()) => {}
        Err(e) => return Err(super::classify(e, "GetAuthorizers", api_id)),
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

/// `arn:aws:apigateway:R:lambda:path/2015-03-31/functions/arn:aws:lambda:R:A:function:NAME/invocations`
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
    change
        .apply(
            async |keys| {
                clients
                    .apigw
                    .untag_resource()
                    .resource_arn(&arn)
                    .set_tag_keys(Some(keys))
                    .send()
                    .await
                    .ctx("UntagResource", &spec.name)
                    .map(drop)
            },
            async |tags| {
                clients
                    .apigw
                    .tag_resource()
                    .resource_arn(&arn)
                    .set_tags(Some(tags.clone().into_iter().collect()))
                    .send()
                    .await
                    .ctx("TagResource", &spec.name)
                    .map(drop)
            },
        )
        .await
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntegrationSpec {
    /// The function it invokes (logical key).
    pub function: String,
    pub uri: String,
    pub timeout_ms: i32,
}

impl IntegrationSpec {
    async fn put(&self, cx: &Cx<'_>, existing: Option<&str>) -> Result<Option<String>, AwsError> {
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

    async fn create(&self, cx: &Cx<'_>) -> Result<Option<String>, AwsError> {
        self.put(cx, None).await
    }

    async fn update(
        &self,
        _current: &Self,
        physical_id: Option<&str>,
        cx: &Cx<'_>,
    ) -> Result<Option<String>, AwsError> {
        self.put(cx, physical_id).await
    }

    async fn delete(_name: &str, physical_id: Option<&str>, cx: &Cx<'_>) -> Result<(), AwsError> {
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

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuthorizerSpec {
    pub name: String,
    pub function: String,
    pub uri: String,
    pub identity_source: Vec<String>,
}

impl AuthorizerSpec {
    async fn put(&self, cx: &Cx<'_>, existing: Option<&str>) -> Result<Option<String>, AwsError> {
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

    async fn create(&self, cx: &Cx<'_>) -> Result<Option<String>, AwsError> {
        self.put(cx, None).await
    }

    async fn update(
        &self,
        _current: &Self,
        physical_id: Option<&str>,
        cx: &Cx<'_>,
    ) -> Result<Option<String>, AwsError> {
        self.put(cx, physical_id).await
    }

    async fn delete(_name: &str, physical_id: Option<&str>, cx: &Cx<'_>) -> Result<(), AwsError> {
        let Some(id) = physical_id else {
            return Ok(());
        };
        let request = cx.clients.apigw.delete_authorizer();
        found(request.api_id(cx.api_id()).authorizer_id(id).send().await)
            .ctx("DeleteAuthorizer", id)?;
        Ok(())
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
    async fn put(&self, cx: &Cx<'_>, existing: Option<&str>) -> Result<Option<String>, AwsError> {
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
                .set_authorizer_id(authorizer.map(str::to_string))
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

    async fn create(&self, cx: &Cx<'_>) -> Result<Option<String>, AwsError> {
        self.put(cx, None).await
    }

    async fn update(
        &self,
        _current: &Self,
        physical_id: Option<&str>,
        cx: &Cx<'_>,
    ) -> Result<Option<String>, AwsError> {
        self.put(cx, physical_id).await
    }

    async fn delete(_name: &str, physical_id: Option<&str>, cx: &Cx<'_>) -> Result<(), AwsError> {
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
    pub tags: Tags,
}

impl Resource for StageSpec {
    const LABEL: &'static str = "stage";
    const WAVE: u8 = 6;
    // Neither UpdateStage nor stage tagging is portable across endpoints (moto lacks both), and
    // a stage is cheap to recreate.
    const IMMUTABLE_FIELDS: &'static [&'static str] =
        &["auto_deploy", "throttling_burst", "throttling_rate", "tags"];

    fn name(&self) -> &str {
        &self.name
    }

    async fn create(&self, cx: &Cx<'_>) -> Result<Option<String>, AwsError> {
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
            .set_tags(Some(self.tags.clone().into_iter().collect()))
            .description("managed by wsctl")
            .send()
            .await
            .ctx("CreateStage", &self.name)?;
        Ok(Some(self.name.clone()))
    }

    async fn delete(_name: &str, physical_id: Option<&str>, cx: &Cx<'_>) -> Result<(), AwsError> {
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
}
