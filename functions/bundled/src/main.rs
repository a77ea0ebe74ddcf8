//! The five bundled functions in one binary. Lambda hands a custom runtime its `Handler`
//! setting as `_HANDLER`; wsctl.yaml's `handler:` sets it, and it picks the role. One binary
//! is one size-optimised link instead of five, and one zip that every function shares.
//!
//! Events arrive as JSON values and each role parses its own type: the Lambda runtime's loop is
//! then compiled once, not once per event type.

use std::process::ExitCode;

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayWebsocketProxyRequest,
};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use tracing::Instrument;
use wsctl_functions::Ctx;
use wsctl_functions::handlers::authorizer::Authorizer;
use wsctl_functions::handlers::{authorizer, connect, disconnect, message, publish};

/// The roles, as `handler:` names them.
const ROLES: &[&str] = &["authorizer", "connect", "disconnect", "message", "publish"];

enum Role {
    Authorizer(Box<Authorizer>),
    Connect(Ctx),
    Disconnect(Ctx),
    Message(Ctx),
    Publish(Ctx),
}

#[tokio::main]
async fn main() -> ExitCode {
    let handler = std::env::var("_HANDLER").unwrap_or_default();
    if !ROLES.contains(&handler.as_str()) {
        // Before logging is set up: this is what the function's init error log shows.
        eprintln!(
            "wsctl-bundled: the handler setting is {handler:?}, which is not one of this binary's functions ({})\nhint: set `handler:` of this function in wsctl.yaml to one of them",
            ROLES.join(", ")
        );
        return ExitCode::from(2);
    }
    wsctl_functions::init_logging();
    let served = match Role::start(&handler).await {
        Ok(role) => {
            let role = &role;
            lambda_runtime::run(service_fn(move |event| role.handle(event))).await
        }
        Err(e) => Err(e),
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsctl-bundled ({handler}): {e}");
            ExitCode::FAILURE
        }
    }
}

impl Role {
    /// Clients and keys, once per cold start.
    async fn start(handler: &str) -> Result<Role, Error> {
        if handler == "authorizer" {
            let authorizer = Authorizer::from_env().await?;
            // Fail the cold start, with the reason in the log, rather than deny every client.
            authorizer.secrets.get().await?;
            // The provider's keys are fetched now too, but a provider that is down must not
            // stop tokens signed with the stack's own secret: retried on the first token that
            // needs them.
            if let Some((_, keys)) = &authorizer.oidc
                && let Err(e) = keys.get().await
            {
                tracing::warn!(error = %e, "the identity provider's keys could not be fetched yet");
            }
            return Ok(Role::Authorizer(Box::new(authorizer)));
        }
        let ctx = Ctx::from_env().await;
        Ok(match handler {
            "connect" => Role::Connect(ctx),
            "disconnect" => Role::Disconnect(ctx),
            "message" => Role::Message(ctx),
            _ => Role::Publish(ctx),
        })
    }

    async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, Error> {
        let request = event.context.request_id;
        match self {
            Role::Authorizer(authorizer) => {
                let event: ApiGatewayCustomAuthorizerRequestTypeRequest =
                    serde_json::from_value(event.payload)?;
                // The connection id arrives among the context's other fields (`catch-all-fields`).
                let connection = event
                    .request_context
                    .other
                    .get("connectionId")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let span = tracing::info_span!("event", connection, request = %request);
                let response = authorizer::handle(authorizer, &event)
                    .instrument(span)
                    .await?;
                Ok(serde_json::to_value(response)?)
            }
            Role::Publish(ctx) => {
                let span = tracing::info_span!("event", request = %request);
                let result = publish::handle(ctx, event.payload, &request)
                    .instrument(span)
                    .await?;
                Ok(serde_json::to_value(result)?)
            }
            Role::Connect(ctx) | Role::Disconnect(ctx) | Role::Message(ctx) => {
                let event: ApiGatewayWebsocketProxyRequest = serde_json::from_value(event.payload)?;
                let connection = event
                    .request_context
                    .connection_id
                    .clone()
                    .unwrap_or_default();
                let span = tracing::info_span!("event", connection, request = %request);
                let response = async {
                    Ok::<_, Error>(match self {
                        Role::Connect(_) => connect::handle(ctx, &event).await?,
                        Role::Disconnect(_) => disconnect::handle(ctx, &event).await?,
                        _ => message::handle(ctx, &event).await,
                    })
                }
                .instrument(span)
                .await?;
                Ok(serde_json::to_value(response)?)
            }
        }
    }
}
