//! One handle on a live stack, deployed or served by `wsctl dev`: its names, the AWS clients
//! and account, its tables as the functions use them, its publish function, its token
//! secret and the gateway that serves its stage. Every command that talks to a running
//! stack starts here, so none of them builds an endpoint or a client of its own.

mod close;
pub mod logs;
mod publish;
mod rows;
mod socket;

use std::time::Duration;

use aws_sdk_apigatewaymanagement as mgmt;
use wsctl_functions::auth::{Capabilities, Claims, SecretKeys, mint};
use wsctl_functions::partition::Partition;
use wsctl_functions::store::{Store, Tables};
use wsctl_functions::{Invoker, layout};

pub use close::{Closed, close_connections};
pub use publish::PublishFunction;
pub use rows::{rows, scan, subscriber_ids};
pub use wsctl_client::with_token;

use crate::aws::domain::DnsTarget;
use crate::aws::{AwsArgs, CallContext, Clients};
use crate::config::Config;
use crate::error::Error;
use crate::names::{Names, Target};

pub struct Stack<'c> {
    pub config: &'c Config,
    pub names: Names,
    pub clients: Clients,
    /// Account and region; `api_id` is not looked up here (see [`Stack::gateway`]).
    pub target: Target,
    /// `--gateway-url`: who serves the stage, when API Gateway's own answer is not it.
    gateway_url: Option<String>,
    /// `--endpoint-url` (or `AWS_ENDPOINT_URL`): set when the AWS APIs are an emulator's.
    endpoint_url: Option<String>,
}

/// Where a stage is served: the WebSocket URL clients connect to and the `@connections` base.
#[derive(Debug, Clone, PartialEq)]
pub struct Gateway {
    /// `wss://…/STAGE` (`ws://` locally).
    pub websocket: String,
    /// `https://…/STAGE`: the SDK's `@connections` endpoint (it appends `/@connections/ID`).
    pub connections: String,
}

/// The stage as served through its custom domain, and what DNS must say for that.
#[derive(Debug, Clone)]
pub struct CustomDomain {
    pub name: String,
    pub gateway: Gateway,
    pub dns: DnsTarget,
}

impl CustomDomain {
    /// One line for people: the record to create.
    pub fn dns_line(&self) -> String {
        let name = &self.name;
        match (&self.dns.target, &self.dns.hosted_zone_id) {
            (Some(target), Some(zone)) => {
                format!("CNAME {name} -> {target} (or a Route 53 alias to it, hosted zone {zone})")
            }
            (Some(target), None) => format!("CNAME {name} -> {target}"),
            _ => "API Gateway has not reported the domain's target yet; run `wsctl status` again"
                .into(),
        }
    }
}

/// Its URLs and the DNS record it needs, as `deploy` and `status` print them.
impl std::fmt::Display for CustomDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "  Custom domain:    {}\n  @connections URL: {} (through the domain)\n  DNS:              {}",
            self.gateway.websocket,
            self.gateway.connections_url(),
            self.dns_line()
        )
    }
}

impl serde::Serialize for CustomDomain {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serde_json::json!({
            "url": self.gateway.websocket,
            "connections_url": self.gateway.connections_url(),
            "dns_target": self.dns.target,
            "hosted_zone_id": self.dns.hosted_zone_id,
            "status": self.dns.status,
        })
        .serialize(serializer)
    }
}

impl Gateway {
    /// From a server's base URL (`https://host`, `wss://host`, `http://127.0.0.1:8080`) and a
    /// stage (or, behind a custom domain, an API mapping key, which may be empty).
    pub fn at(base: &str, stage: &str) -> Gateway {
        let base = base.trim_end_matches('/');
        let (secure, host) = match base.split_once("://") {
            Some((scheme, host)) => (matches!(scheme, "https" | "wss"), host),
            None => (true, base),
        };
        let (ws, http) = if secure {
            ("wss", "https")
        } else {
            ("ws", "http")
        };
        let path = if stage.is_empty() {
            String::new()
        } else {
            format!("/{stage}")
        };
        Gateway {
            websocket: format!("{ws}://{host}{path}"),
            connections: format!("{http}://{host}{path}"),
        }
    }

    /// The `@connections` URL as API Gateway documents it.
    pub fn connections_url(&self) -> String {
        format!("{}/@connections", self.connections)
    }
}

impl<'c> Stack<'c> {
    /// Clients and account for `config`'s stack. Credentials are checked here, first, so a
    /// missing one is the first thing a command reports.
    pub async fn open(config: &'c Config, aws: &AwsArgs) -> Result<Stack<'c>, Error> {
        let clients = Clients::connect(aws, config.region.as_deref()).await?;
        let account = clients.account().await?;
        let target = Target {
            account,
            region: clients.region.clone(),
            api_id: None,
            authorizer_id: None,
            logging_role: None,
        };
        // AWS_ENDPOINT_URL counts as much as the flag.
        let endpoint_url = aws
            .endpoint_url
            .clone()
            .or_else(|| clients.sdk.endpoint_url().map(str::to_string));
        Ok(Stack {
            config,
            names: config.names(),
            clients,
            target,
            gateway_url: aws.gateway_url.clone(),
            endpoint_url,
        })
    }

    /// The stack's tables, as the functions use them.
    pub fn store(&self) -> Store {
        let name = |t: &layout::Table| self.names.table(t.name);
        let ttl = |t: &layout::Table| {
            self.config
                .tables
                .get(t.name)
                .map(|t| t.ttl_attribute.clone())
                .unwrap_or_else(|| layout::DEFAULT_TTL_ATTRIBUTE.into())
        };
        Store {
            db: self.clients.dynamodb.clone(),
            tables: Tables::named(name, ttl),
            history_ttl: Duration::from_secs(24 * 3600),
        }
    }

    /// The stack's publish function, invoked asynchronously (as the functions do).
    pub fn publish(&self) -> Invoker {
        Invoker::Lambda {
            client: self.clients.lambda.clone(),
            function: self.names.function(layout::PUBLISH_FUNCTION),
        }
    }

    /// Where the stage is served, as far as anyone says: `--gateway-url` when given, else the
    /// API's own endpoint as API Gateway reports it (`ApiEndpoint`, which `wsctl dev`
    /// answers with its own address). `None` when the API does not exist.
    pub async fn find_gateway(&self) -> Result<Option<Gateway>, Error> {
        if let Some(base) = &self.gateway_url {
            return Ok(Some(Gateway::at(base, &self.config.stage)));
        }
        let Some(id) = crate::aws::apigw::find_api(&self.clients, &self.names).await? else {
            return Ok(None);
        };
        let api = self
            .clients
            .apigw
            .get_api()
            .api_id(&id)
            .send()
            .await
            .ctx("GetApi", &id)?;
        Ok(api
            .api_endpoint
            .map(|endpoint| Gateway::at(&endpoint, &self.config.stage)))
    }

    /// Whether the AWS APIs are an emulator's (`--endpoint-url`): the console has nothing of it.
    pub fn emulated(&self) -> bool {
        self.endpoint_url.is_some()
    }

    /// The local gateway serving the stack, when it is `wsctl dev`'s: a plain `ws://` server on
    /// this machine behind an emulator's AWS endpoint, which API Gateway never is. Such a stack
    /// runs `wsctl dev`'s own build (this machine's architecture, the local profile).
    pub async fn local_gateway(&self) -> Result<Option<Gateway>, Error> {
        if self.endpoint_url.is_none() {
            return Ok(None);
        }
        Ok(self
            .find_gateway()
            .await?
            .filter(|g| is_local_ws(&g.websocket)))
    }

    /// The stage behind its custom domain, when the config has one and it exists. Its
    /// `@connections` URL carries the API mapping's path, as any request through the domain
    /// does (API Gateway routes a custom domain's requests by that path).
    pub async fn custom_domain(&self) -> Result<Option<CustomDomain>, Error> {
        let Some(domain) = &self.config.domain else {
            return Ok(None);
        };
        let Some(dns) = crate::aws::domain::dns_target(&self.clients, &domain.name).await? else {
            return Ok(None);
        };
        let base = format!("wss://{}", domain.name);
        Ok(Some(CustomDomain {
            name: domain.name.clone(),
            gateway: Gateway::at(&base, domain.mapping_key(&self.config.stage)),
            dns,
        }))
    }

    /// The gateway to talk to. An emulator that reports an AWS host for its API has no gateway
    /// of its own: going there would reach AWS, so that is refused.
    pub async fn gateway(&self) -> Result<Gateway, Error> {
        let gateway = self.find_gateway().await?.ok_or_else(|| Error::Usage {
            usage: format!(
                "the stack {} is not deployed\nhint: run `wsctl deploy` first (or, for `wsctl connect`, pass --url)",
                self.names.api()
            ),
        })?;
        if let Some(emulator) = &self.endpoint_url
            && self.gateway_url.is_none()
            && is_aws_url(&gateway.websocket)
        {
            return Err(Error::Usage {
                usage: format!(
                    "the AWS endpoint {emulator} reports the stage at {}, which is AWS's address, not a local server's\nhint: pass the server of the stage with --gateway-url (with `wsctl dev`, its URL as --endpoint-url is enough)",
                    gateway.websocket
                ),
            });
        }
        Ok(gateway)
    }

    /// The stage's `@connections` client.
    pub async fn connections(&self) -> Result<mgmt::Client, Error> {
        let gateway = self.gateway().await?;
        let conf = mgmt::config::Builder::from(&self.clients.sdk)
            .endpoint_url(gateway.connections)
            .build();
        Ok(mgmt::Client::from_conf(conf))
    }

    /// The stack's token keys, from its SSM parameter.
    pub async fn keys(&self) -> Result<SecretKeys, Error> {
        Ok(crate::aws::ssm::token_keys(&self.clients, &self.names.secret()).await?)
    }

    /// A token for `user`, signed with the stack's current key, carrying the audience its
    /// authorizer requires.
    pub async fn mint(
        &self,
        user: &str,
        cap: Capabilities,
        ttl: Duration,
    ) -> Result<(String, Claims), Error> {
        let mut minted = self.mint_many(&[user], cap, ttl).await?;
        Ok(minted.remove(0))
    }

    /// The audience the stack's authorizer requires of its tokens, if any.
    pub fn audience(&self) -> Option<&str> {
        self.config
            .authorizer
            .as_ref()
            .and_then(|a| a.audience.as_deref())
    }

    /// A token for each of `users` with the same grant, the keys read once.
    pub async fn mint_many(
        &self,
        users: &[&str],
        cap: Capabilities,
        ttl: Duration,
    ) -> Result<Vec<(String, Claims)>, Error> {
        let keys = self.keys().await?;
        let audience = self.audience();
        Ok(users
            .iter()
            .map(|user| {
                let claims = Claims::issue(user, cap.clone(), ttl).with_audience(audience);
                (mint(&keys.current, &claims), claims)
            })
            .collect())
    }
}

/// Whether `url` is a `ws://` URL of this machine (a loopback address or `localhost`).
pub fn is_local_ws(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("ws://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether `url`'s host is an AWS endpoint, of any partition.
fn is_aws_url(url: &str) -> bool {
    let host = url.split("://").last().unwrap_or(url);
    let host = host.split(['/', ':']).next().unwrap_or(host);
    Partition::ALL.iter().any(|p| p.is_aws_host(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_websocket_server_of_this_machine_is_local() {
        for url in [
            "ws://127.0.0.1:8080/dev",
            "ws://localhost:9000/dev",
            "ws://[::1]:8080/dev",
            "ws://127.0.0.2/dev",
        ] {
            assert!(is_local_ws(url), "{url}");
        }
        for url in [
            "wss://127.0.0.1:8080/dev",
            "ws://10.0.0.5:8080/dev",
            "wss://abc.execute-api.eu-west-1.amazonaws.com/dev",
            "ws://localhost.example.com/dev",
        ] {
            assert!(!is_local_ws(url), "{url}");
        }
    }

    #[test]
    fn a_gateway_is_found_from_its_base_url() {
        let aws = Gateway::at("wss://abc123.execute-api.eu-west-1.amazonaws.com", "prod");
        assert_eq!(
            aws.websocket,
            "wss://abc123.execute-api.eu-west-1.amazonaws.com/prod"
        );
        assert_eq!(
            aws.connections_url(),
            "https://abc123.execute-api.eu-west-1.amazonaws.com/prod/@connections"
        );
        // moto reports https:// for a WebSocket API; the scheme's security is what counts.
        assert_eq!(
            Gateway::at("https://abc.execute-api.us-east-1.amazonaws.com/", "dev").websocket,
            "wss://abc.execute-api.us-east-1.amazonaws.com/dev"
        );
        let local = Gateway::at("http://127.0.0.1:8080", "dev");
        assert_eq!(local.websocket, "ws://127.0.0.1:8080/dev");
        assert_eq!(local.connections, "http://127.0.0.1:8080/dev");
        assert_eq!(
            Gateway::at("ws://127.0.0.1:9/", "x").connections,
            "http://127.0.0.1:9/x"
        );
    }
}
