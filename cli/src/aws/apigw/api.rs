//! The WebSocket API itself, and the read of everything it holds.

use super::*;

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
            Err(e) => return Err(crate::aws::classify(e, "GetAuthorizers", api_id)),
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
