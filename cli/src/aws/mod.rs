//! AWS access: one `SdkConfig` for all clients, and errors turned into one clear sentence with
//! the fix. One module per service declares the specs of the kinds it holds and implements
//! [`Resource`](crate::engine::kinds::Resource) for each.

pub mod account;
pub mod apigw;
pub mod cloudwatch;
pub mod domain;
pub mod dynamodb;
pub mod events;
pub mod iam;
pub mod lambda;
pub mod logs;
pub mod policy;
pub mod sns;
pub mod ssm;

mod error;
mod retry;

use error::short;
pub use error::*;
pub use retry::*;

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_types::error::display::DisplayErrorContext;

use crate::engine::model::Tags;

/// Flags that choose the account, region and endpoint; shared by every command.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AwsArgs {
    /// Named profile from ~/.aws/config (default: AWS_PROFILE or `default`).
    #[arg(long, global = true, env = "AWS_PROFILE", hide_env_values = true)]
    pub profile: Option<String>,
    /// Region (default: `region` in wsctl.yaml, then the profile's or AWS_REGION).
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// Send every AWS call to this endpoint, e.g. a local moto server.
    /// AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE> are honoured too.
    #[arg(long, global = true)]
    pub endpoint_url: Option<String>,
    /// The server of the stage's WebSocket and `@connections` URLs, when it is not the one
    /// API Gateway reports for the API (an emulator without a gateway of its own).
    #[arg(long, global = true, env = "WSCTL_GATEWAY_URL")]
    pub gateway_url: Option<String>,
}

/// One client per service, built once from a shared config.
#[derive(Clone)]
pub struct Clients {
    pub region: String,
    pub iam: aws_sdk_iam::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub apigw: aws_sdk_apigatewayv2::Client,
    /// API Gateway's first API: only its account settings (the CloudWatch role) are used.
    pub apigateway: aws_sdk_apigateway::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub sns: aws_sdk_sns::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub sts: aws_sdk_sts::Client,
    /// The shared config, for clients built on demand (the stage's `@connections`).
    pub sdk: SdkConfig,
}

impl Clients {
    /// Resolves region and credentials up front so that a missing one is reported before
    /// anything else happens.
    pub async fn connect(args: &AwsArgs, config_region: Option<&str>) -> Result<Clients, AwsError> {
        let sdk = sdk_config(args, config_region).await;
        let region = sdk
            .region()
            .map(|r| r.to_string())
            .ok_or(AwsError::NoRegion)?;
        let provider = sdk
            .credentials_provider()
            .ok_or_else(|| AwsError::NoCredentials("no provider configured".into()))?;
        use aws_credential_types::provider::ProvideCredentials;
        provider
            .provide_credentials()
            .await
            .map_err(|e| AwsError::NoCredentials(short(&DisplayErrorContext(&e).to_string())))?;
        Ok(Clients::from_sdk(&sdk, region))
    }

    /// Clients for a local emulator: fixed dummy credentials, so neither the user's profile
    /// nor a real account is ever involved.
    pub fn local(endpoint: &str, region: &str) -> Clients {
        let creds =
            aws_credential_types::Credentials::new("local", "local", None, None, "wsctl-dev");
        let sdk = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .endpoint_url(endpoint)
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(creds),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(4))
            .build();
        Clients::from_sdk(&sdk, region.to_string())
    }

    fn from_sdk(sdk: &SdkConfig, region: String) -> Clients {
        Clients {
            region,
            iam: aws_sdk_iam::Client::from_conf(
                aws_sdk_iam::config::Builder::from(sdk)
                    .retry_classifier(QuotaIsNotThrottle)
                    .retry_classifier(PassingConflict)
                    .build(),
            ),
            lambda: aws_sdk_lambda::Client::new(sdk),
            apigw: aws_sdk_apigatewayv2::Client::new(sdk),
            apigateway: aws_sdk_apigateway::Client::new(sdk),
            dynamodb: aws_sdk_dynamodb::Client::from_conf(
                aws_sdk_dynamodb::config::Builder::from(sdk)
                    .retry_classifier(QuotaIsNotThrottle)
                    .build(),
            ),
            ssm: aws_sdk_ssm::Client::from_conf(
                aws_sdk_ssm::config::Builder::from(sdk)
                    .retry_classifier(PassingConflict)
                    .build(),
            ),
            logs: aws_sdk_cloudwatchlogs::Client::from_conf(
                aws_sdk_cloudwatchlogs::config::Builder::from(sdk)
                    .retry_classifier(QuotaIsNotThrottle)
                    .build(),
            ),
            cloudwatch: aws_sdk_cloudwatch::Client::new(sdk),
            sns: aws_sdk_sns::Client::new(sdk),
            events: aws_sdk_eventbridge::Client::new(sdk),
            sts: aws_sdk_sts::Client::new(sdk),
            sdk: sdk.clone(),
        }
    }

    /// The account the credentials belong to: every ARN the stack uses is built from it.
    pub async fn account(&self) -> Result<String, AwsError> {
        let me = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .ctx("GetCallerIdentity", "(the credentials in use)")?;
        me.account.ok_or_else(|| AwsError::Other {
            op: "GetCallerIdentity",
            resource: String::new(),
            detail: "the response named no account".into(),
        })
    }
}

async fn sdk_config(args: &AwsArgs, config_region: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        // Standard retries with more attempts: a deploy makes bursts of control-plane calls
        // that AWS throttles at a few per second.
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(8)
                .with_max_backoff(Duration::from_secs(20)),
        );
    if let Some(profile) = &args.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = args.region.as_deref().or(config_region) {
        loader = loader.region(Region::new(region.to_string()));
    }
    if let Some(endpoint) = &args.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}

/// Tags as a sorted map, from whatever shape a service returns them in.
pub fn tag_map<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Tags {
    pairs
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
}

/// How a resource's tags become the desired ones: untag the keys no longer wanted, then tag
/// with every wanted tag. Services differ only in those two calls, which the caller supplies.
#[derive(Debug, PartialEq)]
pub struct TagChange<'a> {
    remove: Vec<String>,
    set: &'a Tags,
}

impl<'a> TagChange<'a> {
    /// `None` when `live` already is `desired`. Unknown live tags (`None`) are all set again.
    pub fn between(live: Option<&Tags>, desired: &'a Tags) -> Option<TagChange<'a>> {
        let remove = match live {
            Some(live) if live == desired => return None,
            Some(live) => live
                .keys()
                .filter(|k| !desired.contains_key(*k))
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        Some(TagChange {
            remove,
            set: desired,
        })
    }

    pub async fn apply(
        self,
        untag: impl AsyncFnOnce(Vec<String>) -> Result<(), AwsError>,
        tag: impl AsyncFnOnce(&'a Tags) -> Result<(), AwsError>,
    ) -> Result<(), AwsError> {
        if !self.remove.is_empty() {
            untag(self.remove).await?;
        }
        tag(self.set).await
    }
}

/// Every item of a list the service pages by a token: `page(token)` reads one page and hands
/// back its items and the next token. AWS pages every list call, however short the list
/// usually is; an empty token ends it as no token does.
pub async fn all_pages<T, F>(mut page: impl FnMut(Option<String>) -> F) -> Result<Vec<T>, AwsError>
where
    F: std::future::Future<Output = Result<(Vec<T>, Option<String>), AwsError>>,
{
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let (items, next) = page(token.take()).await?;
        out.extend(items);
        match next {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        tag_map(pairs.iter().copied())
    }

    #[test]
    fn tag_changes_remove_stale_keys_and_set_all_wanted_tags() {
        let wanted = tags(&[("a", "1"), ("b", "2")]);
        assert_eq!(TagChange::between(Some(&wanted.clone()), &wanted), None);
        let change = TagChange::between(Some(&tags(&[("a", "0"), ("old", "x")])), &wanted);
        assert_eq!(
            change,
            Some(TagChange {
                remove: vec!["old".into()],
                set: &wanted
            })
        );
        assert_eq!(
            TagChange::between(None, &wanted),
            Some(TagChange {
                remove: vec![],
                set: &wanted
            })
        );
    }
}
