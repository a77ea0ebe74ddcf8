//! Server-side fan-out (from the message function and `wsctl publish`).

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use tracing::Instrument;
use wsctl_functions::{Ctx, handlers};

pub async fn serve() -> Result<(), Error> {
    wsctl_functions::init_logging();
    let ctx = Ctx::from_env().await;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let ctx = &ctx;
        async move {
            let span = tracing::info_span!("event", request = %event.context.request_id);
            let request = event.context.request_id.clone();
            handlers::publish::handle(ctx, event.payload, &request)
                .instrument(span)
                .await
                .map_err(Error::from)
        }
    }))
    .await
}
