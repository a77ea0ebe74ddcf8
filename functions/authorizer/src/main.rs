//! `$connect` authorizer. The HS256 secret is read from SSM once per cold start.

use aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use wsctl_functions::auth::{Oidc, Verifier};
use wsctl_functions::handlers::authorizer;

#[tokio::main]
async fn main() -> Result<(), Error> {
    wsctl_functions::init_logging();
    let verifier = verifier().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<ApiGatewayCustomAuthorizerRequestTypeRequest>| {
        // The connection id arrives among the context's other fields (`catch-all-fields`).
        let rc = &event.payload.request_context.other;
        let connection = rc.get("connectionId").and_then(|v| v.as_str()).unwrap_or_default().to_string();
        let span = tracing::info_span!("event", connection, request = %event.context.request_id);
        let result = span.in_scope(|| authorizer::handle(&verifier, &event.payload)).map_err(Error::from);
        async move { result }
    }))
    .await
}

/// `WSCTL_SECRET_PARAMETER` names the SSM SecureString; `TOKEN_AUDIENCE` optionally pins
/// the audience of HS256 tokens; `OIDC_ISSUER`, `OIDC_AUDIENCE` and `OIDC_JWKS` (the issuer's
/// JWKS document) enable RS256/ES256 tokens from an identity provider.
async fn verifier() -> Result<Verifier, Error> {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let name = std::env::var("WSCTL_SECRET_PARAMETER").map_err(|_| "WSCTL_SECRET_PARAMETER is not set")?;
    let got = aws_sdk_ssm::Client::new(&sdk).get_parameter().name(&name).with_decryption(true).send().await?;
    let secret = got.parameter.and_then(|p| p.value).ok_or("the token secret parameter is empty")?;
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let oidc = match (env("OIDC_ISSUER"), env("OIDC_AUDIENCE"), env("OIDC_JWKS")) {
        (Some(issuer), Some(audience), Some(jwks)) => Some(Oidc { issuer, audience, keys: serde_json::from_str(&jwks)? }),
        _ => None,
    };
    Ok(Verifier::new(secret.into_bytes(), env("TOKEN_AUDIENCE"), oidc))
}
