//! `$connect` REQUEST authorizer: verifies `?token=`, allows `$connect` of this API only, and
//! hands the user and capabilities on as the connection's context.
//!
//! Keys are cached for the life of the process and refreshed: the stack's secret every minute
//! (so a rotation reaches warm authorizers) and the OIDC issuer's key set on its TTL.
//! A token naming a key the cache does not hold triggers one refresh, at most once per
//! interval, so forged key ids cannot make the authorizer hammer SSM or the issuer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerPolicy, ApiGatewayCustomAuthorizerRequestTypeRequest,
    ApiGatewayCustomAuthorizerResponse,
};
use aws_lambda_events::iam::{IamPolicyEffect, IamPolicyStatement};
use jsonwebtoken::jwk::JwkSet;
use serde_json::json;
use tokio::time::Instant;

use crate::auth::{Identity, OidcPolicy, SecretKeys, TokenError, Verifier};
use crate::session::Session;
use crate::store::{Store, Tables, TtlAttributes};

pub type Fetch<T> =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<T, String>> + Send>> + Send + Sync>;

/// A value fetched from elsewhere (SSM, an issuer's JWKS URL), kept for `ttl`.
pub struct KeyCache<T> {
    fetch: Fetch<T>,
    ttl: Duration,
    /// No two fetches closer together than this.
    min_interval: Duration,
    state: tokio::sync::Mutex<CacheState<T>>,
}

struct CacheState<T> {
    value: Option<Arc<T>>,
    /// When the value was fetched: it ages from here.
    fetched: Option<Instant>,
    /// When a fetch was last tried, successful or not: the minimum interval counts from here,
    /// so a failed fetch is retried soon rather than after the TTL.
    tried: Option<Instant>,
    fetches: u64,
}

impl<T> KeyCache<T> {
    pub fn new(fetch: Fetch<T>, ttl: Duration, min_interval: Duration) -> KeyCache<T> {
        let state = CacheState {
            value: None,
            fetched: None,
            tried: None,
            fetches: 0,
        };
        KeyCache {
            fetch,
            ttl,
            min_interval,
            state: tokio::sync::Mutex::new(state),
        }
    }

    /// The cached value, fetched first when there is none or it is older than the TTL. A
    /// failed refetch keeps serving the old value (the source may be down for a moment).
    pub async fn get(&self) -> Result<Arc<T>, String> {
        let mut state = self.state.lock().await;
        let stale = state.fetched.is_none_or(|at| at.elapsed() >= self.ttl);
        if stale && self.may_try(&state) {
            match self.fetch_locked(&mut state).await {
                Ok(v) => return Ok(v),
                Err(e) if state.value.is_none() => return Err(e),
                Err(e) => tracing::warn!(error = %e, "key refresh failed; using the cached keys"),
            }
        }
        state
            .value
            .clone()
            .ok_or_else(|| "the keys could not be fetched; retrying shortly".into())
    }

    /// Fetches again unless the last attempt is more recent than the minimum interval; the
    /// new value, or `None` when it was too soon.
    pub async fn refresh(&self) -> Result<Option<Arc<T>>, String> {
        let mut state = self.state.lock().await;
        if !self.may_try(&state) {
            return Ok(None);
        }
        self.fetch_locked(&mut state).await.map(Some)
    }

    /// How many fetches were made, failed ones included.
    pub async fn fetches(&self) -> u64 {
        self.state.lock().await.fetches
    }

    fn may_try(&self, state: &CacheState<T>) -> bool {
        state
            .tried
            .is_none_or(|at| at.elapsed() >= self.min_interval)
    }

    async fn fetch_locked(&self, state: &mut CacheState<T>) -> Result<Arc<T>, String> {
        state.fetches += 1;
        state.tried = Some(Instant::now());
        let value = Arc::new((self.fetch)().await?);
        state.fetched = state.tried;
        state.value = Some(value.clone());
        Ok(value)
    }
}

/// Everything the authorizer checks a token against.
pub struct Authorizer {
    pub secrets: KeyCache<SecretKeys>,
    /// When set, HS256 tokens must carry this audience.
    pub audience: Option<String>,
    pub oidc: Option<(OidcPolicy, KeyCache<JwkSet>)>,
    /// Where revocations are read (the counters table); `None` checks none.
    pub revocations: Option<Store>,
}

impl Authorizer {
    /// From the environment wsctl deploys: `WSCTL_SECRET_PARAMETER` (the SSM parameter of the
    /// stack's secret), `TOKEN_AUDIENCE`, and for an identity provider `OIDC_ISSUER`,
    /// `OIDC_AUDIENCE`, `OIDC_JWKS_URL` (default: the issuer's discovery document),
    /// `OIDC_CAPABILITIES_CLAIM` and `OIDC_DEFAULT_CAPABILITIES` (JSON), and the counters
    /// table, where revocations are kept.
    pub async fn from_env() -> Result<Authorizer, String> {
        Authorizer::from_env_with(&crate::sdk_config().await)
    }

    /// As [`Authorizer::from_env`], with AWS clients from `sdk` (a function that has its
    /// configuration loaded already does not load it twice).
    pub fn from_env_with(sdk: &aws_config::SdkConfig) -> Result<Authorizer, String> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let name = env("WSCTL_SECRET_PARAMETER").ok_or(
            "WSCTL_SECRET_PARAMETER is not set: the authorizer needs the name of the token secret's SSM parameter; in wsctl.yaml give it `read_secret: true` (wsctl then sets the variable) and deploy again",
        )?;
        let fetch = secret_fetch(sdk, name, SECRET_READ_BUDGET);
        let oidc = match (env("OIDC_ISSUER"), env("OIDC_AUDIENCE")) {
            (Some(issuer), Some(audience)) => {
                let default_capabilities = match env("OIDC_DEFAULT_CAPABILITIES") {
                    Some(json) => serde_json::from_str(&json)
                        .map_err(|e| format!("OIDC_DEFAULT_CAPABILITIES: {e}"))?,
                    None => Default::default(),
                };
                // `OIDC_SUB_AS_USER` is `user_prefix: ""` in wsctl.yaml: the provider's ids as
                // they are.
                let user_prefix = if env("OIDC_SUB_AS_USER").as_deref() == Some("true") {
                    String::new()
                } else {
                    env("OIDC_USER_PREFIX")
                        .unwrap_or_else(|| crate::auth::default_user_prefix(&issuer))
                };
                let policy = OidcPolicy {
                    user_prefix,
                    issuer: issuer.clone(),
                    audience,
                    capabilities_claim: env("OIDC_CAPABILITIES_CLAIM"),
                    default_capabilities,
                };
                Some((
                    policy,
                    jwks_cache(issuer, env("OIDC_JWKS_URL"), JWKS_TTL, JWKS_MIN_INTERVAL),
                ))
            }
            _ => None,
        };
        let counters = crate::layout::table_env(crate::layout::COUNTERS.name);
        let revocations = env(&counters).map(|name| Store {
            db: aws_sdk_dynamodb::Client::new(sdk),
            tables: Tables {
                connections: String::new(),
                subscriptions: String::new(),
                history: String::new(),
                counters: name,
                ttl: TtlAttributes::default(),
            },
            history_ttl: Duration::ZERO,
        });
        Ok(Authorizer {
            secrets: secret_cache(fetch),
            audience: env("TOKEN_AUDIENCE"),
            oidc,
            revocations,
        })
    }

    /// Verifies `token` as the handshake does, revocations included.
    pub async fn verify_current(&self, token: &str) -> Result<Identity, TokenError> {
        let identity = self.verify(token).await?;
        if let Some(store) = &self.revocations {
            let before = store.revoked_before(&identity.user).await.map_err(|e| {
                TokenError::Unavailable(format!("revocations could not be read: {e}"))
            })?;
            if Session::of(&identity).revoked_by(before) {
                return Err(TokenError::Invalid(format!(
                    "the tokens of `{}` issued before {} were revoked",
                    identity.user,
                    before.unwrap_or_default()
                )));
            }
        }
        Ok(identity)
    }

    pub async fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        let asymmetric = jsonwebtoken::decode_header(token)
            .is_ok_and(|h| h.alg != jsonwebtoken::Algorithm::HS256);
        let keys = TokenError::Unavailable;
        let secrets = self.secrets.get().await.map_err(keys)?;
        let jwks = match &self.oidc {
            Some((_, cache)) if asymmetric => Some(cache.get().await.map_err(keys)?),
            _ => None,
        };
        let verifier = |secrets: &SecretKeys| {
            Verifier::new(
                secrets.clone(),
                self.audience.clone(),
                self.oidc.as_ref().map(|(p, _)| p.clone()),
            )
        };
        match verifier(&secrets).verify(token, jwks.as_deref()) {
            Err(TokenError::UnknownKey(kid)) => {
                // A key this process has not seen yet: rotated in since the last fetch.
                let unknown = || TokenError::UnknownKey(kid.clone());
                match (&self.oidc, asymmetric) {
                    (Some((_, cache)), true) => {
                        let fresh = cache.refresh().await.map_err(keys)?.ok_or_else(unknown)?;
                        verifier(&secrets).verify(token, Some(&fresh))
                    }
                    _ => {
                        let fresh = self
                            .secrets
                            .refresh()
                            .await
                            .map_err(keys)?
                            .ok_or_else(unknown)?;
                        verifier(&fresh).verify(token, None)
                    }
                }
            }
            other => other,
        }
    }
}

/// The stack's secret: re-read every minute (so a retired key stops passing within one), and
/// at most every 10 s for an unknown key id.
pub fn secret_cache(fetch: Fetch<SecretKeys>) -> KeyCache<SecretKeys> {
    KeyCache::new(fetch, Duration::from_secs(60), Duration::from_secs(10))
}

/// How long an issuer's key set is kept, and how often at most an unknown key id may make
/// the authorizer fetch it again (providers publish a new key before signing with it).
pub const JWKS_TTL: Duration = Duration::from_secs(3600);
pub const JWKS_MIN_INTERVAL: Duration = Duration::from_secs(30);

/// An issuer's key set from `jwks_url`, or from the `jwks_uri` of its discovery document.
pub fn jwks_cache(
    issuer: String,
    jwks_url: Option<String>,
    ttl: Duration,
    min_interval: Duration,
) -> KeyCache<JwkSet> {
    let fetch: Fetch<JwkSet> = Arc::new(move || {
        let (issuer, jwks_url) = (issuer.clone(), jwks_url.clone());
        Box::pin(async move {
            let url = match jwks_url {
                Some(url) => url,
                None => {
                    let discovery = format!(
                        "{}/.well-known/openid-configuration",
                        issuer.trim_end_matches('/')
                    );
                    let doc = crate::http::get_json(&discovery).await?;
                    doc.get("jwks_uri")
                        .and_then(|u| u.as_str())
                        .ok_or(format!("{discovery} has no `jwks_uri`"))?
                        .to_string()
                }
            };
            serde_json::from_value(crate::http::get_json(&url).await?)
                .map_err(|e| format!("{url} is not a JWKS: {e}"))
        })
    });
    KeyCache::new(fetch, ttl, min_interval)
}

/// How long a cold authorizer keeps trying to read the secret while SSM throttles it.
pub const SECRET_READ_BUDGET: Duration = Duration::from_secs(5);

/// Reads the stack's secret from SSM, sending the read again with full jitter while SSM
/// throttles, for up to `budget`.
///
/// Every cold authorizer reads the secret once. Parameter Store's standard throughput is 40
/// GetParameter transactions a second per account and region, shared by every application
/// ("AWS Systems Manager endpoints and quotas"; above it: `ThrottlingException: Rate
/// exceeded`), while API Gateway takes 500 new WebSocket connections a second ("Amazon API
/// Gateway quotas for configuring and running a WebSocket API") and Lambda starts an instance
/// for each handshake no warm one is free for. A burst from cold can so ask for many times the
/// quota in its first second. Spread over the budget with jitter, the reads that fit the quota
/// succeed; the rest end as a function error (API Gateway answers 500, and the client
/// reconnects later, when warm authorizers hold the key), never as a refused token. The lasting
/// fix is the account's: Parameter Store's higher throughput (`aws ssm update-service-setting
/// --setting-id /ssm/parameter-store/high-throughput-enabled --setting-value true`, billed per
/// call) or provisioned concurrency on the authorizer.
pub fn secret_fetch(
    sdk: &aws_config::SdkConfig,
    name: String,
    budget: Duration,
) -> Fetch<SecretKeys> {
    // The SDK's own retries (three attempts) would stop well inside the budget.
    let ssm = aws_sdk_ssm::Client::from_conf(
        aws_sdk_ssm::config::Builder::from(sdk)
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .build(),
    );
    Arc::new(move || {
        let (ssm, name) = (ssm.clone(), name.clone());
        Box::pin(async move {
            let started = Instant::now();
            let mut ceiling = Duration::from_millis(100);
            let got = loop {
                let sent = ssm
                    .get_parameter()
                    .name(&name)
                    .with_decryption(true)
                    .send()
                    .await;
                let throttled = sent.as_ref().err().is_some_and(|e| {
                    use aws_sdk_ssm::error::ProvideErrorMetadata;
                    matches!(
                        e.code(),
                        Some("ThrottlingException" | "TooManyRequestsException" | "Throttling")
                    ) || e
                        .raw_response()
                        .is_some_and(|r| matches!(r.status().as_u16(), 429 | 500 | 502 | 503))
                });
                let wait = Duration::from_millis(fastrand::u64(0..=ceiling.as_millis() as u64));
                if throttled && started.elapsed() + wait < budget {
                    tokio::time::sleep(wait).await;
                    ceiling = (ceiling * 2).min(Duration::from_secs(1));
                    continue;
                }
                break sent.map_err(|e| {
                    format!("reading {name}: {e:?}")
                        .chars()
                        .take(300)
                        .collect::<String>()
                })?;
            };
            SecretKeys::parse(
                &got.parameter
                    .and_then(|p| p.value)
                    .ok_or("the token secret parameter is empty")?,
            )
        })
    })
}

/// `Err("Unauthorized")` makes API Gateway answer 401; a Deny policy makes it 403; another
/// `Err` (the keys could not be read) makes it 500, which clients retry. The token itself is
/// never logged.
pub async fn handle(
    authorizer: &Authorizer,
    event: &ApiGatewayCustomAuthorizerRequestTypeRequest,
) -> Result<ApiGatewayCustomAuthorizerResponse, String> {
    let arn = event.method_arn.clone().unwrap_or_default();
    let Some(token) = event
        .query_string_parameters
        .first("token")
        .filter(|t| !t.is_empty())
    else {
        tracing::info!("no token: 401");
        crate::metrics::add_by("HandshakesRefused", "Reason", "no_token", 1.0);
        return Err("Unauthorized".into());
    };
    let mut response = ApiGatewayCustomAuthorizerResponse::default();
    match authorizer.verify_current(token).await {
        Ok(identity) => {
            tracing::info!(user = %identity.user, expires = identity.expires, "token accepted");
            crate::metrics::add("HandshakesAccepted", 1.0);
            response.principal_id = Some(identity.user.clone());
            response.policy_document = policy(IamPolicyEffect::Allow, &arn);
            let mut context = json!({
                "user": identity.user,
                "cap": serde_json::to_string(&identity.capabilities).unwrap_or_default(),
                // Every frame of the connection is checked against these.
                "exp": identity.expires,
            });
            if let Some(iat) = identity.issued {
                context["iat"] = json!(iat);
            }
            response.context = context;
        }
        Err(e @ TokenError::Unavailable(_)) => {
            tracing::warn!(reason = %e, "token not checked: 500");
            crate::metrics::add_by("HandshakesRefused", "Reason", "unavailable", 1.0);
            return Err(e.to_string());
        }
        Err(e) => {
            tracing::info!(reason = %e, "token refused: 403");
            crate::metrics::add_by("HandshakesRefused", "Reason", "invalid", 1.0);
            response.principal_id = Some("anonymous".into());
            response.policy_document = policy(IamPolicyEffect::Deny, &arn);
            // A map, even empty: API Gateway fails a `null` context with 500, not the 403.
            response.context = json!({});
        }
    }
    Ok(response)
}

fn policy(effect: IamPolicyEffect, arn: &str) -> ApiGatewayCustomAuthorizerPolicy {
    let mut statement = IamPolicyStatement::default();
    statement.action = vec!["execute-api:Invoke".into()];
    statement.effect = effect;
    statement.resource = vec![arn.to_string()];
    let mut p = ApiGatewayCustomAuthorizerPolicy::default();
    p.version = Some("2012-10-17".into());
    p.statement = vec![statement];
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusing_authorizer() -> Authorizer {
        let fetch: Fetch<SecretKeys> = Arc::new(|| Box::pin(async { SecretKeys::new([7u8; 32]) }));
        Authorizer {
            secrets: secret_cache(fetch),
            audience: None,
            oidc: None,
            revocations: None,
        }
    }

    /// API Gateway reads `context` as a map of string, number or boolean values ("Lambda
    /// authorizer output", API Gateway Developer Guide); `null` is none of those and fails the
    /// handshake with 500 instead of the 403 a Deny means.
    #[tokio::test]
    async fn a_deny_carries_an_empty_context() {
        let event: ApiGatewayCustomAuthorizerRequestTypeRequest = serde_json::from_value(json!({
            "type": "REQUEST",
            "methodArn": "arn:aws:execute-api:us-east-1:123456789012:abc123/test/$connect",
            "queryStringParameters": {"token": "not.a.token"},
            "multiValueQueryStringParameters": {"token": ["not.a.token"]},
            "headers": {}, "multiValueHeaders": {}, "stageVariables": {},
            "requestContext": {
                "routeKey": "$connect", "eventType": "CONNECT", "extendedRequestId": "Lx0Hj",
                "requestTime": "25/Nov/2026:20:00:00 +0000", "messageDirection": "IN",
                "stage": "test", "connectedAt": 1795636800000i64,
                "requestTimeEpoch": 1795636800000i64, "identity": {"sourceIp": "127.0.0.1"},
                "requestId": "Lx0Hj", "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
                "connectionId": "Lx0HjcKGIAMCJ-w=", "apiId": "abc123"
            }
        }))
        .unwrap();
        let response = handle(&refusing_authorizer(), &event).await.unwrap();
        let v = serde_json::to_value(&response).unwrap();
        assert_eq!(v["policyDocument"]["Statement"][0]["Effect"], "Deny");
        assert_eq!(v["context"], json!({}), "{v}");
    }
}
