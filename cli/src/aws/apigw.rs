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

use super::{AwsError, Clients, Ctx, found};
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

pub async fn read(clients: &Clients, names: &Names, live: &mut LiveState) -> Result<(), AwsError> {
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

pub async fn create_api(clients: &Clients, spec: &ApiSpec) -> Result<String, AwsError> {
    let created = clients
        .apigw
        .create_api()
        .name(&spec.name)
        .protocol_type(ProtocolType::Websocket)
        .route_selection_expression(&spec.route_selection_expression)
        .set_tags(Some(spec.tags.clone().into_iter().collect()))
        .description("WebSocket API managed by wsctl")
        .send()
        .await
        .ctx("CreateApi", &spec.name)?;
    Ok(created.api_id.unwrap_or_default())
}

pub async fn update_api(
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
    if spec.tags != current.tags {
        let arn = api_resource_arn(&clients.region, api_id);
        let stale = super::removed_keys(&current.tags, &spec.tags);
        if !stale.is_empty() {
            clients
                .apigw
                .untag_resource()
                .resource_arn(&arn)
                .set_tag_keys(Some(stale))
                .send()
                .await
                .ctx("UntagResource", &spec.name)?;
        }
        clients
            .apigw
            .tag_resource()
            .resource_arn(&arn)
            .set_tags(Some(spec.tags.clone().into_iter().collect()))
            .send()
            .await
            .ctx("TagResource", &spec.name)?;
    }
    Ok(())
}

pub async fn delete_api(clients: &Clients, api_id: &str) -> Result<(), AwsError> {
    found(clients.apigw.delete_api().api_id(api_id).send().await).ctx("DeleteApi", api_id)?;
    Ok(())
}

pub async fn put_integration(
    clients: &Clients,
    api_id: &str,
    spec: &IntegrationSpec,
    existing: Option<&str>,
) -> Result<String, AwsError> {
    if let Some(id) = existing {
        clients
            .apigw
            .update_integration()
            .api_id(api_id)
            .integration_id(id)
            .integration_uri(&spec.uri)
            .timeout_in_millis(spec.timeout_ms)
            .send()
            .await
            .ctx("UpdateIntegration", &spec.function)?;
        return Ok(id.to_string());
    }
    let created = clients
        .apigw
        .create_integration()
        .api_id(api_id)
        .integration_type(IntegrationType::AwsProxy)
        .integration_method("POST")
        .integration_uri(&spec.uri)
        .timeout_in_millis(spec.timeout_ms)
        .send()
        .await
        .ctx("CreateIntegration", &spec.function)?;
    Ok(created.integration_id.unwrap_or_default())
}

pub async fn put_authorizer(
    clients: &Clients,
    api_id: &str,
    spec: &AuthorizerSpec,
    existing: Option<&str>,
) -> Result<String, AwsError> {
    if let Some(id) = existing {
        clients
            .apigw
            .update_authorizer()
            .api_id(api_id)
            .authorizer_id(id)
            .authorizer_uri(&spec.uri)
            .set_identity_source(Some(spec.identity_source.clone()))
            .send()
            .await
            .ctx("UpdateAuthorizer", &spec.name)?;
        return Ok(id.to_string());
    }
    let created = clients
        .apigw
        .create_authorizer()
        .api_id(api_id)
        .name(&spec.name)
        .authorizer_type(AuthorizerType::Request)
        .authorizer_uri(&spec.uri)
        .set_identity_source(Some(spec.identity_source.clone()))
        .send()
        .await
        .ctx("CreateAuthorizer", &spec.name)?;
    Ok(created.authorizer_id.unwrap_or_default())
}

/// `integration` and `authorizer` are the physical ids the route's logical references resolve to.
pub async fn put_route(
    clients: &Clients,
    api_id: &str,
    spec: &RouteSpec,
    integration: Option<&str>,
    authorizer: Option<&str>,
    existing: Option<&str>,
) -> Result<String, AwsError> {
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
            .ctx("UpdateRoute", &spec.route_key)?;
        return Ok(id.to_string());
    }
    let created = clients
        .apigw
        .create_route()
        .api_id(api_id)
        .route_key(&spec.route_key)
        .set_target(target)
        .authorization_type(auth_type)
        .set_authorizer_id(authorizer.map(str::to_string))
        .send()
        .await
        .ctx("CreateRoute", &spec.route_key)?;
    Ok(created.route_id.unwrap_or_default())
}

pub async fn create_stage(
    clients: &Clients,
    api_id: &str,
    spec: &StageSpec,
) -> Result<(), AwsError> {
    clients
        .apigw
        .create_stage()
        .api_id(api_id)
        .stage_name(&spec.name)
        .auto_deploy(spec.auto_deploy)
        .default_route_settings(
            RouteSettings::builder()
                .throttling_burst_limit(spec.throttling_burst)
                .throttling_rate_limit(spec.throttling_rate)
                .build(),
        )
        .set_tags(Some(spec.tags.clone().into_iter().collect()))
        .description("managed by wsctl")
        .send()
        .await
        .ctx("CreateStage", &spec.name)?;
    Ok(())
}

/// Deletes one child of the API by kind.
pub async fn delete_child(
    clients: &Clients,
    api_id: &str,
    kind: Kind,
    id: &str,
) -> Result<(), AwsError> {
    let api = &clients.apigw;

    match kind {
        Kind::Route => found(api.delete_route().api_id(api_id).route_id(id).send().await)
            .ctx("DeleteRoute", id)
            .map(|_| ()),
        Kind::Integration => found(
            api.delete_integration()
                .api_id(api_id)
                .integration_id(id)
                .send()
                .await,
        )
        .ctx("DeleteIntegration", id)
        .map(|_| ()),
        Kind::Authorizer => found(
            api.delete_authorizer()
                .api_id(api_id)
                .authorizer_id(id)
                .send()
                .await,
        )
        .ctx("DeleteAuthorizer", id)
        .map(|_| ()),
        Kind::Stage => found(
            api.delete_stage()
                .api_id(api_id)
                .stage_name(id)
                .send()
                .await,
        )
        .ctx("DeleteStage", id)
        .map(|_| ()),
        _ => unreachable!("not a child of the API: {kind:?}"),
    }
}
