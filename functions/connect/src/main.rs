//! `$connect` route.

use wsctl_functions::handlers::connect;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    wsctl_functions::serve_websocket(|ctx, event| async move {
        Ok(connect::handle(&ctx, &event).await?)
    })
    .await
}
