//! AWS access: one `SdkConfig` for all clients, and errors turned into one clear sentence with
//! the fix. One module per service declares the specs of the kinds it holds and implements
//! [`Resource`](crate::engine::kinds::Resource) for each.

pub mod account;
pub mod apigw;
pub mod domain;
pub mod dynamodb;
pub mod iam;
pub mod lambda;
pub mod logs;
pub mod policy;
pub mod ssm;

use std::fmt::Display;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sts::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_types::request_id::RequestId;

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

#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error(
        "no AWS region is set\nhint: add `region: eu-west-1` to wsctl.yaml, pass --region, or set AWS_REGION"
    )]
    NoRegion,
    #[error(
        "no AWS credentials were found ({0})\nhint: run `aws configure` (or `aws sso login --profile NAME` and pass --profile NAME), or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    )]
    NoCredentials(String),
    #[error(
        "{op} {resource}: AWS rejected the credentials ({code}: {message})\nhint: they are invalid or expired; refresh them (e.g. `aws sso login`) or check --profile and the region"
    )]
    BadCredentials {
        op: &'static str,
        resource: String,
        code: String,
        message: String,
    },
    #[error(
        "{op} {resource}: access denied ({message})\nhint: the identity in use lacks this permission; deploy with a role that allows it (see README, \"Permissions wsctl needs\")"
    )]
    AccessDenied {
        op: &'static str,
        resource: String,
        message: String,
    },
    #[error(
        "{op} {resource}: access denied ({message})\nhint: the deploying identity may not create or change the stack's permissions boundary, by design (it could widen its own roles otherwise): run `wsctl deploy` once with an administrator's credentials (iam:CreatePolicy, iam:CreatePolicyVersion), or set `permissions_boundary:` in wsctl.yaml to a policy your administrator made from `wsctl deploy --print-boundary`"
    )]
    BoundaryNeedsAdmin {
        op: &'static str,
        resource: String,
        message: String,
    },
    #[error(
        "{op} {resource}: cannot reach the AWS endpoint ({detail})\nhint: check the network, the region and --endpoint-url / AWS_ENDPOINT_URL"
    )]
    Unreachable {
        op: &'static str,
        resource: String,
        detail: String,
    },
    #[error(
        "{op} {resource}: still throttled after retries ({message})\nhint: wait a minute and re-run; wsctl resumes where it stopped"
    )]
    Throttled {
        op: &'static str,
        resource: String,
        message: String,
    },
    #[error(
        "{op} {resource}: an account quota is reached ({code}: {message})\nhint: this is a limit of the account, not a passing throttle: {}, then re-run; wsctl resumes where it stopped",
        quota_advice(code)
    )]
    Quota {
        op: &'static str,
        resource: String,
        code: String,
        message: String,
    },
    #[error("{op} {resource}: {code}: {message}{}", request_id.as_ref().map(|r| format!(" (request id {r})")).unwrap_or_default())]
    Service {
        op: &'static str,
        resource: String,
        code: String,
        message: String,
        request_id: Option<String>,
    },
    #[error("{op} {resource}: {detail}")]
    Other {
        op: &'static str,
        resource: String,
        detail: String,
    },
    #[error(
        "stage {stage} does not serve the changes: API Gateway could not deploy them: \"{message}\"\nhint: fix what the message names (a route, an integration, the authorizer or a function) and re-run `wsctl deploy`; everything else is in place"
    )]
    NotDeployed { stage: String, message: String },
    #[error(
        "the token secret {name} is not usable: {message}\nhint: run `wsctl secret rotate` to write a new one"
    )]
    BadSecret { name: String, message: String },
}

impl AwsError {
    /// Credentials, permissions and region problems are the caller's to fix, not transient.
    pub fn is_setup(&self) -> bool {
        matches!(
            self,
            AwsError::NoRegion
                | AwsError::NoCredentials(_)
                | AwsError::BadCredentials { .. }
                | AwsError::AccessDenied { .. }
                | AwsError::BoundaryNeedsAdmin { .. }
        )
    }
}

const CREDENTIAL_CODES: &[&str] = &[
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "InvalidSignatureException",
    "IncompleteSignature",
    "MissingAuthenticationToken",
];
const DENIED_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "AuthorizationError",
];
/// Rate limits: they pass by themselves, and the SDK's standard retries wait them out.
pub(crate) const THROTTLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
];
/// Quotas: waiting does not lift them (or only after minutes). DynamoDB's
/// `LimitExceededException` is its 500 concurrent table operations or 2,500 tables per region
/// (API reference, "Common errors" / CreateTable); IAM's `LimitExceeded` and CloudWatch Logs'
/// `LimitExceededException` are "resources beyond the current account limits" (IAM and Logs API
/// references); `ServiceQuotaExceededException` is the same in newer APIs. The SDK's standard
/// retry counts `LimitExceededException` as a throttle; [`QuotaIsNotThrottle`] stops that.
const QUOTA_CODES: &[&str] = &[
    "LimitExceededException",
    "LimitExceeded",
    "ServiceQuotaExceededException",
];

fn quota_advice(code: &str) -> &'static str {
    match code {
        "LimitExceededException" => {
            "DynamoDB allows 500 table operations at once and 2,500 tables per region by default, CloudWatch Logs 1,000,000 log groups; wait for other table operations to finish or delete unused resources, or ask for a raise in the Service Quotas console"
        }
        _ => {
            "delete unused resources of that kind, or ask for a raise in the Service Quotas console"
        }
    }
}

/// Whether the response has one of `statuses` and names one of `codes` as its error: the code
/// whole, as JSON (`"__type":"…#Code"`) and XML (`<Code>Code</Code>`) spell it, before the
/// SDK has parsed it (a retry classifier sees only the raw response, whatever the operation).
fn answered_with(
    ctx: &aws_smithy_runtime_api::client::interceptors::context::InterceptorContext,
    statuses: &[u16],
    codes: &[&str],
) -> bool {
    ctx.response().is_some_and(|r| {
        statuses.contains(&r.status().as_u16())
            && r.body().bytes().is_some_and(|body| {
                codes.iter().any(|code| {
                    body.windows(code.len() + 1).any(|w| {
                        w[..code.len()] == *code.as_bytes() && matches!(w[code.len()], b'"' | b'<')
                    })
                })
            })
    })
}

/// Refusals that pass by themselves and the SDK does not retry: IAM's
/// `ConcurrentModification` ("multiple requests to change this object were submitted
/// simultaneously", IAM API reference, Common errors) and SSM's `TooManyUpdates` ("There are
/// concurrent updates for a resource that supports one update at a time", PutParameter).
#[derive(Debug)]
pub struct PassingConflict;

impl aws_smithy_runtime_api::client::retries::classifiers::ClassifyRetry for PassingConflict {
    fn classify_retry(
        &self,
        ctx: &aws_smithy_runtime_api::client::interceptors::context::InterceptorContext,
    ) -> aws_smithy_runtime_api::client::retries::classifiers::RetryAction {
        use aws_smithy_runtime_api::client::retries::classifiers::RetryAction;
        if answered_with(
            ctx,
            &[400, 409],
            &["ConcurrentModification", "TooManyUpdates"],
        ) {
            RetryAction::transient_error()
        } else {
            RetryAction::NoActionIndicated
        }
    }

    fn name(&self) -> &'static str {
        "a conflict that passes"
    }
}

/// Keeps the SDK from retrying a quota refusal as if it were a throttle: eight attempts spread
/// over a minute would end in the same refusal.
#[derive(Debug)]
pub struct QuotaIsNotThrottle;

impl aws_smithy_runtime_api::client::retries::classifiers::ClassifyRetry for QuotaIsNotThrottle {
    fn classify_retry(
        &self,
        ctx: &aws_smithy_runtime_api::client::interceptors::context::InterceptorContext,
    ) -> aws_smithy_runtime_api::client::retries::classifiers::RetryAction {
        use aws_smithy_runtime_api::client::retries::classifiers::RetryAction;
        if answered_with(ctx, &[400], QUOTA_CODES) {
            RetryAction::RetryForbidden
        } else {
            RetryAction::NoActionIndicated
        }
    }

    fn name(&self) -> &'static str {
        "a quota is not a throttle"
    }
}

/// Turns an SDK error into an [`AwsError`] naming the operation and the resource.
pub fn classify<E, R>(err: SdkError<E, R>, op: &'static str, resource: impl Display) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let resource = resource.to_string();
    match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().unwrap_or("Unknown").to_string();
            let message = e.message().unwrap_or("").to_string();
            if CREDENTIAL_CODES.contains(&code.as_str()) {
                AwsError::BadCredentials {
                    op,
                    resource,
                    code,
                    message,
                }
            } else if DENIED_CODES.contains(&code.as_str()) {
                AwsError::AccessDenied {
                    op,
                    resource,
                    message,
                }
            } else if THROTTLE_CODES.contains(&code.as_str()) {
                AwsError::Throttled {
                    op,
                    resource,
                    message,
                }
            } else if QUOTA_CODES.contains(&code.as_str()) {
                AwsError::Quota {
                    op,
                    resource,
                    code,
                    message,
                }
            } else {
                let request_id = e.meta().request_id().map(str::to_string);
                AwsError::Service {
                    op,
                    resource,
                    code,
                    message,
                    request_id,
                }
            }
        }
        SdkError::DispatchFailure(failure) => {
            let detail = DisplayErrorContext(&err).to_string();
            if detail.contains("credentials") || detail.contains("Credentials") {
                AwsError::NoCredentials(short(&detail))
            } else if failure.is_io() || failure.is_timeout() {
                AwsError::Unreachable {
                    op,
                    resource,
                    detail: short(&detail),
                }
            } else {
                AwsError::Other {
                    op,
                    resource,
                    detail: short(&detail),
                }
            }
        }
        SdkError::TimeoutError(_) => AwsError::Unreachable {
            op,
            resource,
            detail: "timed out".into(),
        },
        _ => {
            let detail = DisplayErrorContext(&err).to_string();
            if detail.contains("region") && detail.contains("endpoint") {
                AwsError::NoRegion
            } else {
                AwsError::Other {
                    op,
                    resource,
                    detail: short(&detail),
                }
            }
        }
    }
}

fn short(detail: &str) -> String {
    let line = detail.replace('\n', " ");
    if line.len() > 300 {
        format!(
            "{}…",
            &line[..line
                .char_indices()
                .nth(299)
                .map(|(i, _)| i)
                .unwrap_or(line.len())]
        )
    } else {
        line
    }
}

/// `.ctx("CreateRole", &name)` on an SDK result: the error names what was being done.
pub trait CallContext<T> {
    fn ctx(self, op: &'static str, resource: impl Display) -> Result<T, AwsError>;
}

impl<T, E, R> CallContext<T> for Result<T, SdkError<E, R>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    fn ctx(self, op: &'static str, resource: impl Display) -> Result<T, AwsError> {
        self.map_err(|e| classify(e, op, resource))
    }
}

/// `Ok(None)` when the call failed only because the resource does not exist.
pub fn found<T, E, R>(result: Result<T, SdkError<E, R>>) -> Result<Option<T>, SdkError<E, R>>
where
    E: ProvideErrorMetadata,
{
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if is_code(&e, NOT_FOUND_CODES) => Ok(None),
        Err(e) => Err(e),
    }
}

const NOT_FOUND_CODES: &[&str] = &[
    "NoSuchEntity",
    "ResourceNotFoundException",
    "NotFoundException",
    "ParameterNotFound",
    "ResourceNotFound",
];

pub fn is_code<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>, codes: &[&str]) -> bool {
    err.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|c| codes.contains(&c))
}

/// The endpoint has no such operation: an emulator answering an unknown URL (404) or a call it
/// lacks (500/501) without an AWS error code. AWS itself names every error it returns.
pub(crate) fn unimplemented<E: ProvideErrorMetadata>(
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

/// How long, and how often, a call is sent again while its refusal is a passing state.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// The first wait; doubled each time, up to `max`.
    pub first: Duration,
    pub max: Duration,
    /// Nothing is sent again after this long.
    pub window: Duration,
}

/// How long a new role may take to become usable by the service it is passed to.
pub const ROLE_PROPAGATION: Pace = Pace {
    first: Duration::from_secs(2),
    max: Duration::from_secs(10),
    window: Duration::from_secs(90),
};

/// Sends a call naming a role until the service accepts the role. IAM is eventually
/// consistent ("changes that you make in IAM take time to become visible", IAM User Guide,
/// "Troubleshooting IAM"): a service refuses a role made seconds ago, each with its own error,
/// which `not_ready(code, message)` recognises. Waits grow from 2 s, for up to 90 s.
pub async fn while_role_propagates<T, E, R, F>(
    op: &'static str,
    resource: &str,
    not_ready: fn(&str, &str) -> bool,
    send: impl FnMut() -> F,
) -> Result<T, AwsError>
where
    F: std::future::Future<Output = Result<T, SdkError<E, R>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    while_refused(op, resource, ROLE_PROPAGATION, not_ready, send).await
}

/// Sends a call again, at `pace`, while the service answers with an error that
/// `passing(code, message)` recognises as a state that passes by itself.
pub async fn while_refused<T, E, R, F>(
    op: &'static str,
    resource: &str,
    pace: Pace,
    passing: fn(&str, &str) -> bool,
    mut send: impl FnMut() -> F,
) -> Result<T, AwsError>
where
    F: std::future::Future<Output = Result<T, SdkError<E, R>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let started = std::time::Instant::now();
    let mut wait = pace.first;
    loop {
        match send().await {
            Err(e)
                if e.as_service_error().is_some_and(|s| {
                    passing(
                        s.code().unwrap_or_default(),
                        s.message().unwrap_or_default(),
                    )
                }) && started.elapsed() < pace.window =>
            {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(pace.max);
            }
            other => return other.ctx(op, resource),
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
