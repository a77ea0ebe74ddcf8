//! What the config asks for, as specs with physical names and ARNs filled in.
//!
//! Names are derived from stack + stage only, so every command can find the stack's
//! resources again without a state file.

use std::collections::BTreeMap;

use wsctl_functions::layout;

use super::model::*;
use crate::aws::apigw::AccessLog;
use crate::build::Artifact;
use crate::config::{AccountRole, Config, KeyAttr};
use crate::names::*;

mod monitoring;
mod policies;
mod sizes;

pub use policies::role_policy;
pub use policies::{assume_role_policy, boundary_arn, boundary_policy};
pub use sizes::size_problems;

/// Name of the one inline policy wsctl writes on each role.
pub const POLICY_NAME: &str = "wsctl";
pub const RUNTIME: &str = "provided.al2023";
/// Lambda's `Handler` when the config names none (a custom runtime only passes it on).
pub const HANDLER: &str = "bootstrap";
/// API Gateway's own ceiling for an integration.
pub const INTEGRATION_TIMEOUT_MS: i32 = 29_000;

impl Target {
    /// Takes the ids the live stack has (its API's and its authorizer's) for the ARNs, and the
    /// account's logging role.
    pub fn locate(&mut self, live: &LiveState) {
        self.api_id = live.api_id().map(str::to_string);
        self.authorizer_id = live.authorizer_id().map(str::to_string);
        self.logging_role = live.logging_role().map(str::to_string);
    }
}

/// Every resource the config asks for. `artifacts` gives each function's built zip.
pub fn desired(
    config: &Config,
    target: &Target,
    artifacts: &BTreeMap<String, Artifact>,
) -> Vec<Spec> {
    let names = config.names();
    let tags = names.tags(&config.tags);
    let mut out = Vec::new();

    if let Some(events) = config.events.as_ref().filter(|e| e.owns_bus()) {
        out.push(Spec::EventBus(EventBusSpec {
            name: events.bus(&names),
            tags: tags.clone(),
        }));
    }
    if config.functions.values().any(|f| f.read_secret) {
        out.push(Spec::Secret(SecretSpec {
            name: names.secret(),
            tags: tags.clone(),
        }));
    }
    for (logical, t) in &config.tables {
        let key = |s: &str| KeyAttr::parse(s).expect("validated at load");
        out.push(Spec::Table(TableSpec {
            name: names.table(logical),
            partition_key: key(&t.partition_key),
            sort_key: t.sort_key.as_deref().map(key),
            indexes: t
                .indexes
                .iter()
                .map(|(n, i)| {
                    (
                        n.clone(),
                        IndexSpec {
                            partition_key: key(&i.partition_key),
                            sort_key: i.sort_key.as_deref().map(key),
                        },
                    )
                })
                .collect(),
            ttl_attribute: Some(t.ttl_attribute.clone()),
            ttl_changed: None,
            point_in_time_recovery: t.point_in_time_recovery(logical),
            deletion_protection: t.deletion_protection(logical, &config.stage),
            building: Vec::new(),
            tags: tags.clone(),
        }));
    }
    if config.permissions_boundary.is_none() {
        out.push(Spec::Boundary(BoundarySpec {
            name: names.boundary(),
            path: names.role_path(),
            document: boundary_policy(&names, target),
            tags: tags.clone(),
        }));
    }
    out.push(Spec::Api(ApiSpec {
        name: names.api(),
        route_selection_expression: config.route_selection_expression.clone(),
        tags: tags.clone(),
    }));

    for (logical, f) in &config.functions {
        let function = names.function(logical);
        out.push(Spec::LogGroup(LogGroupSpec {
            name: names.log_group(logical),
            retention_days: Some(config.log_retention_days),
            tags: tags.clone(),
        }));
        out.push(Spec::Role(RoleSpec {
            name: function.clone(),
            path: names.role_path(),
            assume_role_policy: assume_role_policy(target.partition()),
            policies: BTreeMap::from([(
                POLICY_NAME.to_string(),
                role_policy(config, &names, target, logical),
            )]),
            permissions_boundary: Some(boundary_arn(config, target)),
            tags: tags.clone(),
        }));
        let artifact = artifacts.get(logical);
        out.push(Spec::Function(FunctionSpec {
            name: function.clone(),
            role: target.role_arn(&names.role_path(), &function),
            runtime: RUNTIME.into(),
            handler: f.handler.clone().unwrap_or_else(|| HANDLER.into()),
            architecture: config.arch_of(f).lambda_name().into(),
            memory: f.memory as i32,
            timeout: f.timeout as i32,
            environment: environment(config, &names, target, logical),
            code_sha256: artifact
                .map(|a| a.sha256.clone())
                .unwrap_or_else(|| "(not built)".into()),
            reserved_concurrency: f.reserved_concurrency.map(|n| n as i32),
            tags: tags.clone(),
            zip: artifact.map(|a| a.zip.clone()),
        }));
        if config.publish_endpoint && logical == layout::PUBLISH_FUNCTION {
            out.push(Spec::FunctionUrl(FunctionUrlSpec::new(function.clone())));
        }
    }

    let mut integrated: Vec<&String> = config.routes.values().collect();
    integrated.sort();
    integrated.dedup();
    if let Some(auth) = &config.authorizer {
        out.push(Spec::Authorizer(AuthorizerSpec {
            name: names.authorizer(),
            function: auth.function.clone(),
            uri: target.invoke_uri(&names.function(&auth.function)),
            identity_source: auth.identity_source.clone(),
        }));
    }
    out.extend(permissions(config, &names, target).map(Spec::Permission));
    for logical in integrated {
        out.push(Spec::Integration(IntegrationSpec {
            function: logical.clone(),
            uri: target.invoke_uri(&names.function(logical)),
            timeout_ms: INTEGRATION_TIMEOUT_MS,
        }));
    }
    for (key, logical) in &config.routes {
        let authorizer =
            (key == "$connect" && config.authorizer.is_some()).then(|| names.authorizer());
        out.push(Spec::Route(RouteSpec {
            route_key: key.clone(),
            function: Some(logical.clone()),
            authorizer,
        }));
    }
    let access_log = config.access_logs.as_ref().map(|logs| {
        let group = names.access_log_group();
        out.push(Spec::LogGroup(LogGroupSpec {
            name: group.clone(),
            retention_days: Some(logs.retention_days.unwrap_or(config.log_retention_days)),
            tags: tags.clone(),
        }));
        let (role, create_role) = match logs.account_role() {
            AccountRole::Arn(arn) => (arn.to_string(), false),
            AccountRole::Create => match &target.logging_role {
                Some(role) => (role.clone(), false),
                None => (crate::aws::account::logging_role_arn(target), true),
            },
            AccountRole::Existing => (target.logging_role.clone().unwrap_or_default(), false),
        };
        out.push(Spec::Account(AccountSpec {
            name: target.region.clone(),
            cloudwatch_role_arn: role.clone(),
            create_role,
        }));
        AccessLog {
            destination_arn: target.log_group_destination(&group),
            format: logs.format().to_string(),
            role,
        }
    });
    out.push(Spec::Stage(StageSpec {
        name: config.stage.clone(),
        auto_deploy: true,
        throttling_burst: config.throttling.burst,
        throttling_rate: config.throttling.rate,
        access_log,
        tags: tags.clone(),
    }));
    if let Some(domain) = &config.domain {
        out.push(Spec::Domain(DomainSpec {
            name: domain.name.clone(),
            certificate_arn: domain.certificate_arn.clone(),
            tags,
        }));
        out.push(Spec::ApiMapping(ApiMappingSpec::new(
            &domain.name,
            domain.mapping_key(&config.stage),
            target.api(),
            &config.stage,
        )));
    }
    out.extend(monitoring::monitoring(config, target));
    out
}

/// API Gateway may invoke each function only as what it is for: each route it serves on this
/// stage, and the authorizer (not any route, stage or authorizer of the API).
fn permissions<'a>(
    config: &'a Config,
    names: &'a Names,
    target: &'a Target,
) -> impl Iterator<Item = PermissionSpec> + 'a {
    let authorizer = config.authorizer.iter().map(|auth| {
        PermissionSpec::new(
            &names.function(&auth.function),
            AUTHORIZER_SID,
            target.authorizer_arn(),
            None,
        )
    });
    let routes = config.routes.iter().map(|(key, logical)| {
        PermissionSpec::new(
            &names.function(logical),
            &route_sid(key),
            target.route_arn(&config.stage, key),
            Some(key),
        )
    });
    authorizer.chain(routes)
}

fn environment(
    config: &Config,
    names: &Names,
    target: &Target,
    logical: &str,
) -> BTreeMap<String, String> {
    let f = &config.functions[logical];
    let mut env = f.environment.clone();
    env.insert("WSCTL_STACK".into(), config.stack.clone());
    env.insert("WSCTL_STAGE".into(), config.stage.clone());
    for table in f.tables.keys() {
        env.insert(Names::table_env(table), names.table(table));
        // The functions write each item's expiry into the attribute the table's TTL reads. (An
        // undeclared table is a config problem of its own; the size check runs before it stops.)
        if let Some(t) = config.tables.get(table) {
            env.insert(layout::ttl_env(table), t.ttl_attribute.clone());
        }
    }
    for other in &f.invoke {
        env.insert(Names::function_env(other), names.function(other));
    }
    if f.manage_connections {
        env.insert(
            layout::CONNECTIONS_URL_ENV.into(),
            connections_url(target, &config.stage),
        );
    }
    if f.read_secret {
        env.insert("WSCTL_SECRET_PARAMETER".into(), names.secret());
    }
    // The bundled functions that enforce the per-client limits read them here.
    if f.handler
        .as_deref()
        .and_then(layout::role)
        .is_some_and(|r| r.enforces_limits)
    {
        env.insert(
            wsctl_functions::limits::LIMITS_ENV.into(),
            serde_json::to_string(&config.limits).expect("limits are JSON"),
        );
    }
    if let Some(events) = &config.events
        && sends_events(f)
    {
        let settings = wsctl_functions::events::EventsSettings {
            bus: events.bus(names),
            source: names.event_source(),
            connections: events.connections,
            presence: events.presence,
            messages: events.messages.clone(),
        };
        env.insert(
            wsctl_functions::events::EVENTS_ENV.into(),
            serde_json::to_string(&settings).expect("settings are JSON"),
        );
    }
    // The authorizer, and a function that verifies renewed tokens (`read_secret`), accept
    // the same tokens.
    if let Some(auth) = config
        .authorizer
        .as_ref()
        .filter(|a| a.function == logical || f.read_secret)
    {
        if let Some(aud) = &auth.audience {
            env.insert("TOKEN_AUDIENCE".into(), aud.clone());
        }
        if let Some(oidc) = &auth.oidc {
            env.insert("OIDC_ISSUER".into(), oidc.issuer.clone());
            env.insert("OIDC_AUDIENCE".into(), oidc.audience.clone());
            if let Some(url) = &oidc.jwks_url {
                env.insert("OIDC_JWKS_URL".into(), url.clone());
            }
            match oidc.user_prefix.as_deref() {
                Some("") => {
                    env.insert("OIDC_SUB_AS_USER".into(), "true".into());
                }
                Some(prefix) => {
                    env.insert("OIDC_USER_PREFIX".into(), prefix.into());
                }
                None => {}
            }
            if let Some(claim) = &oidc.capabilities_claim {
                env.insert("OIDC_CAPABILITIES_CLAIM".into(), claim.clone());
            }
            if !oidc.default_capabilities.is_empty() {
                env.insert(
                    "OIDC_DEFAULT_CAPABILITIES".into(),
                    serde_json::to_string(&oidc.default_capabilities).unwrap_or_default(),
                );
            }
        }
    }
    env
}

/// The bundled pub/sub functions send `events:`; the authorizer and other functions do not.
fn sends_events(f: &crate::config::FunctionConfig) -> bool {
    f.handler.as_deref().and_then(layout::role).is_some()
}

/// The ARN of the bus `events:` sends to.
fn event_bus_arn(events: &crate::config::EventsConfig, names: &Names, target: &Target) -> String {
    let bus = events.bus(names);
    if bus.starts_with("arn:") {
        bus
    } else {
        target.arn("events", &format!("event-bus/{bus}"))
    }
}

fn camel(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut c = part.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::sizes::{environment_sizes, policy_sizes};
    use crate::config::Problem;
    use crate::config::tests::GOOD;

    /// The config's problems with the built stack's: what loading it reports.
    fn load_problems(text: &str) -> Vec<Problem> {
        match Config::parse(std::path::Path::new("wsctl.yaml"), text) {
            Ok(config) => size_problems(&config),
            Err(crate::config::ConfigError::Invalid { problems, .. }) => problems,
            Err(e) => panic!("{e}"),
        }
    }

    fn fields(text: &str) -> Vec<(String, String)> {
        load_problems(text)
            .into_iter()
            .map(|p| (p.field, p.message))
            .collect()
    }

    #[test]
    fn a_functions_whole_environment_fits_lambdas_4_kb() {
        let with_env = |bytes: usize| {
            GOOD.replace(
                "memory: 256 }",
                &format!(
                    "memory: 256, environment: {{ BIG: '{}' }} }}",
                    "x".repeat(bytes)
                ),
            )
        };
        // The user's 4 KB alone fit; with wsctl's own variables they do not.
        let p = fields(&with_env(4096 - "BIG".len()));
        assert!(
            p.iter().any(|(f, m)| f == "functions.message.environment"
                && m.contains("4096")
                && m.contains("WSCTL_")),
            "{p:?}"
        );
        let sizes =
            environment_sizes(&Config::parse(std::path::Path::new("wsctl.yaml"), GOOD).unwrap());
        let own = sizes.iter().find(|(f, _)| f == "message").unwrap().1;
        assert!(own > 0, "wsctl's variables count: {sizes:?}");
        assert!(fields(&with_env(4096 - "BIG".len() - own)).is_empty());
    }

    #[test]
    fn a_function_may_serve_only_the_routes_its_policy_can_hold() {
        let with_routes = |n: usize| {
            let extra: String = (0..n)
                .map(|i| format!("  action-number-{i:03}: message\n"))
                .collect();
            GOOD.replace("routes:\n", &format!("routes:\n{extra}"))
        };
        let config = Config::parse(std::path::Path::new("wsctl.yaml"), &with_routes(10)).unwrap();
        let sizes = policy_sizes(&config);
        let message = sizes.iter().find(|(f, _)| f == "message").unwrap().1;
        // Twelve statements of a few hundred bytes each.
        assert!((12 * 300..12 * 600).contains(&message), "{sizes:?}");
        let found = load_problems(&with_routes(60));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].field, "routes");
        assert!(
            found[0]
                .message
                .contains("function `message` serves 62 routes")
                && found[0].message.contains("20480"),
            "{found:?}"
        );
    }

    /// The longest names the config allows (stack 20, stage 16, functions and tables 24
    /// characters) fit every service's limit, so no name is refused half-way through a deploy:
    /// Lambda FunctionName "limited to 64 characters" (CreateFunction), IAM RoleName 64 and
    /// PolicyName 128 (CreateRole, CreatePolicy), IAM path 512, DynamoDB TableName 3-255
    /// ("Naming rules"), CloudWatch Logs logGroupName 1-512 (CreateLogGroup), API Gateway
    /// authorizer name 128 and stage name 128, SSM parameter name 1011 characters and at most
    /// 15 levels (PutParameter).
    #[test]
    fn the_longest_names_the_config_allows_fit_every_service() {
        let names = Names {
            stack: "s".repeat(20),
            stage: "t".repeat(16),
        };
        let logical = "f".repeat(24);
        let checks: [(&str, String, usize); 9] = [
            ("Lambda function", names.function(&logical), 64),
            ("IAM role", names.function(&logical), 64),
            ("IAM managed policy", names.boundary(), 128),
            ("IAM path", names.role_path(), 512),
            ("DynamoDB table", names.table(&logical), 255),
            ("log group", names.log_group(&logical), 512),
            ("access log group", names.access_log_group(), 512),
            ("authorizer", names.authorizer(), 128),
            ("SSM parameter", names.secret(), 1011),
        ];
        for (what, name, limit) in checks {
            assert!(
                name.chars().count() <= limit,
                "{what} {name} is {} characters, over {limit}",
                name.chars().count()
            );
        }
        assert!(names.secret().matches('/').count() <= 15);
        assert!(names.api().len() <= 128 && names.table(&logical).len() >= 3);
    }

    #[test]
    fn the_authorizer_gets_its_token_settings_and_reserved_concurrency_reaches_the_spec() {
        let text = include_str!("../../../../templates/wsctl.yaml")
            .replace("  # audience: chat", "  audience: chat")
            .replace(
                "    # reserved_concurrency: 100",
                "    reserved_concurrency: 100",
            )
            + "\n";
        let mut config = Config::parse(std::path::Path::new("wsctl.yaml"), &text).unwrap();
        config.authorizer.as_mut().unwrap().oidc = Some(crate::config::OidcConfig {
            issuer: "https://id.example.com/".into(),
            audience: "chat-app".into(),
            jwks_url: None,
            capabilities_claim: Some("cap".into()),
            default_capabilities: BTreeMap::from([(
                "room-*".to_string(),
                vec!["subscribe".to_string()],
            )]),
            user_prefix: Some("idp".into()),
        });
        let target = Target {
            account: "123456789012".into(),
            region: "eu-west-1".into(),
            api_id: Some("abc".into()),
            authorizer_id: None,
            logging_role: None,
        };
        let specs = desired(&config, &target, &BTreeMap::new());
        let function = |name: &str| {
            specs
                .iter()
                .find_map(|s| match s {
                    Spec::Function(f) if f.name.ends_with(name) => Some(f.clone()),
                    _ => None,
                })
                .unwrap()
        };
        let env = function("-authorizer").environment;
        assert_eq!(env.get("TOKEN_AUDIENCE").map(String::as_str), Some("chat"));
        assert_eq!(
            env.get("OIDC_ISSUER").map(String::as_str),
            Some("https://id.example.com/")
        );
        assert_eq!(
            env.get("OIDC_AUDIENCE").map(String::as_str),
            Some("chat-app")
        );
        assert_eq!(
            env.get("OIDC_CAPABILITIES_CLAIM").map(String::as_str),
            Some("cap")
        );
        assert_eq!(
            env.get("OIDC_DEFAULT_CAPABILITIES").map(String::as_str),
            Some(r#"{"room-*":["subscribe"]}"#)
        );
        assert!(!env.contains_key("OIDC_JWKS_URL"), "discovery by default");
        assert_eq!(env.get("OIDC_USER_PREFIX").map(String::as_str), Some("idp"));
        // The message function verifies renewed tokens: it accepts what the authorizer does.
        let message = function("-message").environment;
        for k in [
            "TOKEN_AUDIENCE",
            "OIDC_ISSUER",
            "OIDC_AUDIENCE",
            "OIDC_CAPABILITIES_CLAIM",
        ] {
            assert_eq!(message.get(k), env.get(k), "{k}");
        }
        assert!(
            !function("-publish")
                .environment
                .keys()
                .any(|k| k.starts_with("OIDC_") || k == "TOKEN_AUDIENCE"),
            "only the functions that verify tokens"
        );
        assert_eq!(function("-publish").reserved_concurrency, Some(100));
        assert_eq!(function("-message").reserved_concurrency, None);
    }

    #[test]
    fn every_bundled_function_gets_what_its_role_needs_and_the_configured_ttl_attributes() {
        let text = include_str!("../../../../templates/wsctl.yaml").replace(
            "    partition_key: pk\n    ttl_attribute: ttl",
            "    partition_key: pk\n    ttl_attribute: expires_at",
        );
        let config = Config::parse(std::path::Path::new("wsctl.yaml"), &text).unwrap();
        assert_eq!(config.tables["connections"].ttl_attribute, "expires_at");
        let target = Target {
            account: "123456789012".into(),
            region: "eu-west-1".into(),
            api_id: Some("abc".into()),
            authorizer_id: None,
            logging_role: None,
        };
        let specs = desired(&config, &target, &BTreeMap::new());
        let mut started = 0;
        for spec in &specs {
            let Spec::Function(f) = spec else { continue };
            let Some(role) = layout::role(&f.handler) else {
                continue;
            };
            // What the function checks at cold start, on the environment the deploy sets.
            let settings =
                wsctl_functions::Settings::from_vars(role, |k| f.environment.get(k).cloned())
                    .unwrap_or_else(|e| panic!("{}: {e}", f.name));
            assert_eq!(settings.tables.connections, "chat-dev-connections");
            assert_eq!(settings.tables.ttl.connections, "expires_at", "{}", f.name);
            started += 1;
        }
        assert_eq!(started, 4, "connect, disconnect, message and publish");
    }
}
