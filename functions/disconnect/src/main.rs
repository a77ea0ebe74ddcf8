//! `$disconnect` route.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use tracing::Instrument;
use wsctl_functions::{Ctx, handlers};

#[tokio::main]
async fn main() -> Result<(), Error> {
    wsctl_functions::init_logging();
    let ctx = Ctx::from_env().await;
    lambda_runtime::run(service_fn(|event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
        let ctx = &ctx;
        async move {
            let rc = &event.payload.request_context;
            let span = tracing::info_span!("event", connection = rc.connection_id.as_deref().unwrap_or_default(), request = %event.context.request_id);
            handlers::disconnect::handle(ctx, &event.payload).instrument(span).await.map_err(Error::from)
        }
    }))
    .await
}
