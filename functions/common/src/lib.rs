//! The bundled functions' code. Their binaries (`functions/pubsub`, `functions/authorizer`)
//! build a [`Ctx`] once per cold start and hand each event to its handler in [`handlers`]; handlers
//! take the context as a parameter, so tests drive them against a local DynamoDB and
//! `@connections` server.

pub mod auth;
pub mod fanout;
#[cfg(test)]
mod fuzz;
pub mod handlers;
pub mod http;
pub mod partition;
pub mod protocol;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use fanout::Connections;
use store::{Store, Tables};

/// Hands a payload to an asynchronous invocation of a function (the publish function).
#[derive(Clone)]
pub enum Invoker {
    Lambda {
        client: aws_sdk_lambda::Client,
        function: String,
    },
    /// In-process, for tests and local runs without a Lambda endpoint.
    Local(Arc<dyn Fn(Value) -> Result<(), String> + Send + Sync>),
    None,
}

impl Invoker {
    pub async fn invoke_async(&self, payload: &Value) -> Result<(), String> {
        match self {
            Invoker::Lambda { client, function } => client
                .invoke()
                .function_name(function)
                .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
                .payload(aws_sdk_lambda::primitives::Blob::new(payload.to_string()))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    format!("invoking {function}: {e:?}")
                        .chars()
                        .take(300)
                        .collect()
                }),
            Invoker::Local(f) => f(payload.clone()),
            Invoker::None => {
                Err("no publish function is configured (WSCTL_FUNCTION_PUBLISH)".into())
            }
        }
    }
}

/// Clients and settings, built once per cold start.
#[derive(Clone)]
pub struct Ctx {
    pub store: Store,
    pub connections: Connections,
    /// The publish function, for fan-out.
    pub publish: Invoker,
    /// Subscribers one publish invocation delivers to before handing the rest on.
    pub fanout_per_invocation: usize,
    /// `@connections` posts in flight at once.
    pub fanout_concurrency: usize,
    /// How long a numbered publish waits, without progress, for its predecessor to be stored
    /// before going ahead (a predecessor that never arrives must not block the connection).
    pub seq_patience: Duration,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn env_num(name: &str, default: u64) -> u64 {
    env(name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

impl Ctx {
    /// From the environment wsctl deploys: `WSCTL_TABLE_*`, `WSCTL_CONNECTIONS_URL`,
    /// `WSCTL_FUNCTION_PUBLISH`; tunables `HISTORY_TTL_SECONDS`, `FANOUT_PER_INVOCATION`,
    /// `FANOUT_CONCURRENCY`, `SEQ_PATIENCE_MS`. AWS endpoints come from the standard
    /// `AWS_ENDPOINT_URL*`.
    pub async fn from_env() -> Ctx {
        let sdk = sdk_config().await;
        let tables = Tables {
            connections: env("WSCTL_TABLE_CONNECTIONS").unwrap_or_default(),
            subscriptions: env("WSCTL_TABLE_SUBSCRIPTIONS").unwrap_or_default(),
            history: env("WSCTL_TABLE_HISTORY").unwrap_or_default(),
            counters: env("WSCTL_TABLE_COUNTERS").unwrap_or_default(),
        };
        let mut mgmt = aws_sdk_apigatewaymanagement::config::Builder::from(&sdk);
        if let Some(url) = env("WSCTL_CONNECTIONS_URL") {
            mgmt = mgmt.endpoint_url(url);
        }
        let publish = match env("WSCTL_FUNCTION_PUBLISH") {
            Some(function) => Invoker::Lambda {
                client: aws_sdk_lambda::Client::new(&sdk),
                function,
            },
            None => Invoker::None,
        };
        Ctx {
            store: Store {
                db: aws_sdk_dynamodb::Client::new(&sdk),
                tables,
                history_ttl: Duration::from_secs(env_num("HISTORY_TTL_SECONDS", 24 * 3600)),
            },
            connections: Connections {
                client: aws_sdk_apigatewaymanagement::Client::from_conf(mgmt.build()),
            },
            publish,
            fanout_per_invocation: env_num("FANOUT_PER_INVOCATION", 5000) as usize,
            fanout_concurrency: env_num("FANOUT_CONCURRENCY", 64) as usize,
            seq_patience: Duration::from_millis(env_num("SEQ_PATIENCE_MS", 2000)),
        }
    }
}

/// The SDK's configuration from the environment Lambda sets, with [`http::aws_client`] as
/// its HTTP client.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http::aws_client())
        .load()
        .await
}

/// JSON logs, one object per line; handlers add the connection and request ids as fields.
/// `RUST_LOG` picks the level, but never below DEBUG: at TRACE the runtime logs each raw
/// event, and the `$connect` events carry the client's `?token=`.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        // A level, not a full filter: env-filter's regex engine would add ~0.5 MB to every zip.
        .with_max_level(log_level(std::env::var("RUST_LOG").ok().as_deref()))
        .init();
}

pub fn log_level(rust_log: Option<&str>) -> tracing::Level {
    rust_log
        .and_then(|l| l.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO)
        .min(tracing::Level::DEBUG)
}
