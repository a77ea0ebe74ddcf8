//! Client actions: `$default` and custom routes.

use wsctl_functions::handlers::message;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    wsctl_functions::serve_websocket(
        |ctx, event| async move { Ok(message::handle(&ctx, &event).await) },
    )
    .await
}
