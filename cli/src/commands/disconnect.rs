//! `wsctl disconnect --connection ID | --user U`: closes connections as API Gateway's
//! `DeleteConnection` does; their tokens stay valid (`wsctl revoke` refuses them too).

use crate::args::DisconnectArgs;
use crate::aws::AwsArgs;
use crate::config::Config;
use crate::error::Error;
use crate::output::Printer;
use crate::stack::{Closed, Stack, close_connections};

pub async fn run(
    config: &Config,
    aws: &AwsArgs,
    args: &DisconnectArgs,
    printer: &Printer,
) -> Result<Closed, Error> {
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
    for id in &result.gone {
        printer.note(format!("{id} was not open"));
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_are_pinned() {
        let closed = Closed {
            closed: vec!["abc=".into()],
            gone: vec!["def=".into()],
        };
        assert_eq!(
            crate::output::forms(&closed),
            (
                "{\n  \"closed\": [\n    \"abc=\"\n  ],\n  \"gone\": [\n    \"def=\"\n  ]\n}"
                    .into(),
                "closed 1 connection(s)".into()
            )
        );
    }
}
