//! Calls sent again while their refusal is a state that passes by itself (a role IAM has not
//! propagated yet, a resource another change holds), at a pace that backs off.

use std::time::Duration;

use aws_sdk_sts::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::client::result::SdkError;

use super::*;

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
