//! The bundled functions' code. Their binaries (`functions/pubsub`, `functions/authorizer`)
//! build a [`Services`] once per cold start and hand each event to its handler in [`handlers`]; handlers
//! take the context as a parameter, so tests drive them against a local DynamoDB and
//! `@connections` server.

pub mod auth;
pub mod connections;
pub mod events;
pub mod fanout;
#[cfg(test)]
mod fuzz;
pub mod handlers;
pub mod http;
pub mod layout;
pub mod limits;
pub mod metrics;
pub mod partition;
pub mod protocol;
pub mod session;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use connections::Connections;
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
pub struct Services {
    pub store: Store,
    pub connections: Connections,
    /// The publish function, for fan-out.
    pub publish: Invoker,
    /// The most subscribers one invocation posts to (a chunk is usually smaller: a quarter
    /// second of the invocation's pace).
    pub fanout_per_invocation: usize,
    /// `@connections` posts in flight at once, per invocation.
    pub fanout_concurrency: usize,
    /// Posts a second one fan-out may make, and at once: its share of the account's API
    /// Gateway throttle.
    pub fanout_rate: f64,
    pub fanout_burst: f64,
    /// Posts a second one invocation makes, at most: a fan-out wider than that is spread over
    /// several invocations.
    pub fanout_invocation_rate: f64,
    /// How long a numbered publish waits, without progress, for its predecessor to be stored
    /// before going ahead (a predecessor that never arrives must not block the connection).
    pub seq_patience: Duration,
    /// What one connection or user may use (`limits:` in wsctl.yaml).
    pub limits: limits::Limits,
    /// Verifies `auth` frames' tokens: `None` when the function may not read the token
    /// secret (`read_secret`), and renewals are then refused.
    pub tokens: Option<Arc<handlers::authorizer::Authorizer>>,
    /// Revocation lookups, each used for a few seconds.
    pub revocations: Arc<session::RevocationCache>,
    /// Refused frames per connection, to close the ones that keep sending.
    pub floods: Arc<limits::FloodWatch>,
    /// The bus `events:` sends to, when it is set.
    pub events: Option<events::Events>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A variable the function's role cannot work without is not set: found at cold start, so the
/// function's init fails with this one line in its log instead of failing each event later
/// with an AWS error about an empty table name.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "{} is not set: the {role} function needs {}; in wsctl.yaml give it {} (wsctl then sets the variable) and deploy again",
    needed.variable, needed.what, needed.fix
)]
pub struct MissingVariable {
    pub needed: layout::Needed,
    pub role: &'static str,
}

/// What a pub/sub function reads from its environment, checked before any client is built.
#[derive(Debug, Clone)]
pub struct Settings {
    pub tables: Tables,
    pub connections_url: Option<String>,
    pub publish: Option<String>,
    pub history_ttl: Duration,
    pub fanout_per_invocation: usize,
    pub fanout_concurrency: usize,
    pub fanout_rate: f64,
    pub fanout_burst: f64,
    pub fanout_invocation_rate: f64,
    pub seq_patience: Duration,
    pub limits: limits::Limits,
    pub events: Option<events::EventsSettings>,
}

impl Settings {
    /// From the environment wsctl deploys: `WSCTL_TABLE_*` and `WSCTL_TTL_ATTRIBUTE_*` for each
    /// table, `WSCTL_CONNECTIONS_URL`, `WSCTL_FUNCTION_PUBLISH` (see [`layout::needed_env`]:
    /// the first one `role` needs and lacks is the error); tunables `HISTORY_TTL_SECONDS`,
    /// `FANOUT_PER_INVOCATION`, `FANOUT_CONCURRENCY`, `FANOUT_RATE`, `FANOUT_BURST`,
    /// `FANOUT_INVOCATION_RATE`, `SEQ_PATIENCE_MS`; the limits in
    /// `WSCTL_LIMITS`; what to send to EventBridge in `WSCTL_EVENTS`.
    pub fn from_env(role: &layout::Role) -> Result<Settings, MissingVariable> {
        Settings::from_vars(role, env)
    }

    /// As [`Settings::from_env`], reading variables through `var` (empty counts as unset).
    pub fn from_vars(
        role: &layout::Role,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, MissingVariable> {
        let var = |name: &str| var(name).filter(|v| !v.is_empty());
        if let Some(needed) = layout::needed_env(role)
            .into_iter()
            .find(|n| var(&n.variable).is_none())
        {
            return Err(MissingVariable {
                needed,
                role: role.handler,
            });
        }
        // Tables the role does not use stay unnamed: nothing reads them.
        let name = |t: &layout::Table| var(&layout::table_env(t.name)).unwrap_or_default();
        let ttl = |t: &layout::Table| {
            var(&layout::ttl_env(t.name)).unwrap_or_else(|| layout::DEFAULT_TTL_ATTRIBUTE.into())
        };
        let num =
            |name: &str, default: u64| var(name).and_then(|v| v.parse().ok()).unwrap_or(default);
        Ok(Settings {
            tables: Tables::named(name, ttl),
            connections_url: var(layout::CONNECTIONS_URL_ENV),
            publish: var(&layout::function_env(layout::PUBLISH_FUNCTION)),
            history_ttl: Duration::from_secs(num("HISTORY_TTL_SECONDS", 24 * 3600)),
            fanout_per_invocation: num("FANOUT_PER_INVOCATION", 5000) as usize,
            fanout_concurrency: num("FANOUT_CONCURRENCY", 64) as usize,
            // 90 % of the account's default API Gateway throttle, 10,000 a second with a burst
            // of 5,000 ("Amazon API Gateway quotas"): the rest stays for what must not wait
            // behind a large fan-out (acknowledgements, small channels' posts, other APIs).
            fanout_rate: num("FANOUT_RATE", 9_000).max(1) as f64,
            fanout_burst: num("FANOUT_BURST", 4_000).max(1) as f64,
            fanout_invocation_rate: num("FANOUT_INVOCATION_RATE", 2_500).max(1) as f64,
            seq_patience: Duration::from_millis(num("SEQ_PATIENCE_MS", 2000)),
            limits: limits::Limits::from_var(var(limits::LIMITS_ENV).as_deref()),
            // wsctl writes it; one that does not parse sends nothing rather than failing.
            events: var(events::EVENTS_ENV).and_then(|v| serde_json::from_str(&v).ok()),
        })
    }
}

impl Services {
    /// The clients for `settings`. AWS endpoints come from the standard `AWS_ENDPOINT_URL*`.
    pub async fn new(settings: Settings) -> Services {
        let sdk = sdk_config().await;
        let publish = match settings.publish {
            Some(function) => Invoker::Lambda {
                client: aws_sdk_lambda::Client::new(&sdk),
                function,
            },
            None => Invoker::None,
        };
        Services {
            store: Store {
                db: aws_sdk_dynamodb::Client::new(&sdk),
                tables: settings.tables,
                history_ttl: settings.history_ttl,
            },
            connections: Connections::new(&sdk, settings.connections_url.as_deref().unwrap_or("")),
            publish,
            fanout_per_invocation: settings.fanout_per_invocation,
            fanout_concurrency: settings.fanout_concurrency,
            fanout_rate: settings.fanout_rate,
            fanout_burst: settings.fanout_burst,
            fanout_invocation_rate: settings.fanout_invocation_rate,
            seq_patience: settings.seq_patience,
            limits: settings.limits,
            tokens: tokens(&sdk),
            revocations: Default::default(),
            floods: Default::default(),
            events: settings.events.map(|e| events::Events::new(e, &sdk)),
        }
    }

    /// Keeps the event `make` builds to send at the end of the invocation, when `events:` asks
    /// for it. Built only when the stage sends events: a message's event copies its data, which
    /// a publish must not pay for otherwise.
    pub fn event(&self, make: impl FnOnce() -> events::Event) {
        if let Some(events) = &self.events {
            events.queue(make());
        }
    }

    /// Whether the stage sends events at all (`events:`).
    pub fn sends_events(&self) -> bool {
        self.events.is_some()
    }

    /// Sends the invocation's events (best-effort: see [`events`]).
    pub async fn send_events(&self) {
        if let Some(events) = &self.events {
            events.flush().await;
        }
    }
}

/// The verifier of renewed tokens, for a function given the token secret.
fn tokens(sdk: &aws_config::SdkConfig) -> Option<Arc<handlers::authorizer::Authorizer>> {
    env("WSCTL_SECRET_PARAMETER")?;
    match handlers::authorizer::Authorizer::from_env_with(sdk) {
        Ok(a) => Some(Arc::new(a)),
        Err(e) => {
            tracing::error!(error = %e, "tokens cannot be renewed");
            None
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// What wsctl deploys for the template's message function.
    fn deployed() -> HashMap<String, String> {
        let mut vars = HashMap::new();
        for t in layout::TABLES {
            vars.insert(layout::table_env(t.name), format!("chat-dev-{}", t.name));
            vars.insert(layout::ttl_env(t.name), "expires_at".to_string());
        }
        vars.insert("WSCTL_FUNCTION_PUBLISH".into(), "chat-dev-publish".into());
        vars.insert(
            "WSCTL_CONNECTIONS_URL".into(),
            "https://a.execute-api.eu-west-1.amazonaws.com/dev".into(),
        );
        vars
    }

    fn settings(role: &str, vars: &HashMap<String, String>) -> Result<Settings, MissingVariable> {
        Settings::from_vars(layout::role(role).unwrap(), |k| vars.get(k).cloned())
    }

    #[test]
    fn a_missing_variable_is_refused_at_start_naming_it_and_the_fix() {
        let mut vars = deployed();
        vars.remove("WSCTL_TABLE_COUNTERS");
        let e = settings("message", &vars).unwrap_err();
        assert_eq!(e.needed.variable, "WSCTL_TABLE_COUNTERS");
        let line = e.to_string();
        assert!(!line.contains('\n'), "one log line: {line}");
        assert!(
            line.starts_with("WSCTL_TABLE_COUNTERS is not set"),
            "{line}"
        );
        assert!(line.contains("counters: read-write"), "{line}");

        // Empty is unset, as Lambda's console leaves a cleared value.
        let mut vars = deployed();
        vars.insert("WSCTL_CONNECTIONS_URL".into(), String::new());
        let e = settings("publish", &vars).unwrap_err();
        assert_eq!(e.needed.variable, "WSCTL_CONNECTIONS_URL");
        assert!(e.to_string().contains("manage_connections: true"), "{e}");

        let mut vars = deployed();
        vars.remove("WSCTL_TTL_ATTRIBUTE_CONNECTIONS");
        let e = settings("connect", &vars).unwrap_err();
        assert_eq!(e.needed.variable, "WSCTL_TTL_ATTRIBUTE_CONNECTIONS");
    }

    #[test]
    fn a_role_needs_only_its_own_tables_and_gets_the_configured_ttl_attributes() {
        let vars: HashMap<String, String> = deployed()
            .into_iter()
            .filter(|(k, _)| {
                (k.ends_with("_CONNECTIONS") || k.ends_with("_COUNTERS"))
                    && k.starts_with("WSCTL_T")
            })
            .collect();
        let s = settings("connect", &vars).unwrap();
        assert_eq!(s.tables.connections, "chat-dev-connections");
        assert_eq!(s.tables.ttl.connections, "expires_at");
        assert_eq!(s.tables.counters, "chat-dev-counters");
        assert_eq!(s.tables.subscriptions, "");
        assert!(settings("disconnect", &vars).is_err());

        let s = settings("message", &deployed()).unwrap();
        assert_eq!(s.tables.ttl.history, "expires_at");
        assert_eq!(s.publish.as_deref(), Some("chat-dev-publish"));
    }
}
