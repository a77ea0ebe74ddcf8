//! `$connect`: stores the connection with the identity the authorizer established. A failure
//! here fails the handshake, so no connection exists that the store does not know.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};

use crate::Ctx;
use crate::auth::now;
use crate::store::{Connection, StoreError};

pub async fn handle(
    ctx: &Ctx,
    event: &ApiGatewayWebsocketProxyRequest,
) -> Result<ApiGatewayProxyResponse, StoreError> {
    let rc = &event.request_context;
    let (user, capabilities) =
        super::identity(rc).unwrap_or_else(|| ("anonymous".into(), Default::default()));
    let connected_at = if rc.connected_at > 0 {
        rc.connected_at as u64 / 1000
    } else {
        now()
    };
    let connection = Connection {
        id: super::connection_id(rc),
        user,
        capabilities,
        connected_at,
    };
    ctx.store.put_connection(&connection).await?;
    tracing::info!(user = %connection.user, "connected");
    Ok(super::ok())
}
