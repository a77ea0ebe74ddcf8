//! The five bundled functions in one binary. Lambda hands a custom runtime its `Handler`
//! setting as `_HANDLER`; wsctl.yaml's `handler:` sets it, and it picks the role. One binary
//! is one size-optimised link instead of five, and one zip that every function shares.

mod authorizer;
mod publish;

use std::process::ExitCode;

use wsctl_functions::handlers::{connect, disconnect, message};

/// The roles, as `handler:` names them.
const ROLES: &[&str] = &["authorizer", "connect", "disconnect", "message", "publish"];

#[tokio::main]
async fn main() -> ExitCode {
    let handler = std::env::var("_HANDLER").unwrap_or_default();
    let served = match handler.as_str() {
        "authorizer" => authorizer::serve().await,
        "connect" => {
            wsctl_functions::serve_websocket(|ctx, event| async move {
                Ok(connect::handle(&ctx, &event).await?)
            })
            .await
        }
        "disconnect" => {
            wsctl_functions::serve_websocket(|ctx, event| async move {
                Ok(disconnect::handle(&ctx, &event).await?)
            })
            .await
        }
        "message" => {
            wsctl_functions::serve_websocket(|ctx, event| async move {
                Ok(message::handle(&ctx, &event).await)
            })
            .await
        }
        "publish" => publish::serve().await,
        other => {
            // Printed before any logging is set up: this is what the init error log shows.
            eprintln!(
                "wsctl-bundled: the handler setting is {other:?}, which is not one of this binary's functions ({})\nhint: set `handler:` of this function in wsctl.yaml to one of them",
                ROLES.join(", ")
            );
            return ExitCode::from(2);
        }
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsctl-bundled ({handler}): {e}");
            ExitCode::FAILURE
        }
    }
}
