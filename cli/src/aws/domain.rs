//! A custom domain for the stage: the regional DomainName (tagged as the stack's own) and the
//! API mapping that serves the stage under it.
//!
//! Domain names are unique per account and region, so the domain is found by its tags; its
//! mappings have no tags and are read through it, as an API's children are.

use aws_sdk_apigatewayv2::types::{DomainNameConfiguration, EndpointType, SecurityPolicy};
use serde::Serialize;

use super::{AwsError, CallContext, Clients, TagChange, all_pages, found};
use crate::engine::model::*;
use crate::names::Names;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DomainSpec {
    pub name: String,
    pub certificate_arn: String,
    pub tags: Tags,
}

/// Where a client's DNS must point for the domain to reach API Gateway.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DnsTarget {
    /// `d-….execute-api.REGION.amazonaws.com`: the CNAME (or alias) target.
    pub target: Option<String>,
    /// The Route 53 hosted zone of that target, for an alias record.
    pub hosted_zone_id: Option<String>,
    /// `AVAILABLE` once API Gateway serves the domain.
    pub status: Option<String>,
}

impl Resource for DomainSpec {
    const LABEL: &'static str = "domain";
    // Needs nothing of the stack: created beside the stage.
    const WAVE: u8 = 6;

    fn name(&self) -> &str {
        &self.name
    }

    fn drops(_name: &str, action: &crate::engine::plan::Action) -> Option<&'static str> {
        matches!(
            action,
            crate::engine::plan::Action::Delete | crate::engine::plan::Action::Replace(_)
        )
        .then_some("the stage's URL on the custom domain stops working")
    }

    /// Reads the stack's domains and their API mappings.
    async fn read(
        clients: &Clients,
        names: &Names,
        expected: &[String],
        live: &mut LiveState,
    ) -> Result<(), AwsError> {
        let domains = all_pages(async |token| {
            let page = clients
                .apigw
                .get_domain_names()
                .set_next_token(token)
                .send()
                .await
                .ctx("GetDomainNames", "*")?;
            Ok((page.items.unwrap_or_default(), page.next_token))
        })
        .await?;
        for domain in domains {
            let Some(name) = domain.domain_name else {
                continue;
            };
            let tags: Tags = domain.tags.unwrap_or_default().into_iter().collect();
            if !names.owns(&tags) {
                if expected.contains(&name) {
                    live.foreign.push(ResourceId {
                        kind: Kind::Domain,
                        name,
                    });
                }
                continue;
            }
            let certificate_arn = domain
                .domain_name_configurations
                .unwrap_or_default()
                .into_iter()
                .find_map(|c| c.certificate_arn)
                .unwrap_or_default();
            let spec = DomainSpec {
                name: name.clone(),
                certificate_arn,
                tags,
            };
            live.resources.insert(
                ResourceId {
                    kind: Kind::Domain,
                    name: name.clone(),
                },
                Live {
                    spec: Spec::Domain(spec),
                    physical_id: domain.domain_name_arn,
                },
            );
            let mappings = all_pages(async |token| {
                let page = clients
                    .apigw
                    .get_api_mappings()
                    .domain_name(&name)
                    .set_next_token(token)
                    .send()
                    .await
                    .ctx("GetApiMappings", &name)?;
                Ok((page.items.unwrap_or_default(), page.next_token))
            })
            .await?;
            // The domain is the stack's own, so every mapping on it is too.
            for m in mappings {
                let spec = ApiMappingSpec::new(
                    &name,
                    m.api_mapping_key.as_deref().unwrap_or_default(),
                    m.api_id.as_deref().unwrap_or_default(),
                    m.stage.as_deref().unwrap_or_default(),
                );
                let id = ResourceId {
                    kind: Kind::ApiMapping,
                    name: spec.name.clone(),
                };
                live.resources.insert(
                    id,
                    Live {
                        spec: Spec::ApiMapping(spec),
                        physical_id: m.api_mapping_id,
                    },
                );
            }
        }
        Ok(())
    }

    async fn create(&self, cx: &Applying<'_>) -> Result<Option<String>, AwsError> {
        let created = cx
            .clients
            .apigw
            .create_domain_name()
            .domain_name(&self.name)
            .domain_name_configurations(self.configuration())
            .set_tags(Some(self.tags.clone().into_iter().collect()))
            .send()
            .await
            .ctx("CreateDomainName", &self.name)?;
        Ok(created.domain_name_arn)
    }

    async fn update(
        &self,
        current: &Self,
        physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<Option<String>, AwsError> {
        let apigw = &cx.clients.apigw;
        if current.certificate_arn != self.certificate_arn {
            // A new certificate is swapped in place; the domain keeps serving meanwhile.
            apigw
                .update_domain_name()
                .domain_name(&self.name)
                .domain_name_configurations(self.configuration())
                .send()
                .await
                .ctx("UpdateDomainName", &self.name)?;
        }
        let arn = physical_id.unwrap_or_default();
        if let Some(change) = TagChange::between(Some(&current.tags), &self.tags) {
            super::apigw::retag(cx.clients, arn, change, &self.name, false).await?;
        }
        Ok(physical_id.map(str::to_string))
    }

    /// Deleting a domain deletes its API mappings too.
    async fn delete(
        name: &str,
        _physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<(), AwsError> {
        let request = cx.clients.apigw.delete_domain_name().domain_name(name);
        found(request.send().await).ctx("DeleteDomainName", name)?;
        Ok(())
    }
}

impl DomainSpec {
    /// WebSocket APIs take only regional domains; TLS 1.2 is the strictest policy they accept.
    fn configuration(&self) -> DomainNameConfiguration {
        DomainNameConfiguration::builder()
            .certificate_arn(&self.certificate_arn)
            .endpoint_type(EndpointType::Regional)
            .security_policy(SecurityPolicy::Tls12)
            .build()
    }
}

/// What DNS must say for `domain` to reach the stage, as API Gateway reports it; `None` while
/// the domain does not exist.
pub async fn dns_target(clients: &Clients, domain: &str) -> Result<Option<DnsTarget>, AwsError> {
    let request = clients.apigw.get_domain_name().domain_name(domain);
    let Some(got) = found(request.send().await).ctx("GetDomainName", domain)? else {
        return Ok(None);
    };
    let config = got
        .domain_name_configurations
        .unwrap_or_default()
        .into_iter()
        .next();
    Ok(Some(DnsTarget {
        target: config
            .as_ref()
            .and_then(|c| c.api_gateway_domain_name.clone()),
        hosted_zone_id: config.as_ref().and_then(|c| c.hosted_zone_id.clone()),
        status: config.and_then(|c| c.domain_name_status.map(|s| s.as_str().to_string())),
    }))
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiMappingSpec {
    /// `DOMAIN/KEY`: unique, because a key is unique on its domain.
    #[serde(skip)]
    name: String,
    pub domain: String,
    pub api_mapping_key: String,
    pub api_id: String,
    pub stage: String,
}

impl ApiMappingSpec {
    pub fn new(domain: &str, api_mapping_key: &str, api_id: &str, stage: &str) -> ApiMappingSpec {
        ApiMappingSpec {
            name: format!("{domain}/{api_mapping_key}"),
            domain: domain.into(),
            api_mapping_key: api_mapping_key.into(),
            api_id: api_id.into(),
            stage: stage.into(),
        }
    }
}

impl Resource for ApiMappingSpec {
    const LABEL: &'static str = "api mapping";
    // After the stage it serves and the domain it lives on.
    const WAVE: u8 = 7;
    // The key is the mapping's address on the domain: another key is another mapping.
    const IMMUTABLE_FIELDS: &'static [&'static str] = &["domain", "api_mapping_key"];

    fn name(&self) -> &str {
        &self.name
    }

    fn drops(_name: &str, action: &crate::engine::plan::Action) -> Option<&'static str> {
        matches!(
            action,
            crate::engine::plan::Action::Delete | crate::engine::plan::Action::Replace(_)
        )
        .then_some("the stage's URL on the custom domain stops working")
    }

    async fn create(&self, cx: &Applying<'_>) -> Result<Option<String>, AwsError> {
        let created = cx
            .clients
            .apigw
            .create_api_mapping()
            .domain_name(&self.domain)
            .api_mapping_key(&self.api_mapping_key)
            .api_id(cx.api_id())
            .stage(&self.stage)
            .send()
            .await
            .ctx("CreateApiMapping", &self.name)?;
        Ok(created.api_mapping_id)
    }

    async fn update(
        &self,
        _current: &Self,
        physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<Option<String>, AwsError> {
        let Some(id) = physical_id else {
            return self.create(cx).await;
        };
        cx.clients
            .apigw
            .update_api_mapping()
            .api_mapping_id(id)
            .domain_name(&self.domain)
            .api_mapping_key(&self.api_mapping_key)
            .api_id(cx.api_id())
            .stage(&self.stage)
            .send()
            .await
            .ctx("UpdateApiMapping", &self.name)?;
        Ok(Some(id.to_string()))
    }

    async fn delete(
        name: &str,
        physical_id: Option<&str>,
        cx: &Applying<'_>,
    ) -> Result<(), AwsError> {
        let Some(id) = physical_id else {
            return Ok(());
        };
        let domain = name.split_once('/').map_or(name, |(d, _)| d);
        let request = cx.clients.apigw.delete_api_mapping();
        found(request.domain_name(domain).api_mapping_id(id).send().await)
            .ctx("DeleteApiMapping", name)?;
        Ok(())
    }

    fn goes_with(name: &str, other: &ResourceId) -> bool {
        other.kind == Kind::Domain && name.split_once('/').is_some_and(|(d, _)| d == other.name)
    }
}
