//! `$connect` authorizer. Its keys (the stack's secret from SSM, an OIDC issuer's JWKS) are
//! fetched at cold start and refreshed as `handlers::authorizer` describes. A binary of its
//! own: it is on every handshake's path and needs SSM and token verification, which the
//! pub/sub functions do not, so it stays as small as it can.

use aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use tracing::Instrument;
use wsctl_functions::handlers::authorizer::{self, Authorizer};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let authorizer = match Authorizer::from_env().await {
        Ok(authorizer) => authorizer,
        Err(e) => {
            // One plain line, before logging: what the function's init error log shows.
            eprintln!("authorizer: {e}");
            std::process::exit(2);
        }
    };
    if authorizer.revocations.is_none() {
        eprintln!(
            "authorizer: {} is not set: the authorizer reads revocations from the counters table; in wsctl.yaml give it `tables: {{ counters: read }}` and deploy again",
            wsctl_functions::layout::table_env(wsctl_functions::layout::COUNTERS.name)
        );
        std::process::exit(2);
    }
    wsctl_functions::init_logging();
    // Fail the cold start, with the reason in the log, rather than deny every client.
    authorizer.secrets.get().await?;
    // The provider's keys are fetched now too, but a provider that is down must not stop
    // tokens signed with the stack's own secret: retried on the first token that needs them.
    if let Some((_, keys)) = &authorizer.oidc
        && let Err(e) = keys.get().await
    {
        tracing::warn!(error = %e, "the identity provider's keys could not be fetched yet");
    }
    let authorizer = &authorizer;
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or("authorizer".into());
    let function = function.as_str();
    lambda_runtime::run(service_fn(
        |event: LambdaEvent<ApiGatewayCustomAuthorizerRequestTypeRequest>| async move {
            // The connection id arrives among the context's other fields (`catch-all-fields`).
            let connection = event
                .payload
                .request_context
                .other
                .get("connectionId")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let span =
                tracing::info_span!("event", connection, request = %event.context.request_id);
            let handled = authorizer::handle(authorizer, &event.payload).instrument(span);
            wsctl_functions::metrics::measured(function, handled)
                .await
                .map_err(Error::from)
        },
    ))
    .await
}
