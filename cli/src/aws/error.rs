//! AWS errors turned into one clear sentence with the fix: each call's error is classified
//! (missing credentials, access denied, throttled, a quota, not found) and named with its
//! operation and resource.

use std::fmt::Display;

use aws_sdk_sts::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_types::request_id::RequestId;

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
        "{op} {resource}: access denied ({message})\nhint: the identity in use lacks this permission; deploy with a role that allows it (`wsctl deploy --print-policy` prints its policy; the book's \"Permissions\" page explains it)"
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

pub(super) fn short(detail: &str) -> String {
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
