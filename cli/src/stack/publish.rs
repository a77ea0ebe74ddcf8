//! The stack's publish function, invoked and waited for (`RequestResponse`): the message is
//! stored under the channel's next serial and sent to every subscriber, and the answer carries
//! the serial and the fan-out's counts (delivered, gone with 410, failed). `wsctl publish
//! --channel` and `wsctl bench --via function` publish this way.

use aws_sdk_lambda::primitives::Blob;
use serde_json::{Value, json};
use wsctl_functions::handlers::publish::PublishResult;
use wsctl_functions::layout;

use super::Stack;
use crate::aws::{AwsError, CallContext};
use crate::error::Error;

/// A handle that outlives the [`Stack`] it came from, so load can hold it across tasks.
#[derive(Debug, Clone)]
pub struct PublishFunction {
    client: aws_sdk_lambda::Client,
    function: String,
}

impl Stack<'_> {
    pub fn publish_function(&self) -> PublishFunction {
        PublishFunction {
            client: self.clients.lambda.clone(),
            function: self.names.function(layout::PUBLISH_FUNCTION),
        }
    }
}

impl Stack<'_> {
    /// The publish endpoint's URL, when the publish function has one.
    pub async fn publish_endpoint(&self) -> Result<Option<String>, Error> {
        let function = self.names.function(layout::PUBLISH_FUNCTION);
        let url = crate::aws::lambda::read_url(&self.clients, &function).await?;
        Ok(url.map(|(_, address)| address))
    }
}

impl PublishFunction {
    /// Publishes `data` to `channel` as the server (`from: "server"`); `id` makes a retry
    /// idempotent. A function error is an error here, with the function's own message.
    pub async fn publish(
        &self,
        channel: &str,
        data: &Value,
        id: Option<&str>,
    ) -> Result<PublishResult, Error> {
        let payload = json!({"channel": channel, "data": data, "id": id, "from": "server"});
        let out = self
            .client
            .invoke()
            .function_name(&self.function)
            .payload(Blob::new(payload.to_string()))
            .send()
            .await
            .ctx("Invoke", &self.function)?;
        let body = out.payload.map(|p| p.into_inner()).unwrap_or_default();
        if let Some(kind) = out.function_error {
            let message = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("errorMessage")?.as_str().map(String::from))
                .unwrap_or_else(|| "no message".into());
            return Err(self.failed(format!("the publish function failed ({kind}): {message}")));
        }
        serde_json::from_slice(&body).map_err(|e| {
            self.failed(format!(
                "the publish function's answer is not a publish result ({e}): {}",
                String::from_utf8_lossy(&body)
            ))
        })
    }

    fn failed(&self, detail: String) -> Error {
        Error::Aws(AwsError::Other {
            op: "Invoke",
            resource: self.function.clone(),
            detail,
        })
    }
}
