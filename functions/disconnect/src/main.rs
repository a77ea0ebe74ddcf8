//! `$disconnect` route.

use wsctl_functions::handlers::disconnect;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    wsctl_functions::serve_websocket(|ctx, event| async move {
        Ok(disconnect::handle(&ctx, &event).await?)
    })
    .await
}
