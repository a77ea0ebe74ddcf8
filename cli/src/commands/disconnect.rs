//! `wsctl disconnect --connection ID | --user U`: closes connections as API Gateway's
//! `DeleteConnection` does; their tokens stay valid (`wsctl revoke` refuses them too).

use serde_json::json;

use crate::args::DisconnectArgs;
use crate::aws::AwsArgs;
use crate::config::Config;
use crate::error::Error;
use crate::output::Printer;
use crate::stack::{Stack, close_connections};

pub async fn run(
    config: &Config,
    aws: &AwsArgs,
    args: &DisconnectArgs,
    printer: &Printer,
) -> Result<(), Error> {
    let stack = Stack::open(config, aws).await?;
    let ids = match &args.user {
        Some(user) => stack
            .store()
            .connections_of(user)
            .await
            .map_err(|e| Error::Io(e.to_string()))?,
        None => args.connection.clone(),
    };
    let result = close_connections(&stack.connections().await?, &ids).await?;
    if printer.json() {
        printer.result_json(&json!({"closed": result.closed, "gone": result.gone}));
    } else {
        printer.result(format!("closed {} connection(s)", result.closed.len()));
        for id in &result.gone {
            printer.note(format!("{id} was not open"));
        }
    }
    Ok(())
}
