//! The pub/sub functions in one binary: `connect`, `disconnect`, `message` and `publish`.
//! Lambda hands a custom runtime its `Handler` setting as `_HANDLER`; wsctl.yaml's `handler:`
//! sets it, and it picks the role. They share their code and their clients (DynamoDB,
//! `@connections`, Lambda), so one binary is one size-optimised link instead of four, and one
//! zip that the four functions share.
//!
//! Events arrive as JSON values and each role parses its own type: the Lambda runtime's loop is
//! compiled once, not once per event type.

use std::process::ExitCode;

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use tracing::Instrument;
use wsctl_functions::handlers::{connect, disconnect, endpoint, message, publish};
use wsctl_functions::{Services, Settings, layout, metrics};

#[derive(Clone, Copy)]
enum Role {
    Connect,
    Disconnect,
    Message,
    Publish,
}

impl Role {
    const ALL: [(&str, Role); 4] = [
        ("connect", Role::Connect),
        ("disconnect", Role::Disconnect),
        ("message", Role::Message),
        ("publish", Role::Publish),
    ];
}

#[tokio::main]
async fn main() -> ExitCode {
    let handler = std::env::var("_HANDLER").unwrap_or_default();
    let Some(role) = Role::ALL
        .iter()
        .find(|(name, _)| *name == handler)
        .map(|(_, role)| *role)
    else {
        let names: Vec<&str> = Role::ALL.iter().map(|(name, _)| *name).collect();
        // Before logging is set up: this is what the function's init error log shows.
        eprintln!(
            "wsctl-pubsub: the handler setting is {handler:?}, which is not one of this binary's functions ({})\nhint: set `handler:` of this function in wsctl.yaml to one of them",
            names.join(", ")
        );
        return ExitCode::from(2);
    };
    let needs = layout::role(&handler).expect("every role of this binary is in the layout");
    // Checked before anything is built, and before logging: the init error's log shows this
    // one line (Lambda records a runtime that exits during init as `Runtime.ExitError`).
    let settings = match Settings::from_env(needs) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("wsctl-pubsub ({handler}): {e}");
            return ExitCode::from(2);
        }
    };
    wsctl_functions::init_logging();
    let ctx = Services::new(settings).await;
    let ctx = &ctx;
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or(handler.clone());
    let function = function.as_str();
    // Events go out once the invocation's work is done, before its answer: Lambda may freeze
    // the process as soon as it has answered.
    let handled = move |event| {
        // Boxed: the handlers' futures are deep, and this one holds them all.
        let invocation = Box::pin(async move {
            let answer = handle(role, ctx, event).await;
            ctx.send_events().await;
            answer
        });
        metrics::measured(function, invocation)
    };
    match lambda_runtime::run(service_fn(handled)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsctl-pubsub ({handler}): {e}");
            ExitCode::FAILURE
        }
    }
}

async fn handle(role: Role, ctx: &Services, event: LambdaEvent<Value>) -> Result<Value, Error> {
    // Lambda's deadline is wall-clock milliseconds; the handlers count on the monotonic clock.
    let left = event.context.deadline.saturating_sub(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default(),
    );
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(left);
    let request = event.context.request_id;
    if let Role::Publish = role {
        let span = tracing::info_span!(
            "event",
            connection = tracing::field::Empty,
            request = %request
        );
        if endpoint::is_url_request(&event.payload) {
            let response = endpoint::handle(ctx, event.payload, deadline)
                .instrument(span)
                .await;
            return Ok(serde_json::to_value(response)?);
        }
        let result = publish::handle_by(ctx, event.payload, &request, deadline)
            .instrument(span)
            .await?;
        return Ok(serde_json::to_value(result)?);
    }
    let event: ApiGatewayWebsocketProxyRequest = serde_json::from_value(event.payload)?;
    let connection = event
        .request_context
        .connection_id
        .clone()
        .unwrap_or_default();
    let span = tracing::info_span!("event", connection, request = %request);
    let response = async {
        Ok::<_, Error>(match role {
            Role::Connect => connect::handle(ctx, &event).await?,
            Role::Disconnect => disconnect::handle(ctx, &event, Some(deadline)).await?,
            _ => message::handle_by(ctx, &event, Some(deadline)).await,
        })
    }
    .instrument(span)
    .await?;
    Ok(serde_json::to_value(response)?)
}
