//! `wsctl dev`'s emulator put together: the port, moto and DynamoDB Local started first (they
//! take seconds, and run while the functions build and the stack deploys), then, from what the
//! deploy left in the control plane, the function pools, the gateway and the TTL sweeper.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::dynamodb::DynamoDbLocal;
use super::gateway::{self, Gateway, Limits, Minter};
use super::moto::Moto;
use super::partitions::TableKeys;
use super::runtime::{Echo, LogSink, Pool};
use super::{DevStack, LocalError, RuntimeSettings};
use crate::aws::Clients;
use crate::aws::dynamodb::TableSpec;
use crate::build::Artifact;
use crate::engine::model::{LiveState, Spec};
use crate::error::Error;
use crate::names::Names;
use wsctl_functions::store::{Store, Tables};

const PAGE: &str = include_str!("../../../templates/demo.html");

/// How the emulator serves, from `wsctl dev`'s flags.
pub struct Options {
    pub concurrency: usize,
    pub limits: Limits,
    /// How often expired items are deleted (never when zero).
    pub ttl_sweep: Duration,
    /// Each function's AWS calls checked against its role.
    pub iam: bool,
    /// AWS's latencies and the account throttle (`--like-aws`).
    pub like_aws: Option<super::likeaws::LikeAws>,
    /// Function logs and the sweeper's notes on stderr; none with `-q`.
    pub verbosity: i8,
}

/// The emulator's processes, started before the stack is deployed into it.
pub struct Started {
    started: Instant,
    listener: TcpListener,
    /// `http://127.0.0.1:PORT`: the gateway, Lambda's endpoint and the checked AWS endpoint.
    pub base: String,
    /// Where control-plane calls go: the moto started here, or `--endpoint-url`'s emulator.
    pub endpoint: String,
    moto: Option<Moto>,
    data_plane: JoinHandle<Result<Option<DynamoDbLocal>, LocalError>>,
}

impl Started {
    /// Binds `port` (first: the functions' environment carries the gateway's address) and
    /// starts DynamoDB Local when asked, and moto unless `endpoint_url` names an emulator.
    pub async fn start(
        port: u16,
        dynamodb_local: bool,
        endpoint_url: Option<&str>,
        note: impl Fn(&str),
    ) -> Result<Started, LocalError> {
        let started = Instant::now();
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|source| LocalError::Port { port, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| LocalError::Port { port, source })?;
        // Java takes seconds to start: the engine starts while moto starts and the functions
        // build.
        let data_plane = tokio::spawn(async move {
            match dynamodb_local {
                true => DynamoDbLocal::start().await.map(Some),
                false => Ok(None),
            }
        });
        let (moto, endpoint) = match endpoint_url {
            Some(url) => (None, url.to_string()),
            None => {
                note("Starting moto…");
                let moto = Moto::start().await?;
                let url = moto.url.clone();
                (Some(moto), url)
            }
        };
        Ok(Started {
            started,
            listener,
            base: format!("http://{addr}"),
            endpoint,
            moto,
            data_plane,
        })
    }

    /// Serves the stack `live` describes: what runs is what the control plane says, not what
    /// the config says.
    pub async fn serve(self, deployed: Deployed<'_>, options: Options) -> Result<Running, Error> {
        let Deployed {
            stack: stack_name,
            stage,
            account,
            region,
            clients,
            live,
            names,
            artifacts,
        } = deployed;
        let Started {
            started,
            listener,
            base,
            endpoint,
            moto,
            data_plane,
        } = self;
        let ddb = data_plane
            .await
            .map_err(|e| Error::Io(format!("starting DynamoDB Local: {e}")))??;
        let items = ddb.as_ref().map_or(endpoint.clone(), |d| d.url.clone());
        let tables: Vec<_> = live
            .resources
            .values()
            .filter_map(|r| match &r.spec {
                Spec::Table(t) => Some(t.clone()),
                _ => None,
            })
            .collect();
        let data = Clients::local(&items, region).dynamodb;
        let virtual_items = data.clone();
        if ddb.is_some() {
            super::dynamodb::mirror(&data, &tables).await?;
        }
        let sweeper = tokio::spawn(sweep(data, tables, options.ttl_sweep, options.verbosity));
        let stage = live
            .resources
            .values()
            .find_map(|r| match &r.spec {
                Spec::Stage(s) => Some(s.name.clone()),
                _ => None,
            })
            .unwrap_or_else(|| stage.to_string());
        let connections_url = format!("{base}/{stage}");
        // Checked or delayed calls go through the gateway, which knows whose credentials
        // signed them and which service they are for.
        let (aws_url, items_url) = match options.iam || options.like_aws.is_some() {
            false => (endpoint.clone(), items.clone()),
            true => (base.clone(), base.clone()),
        };
        let env: BTreeMap<String, String> = [
            ("AWS_ENDPOINT_URL", aws_url),
            ("AWS_ENDPOINT_URL_DYNAMODB", items_url),
            // Lambda's Invoke is served by the gateway: moto cannot run functions.
            ("AWS_ENDPOINT_URL_LAMBDA", base.clone()),
            ("AWS_REGION", region.to_string()),
            ("AWS_DEFAULT_REGION", region.to_string()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let dir = artifacts
            .values()
            .next()
            .and_then(|a| a.zip.parent().and_then(Path::parent))
            .map(|p| p.join("dev").join(names.api()))
            .unwrap_or_else(|| std::env::temp_dir().join("wsctl-dev"));
        let settings = RuntimeSettings {
            account: account.to_string(),
            region: region.to_string(),
            concurrency: options.concurrency,
            env,
            connections_url: connections_url.clone(),
            dir,
        };
        let (stop_tx, stop) = watch::channel(false);
        let cloudwatch = super::logs::Shipper::start(Clients::local(&endpoint, region).logs);
        let logs = log_sink(options.verbosity, cloudwatch.clone());
        let stack = DevStack::from_live(
            live,
            names,
            artifacts,
            &settings,
            logs.clone(),
            stop.clone(),
        )?;
        if let Some(access) = &stack.api.access_log {
            cloudwatch.register(super::state::ACCESS, &access.group);
        }
        for pool in &stack.pools {
            let def = pool.def();
            if let Some(name) = def.env.get("AWS_LAMBDA_FUNCTION_NAME") {
                cloudwatch.register(&def.key, &format!("/aws/lambda/{name}"));
            }
            pool.warm();
        }

        let minter = secret(clients, live).await?;
        let token = minter
            .as_ref()
            .map(|m| m.token("dev", Duration::from_secs(24 * 3600)));
        let routes = stack.api.routes.len();
        let functions = stack.pools.len();
        let domain = base.trim_start_matches("http://").to_string();
        let like_aws_line = options.like_aws.as_ref().map(|l| l.describe());
        let store = functions_store(&stack.pools, virtual_items);
        let conns = super::connections::Registry::default();
        if let Some(like) = &options.like_aws {
            conns.meter.meter_dynamodb();
            if let Some(store) = &store {
                like.partitions.know(table_keys(&store.tables));
            }
        }
        let crowd = super::crowd::Crowd::new(store);
        for pool in stack.api.functions.values() {
            pool.meter_with(conns.meter.clone(), options.like_aws.is_some());
        }
        super::cloudwatch::start(
            Clients::local(&endpoint, region).cloudwatch,
            conns.meter.clone(),
            stack.api.api_id.clone(),
            stack.api.stage.clone(),
            stop.clone(),
        );
        let gw = Arc::new(Gateway {
            api: stack.api,
            limits: options.limits,
            conns,
            minter,
            page: PAGE.replace("{{STAGE}}", &stage),
            upstream: super::proxy::Upstream::new(
                &endpoint,
                &items,
                live.api_id().unwrap_or_default(),
                &format!("ws://{domain}"),
            ),
            domain,
            log: logs,
            stop: stop.clone(),
            iam: options.iam.then_some(stack.principals),
            like_aws: options.like_aws,
            crowd,
        });
        let server = tokio::spawn(gateway::serve(gw, listener));
        super::release_free_memory();

        let url = format!("ws://{}/{stage}", base.trim_start_matches("http://"));
        let connect_url = token
            .as_ref()
            .map(|t| format!("{url}?token={t}"))
            .unwrap_or_else(|| url.clone());
        // What the control plane says: a URL exists for the function it names.
        let publish_endpoint = live
            .resources
            .keys()
            .find(|id| id.kind == crate::engine::model::Kind::FunctionUrl)
            .map(|id| super::url::address(&base, &id.name));
        let up = Up {
            stack: stack_name.to_string(),
            stage,
            url,
            token,
            connect_url,
            connections_url: format!("{connections_url}/@connections"),
            page: format!("{base}/"),
            lambda_endpoint: base.clone(),
            publish_endpoint,
            aws_endpoint: base,
            moto: endpoint,
            dynamodb: items,
            functions,
            routes,
            iam: options.iam,
            like_aws: like_aws_line,
            seconds: started.elapsed().as_secs_f64(),
            region: region.to_string(),
            dynamodb_local: ddb.is_some(),
            moto_started: moto.is_some(),
        };
        Ok(Running {
            up,
            stop_tx,
            server,
            sweeper,
            ddb,
            moto,
        })
    }

    /// Stops what `start` started, when the deploy into the emulator failed.
    pub async fn abandon(self) {
        self.data_plane.abort();
        if let Ok(Ok(Some(ddb))) = self.data_plane.await {
            ddb.stop().await;
        }
        if let Some(moto) = self.moto {
            moto.stop().await;
        }
    }
}

/// The stack as deployed into the emulator.
pub struct Deployed<'a> {
    pub stack: &'a str,
    /// The config's stage, when the control plane shows none.
    pub stage: &'a str,
    pub account: &'a str,
    pub region: &'a str,
    pub clients: &'a Clients,
    pub live: &'a LiveState,
    pub names: &'a Names,
    pub artifacts: &'a BTreeMap<String, Artifact>,
}

/// The emulator serving, until [`Running::stop`].
pub struct Running {
    pub up: Up,
    stop_tx: watch::Sender<bool>,
    server: JoinHandle<()>,
    sweeper: JoinHandle<()>,
    ddb: Option<DynamoDbLocal>,
    moto: Option<Moto>,
}

impl Running {
    pub async fn stop(self) {
        let _ = self.stop_tx.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.server).await;
        // Give connections a moment to send their close frames and pools to reap their
        // processes.
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.sweeper.abort();
        if let Some(ddb) = self.ddb {
            ddb.stop().await;
        }
        if let Some(moto) = self.moto {
            moto.stop().await;
        }
    }
}

/// The tables as a function that uses the subscriptions table sees them (its variables name
/// them), with `db` as the client: the virtual subscribers' items are written as it writes them.
fn functions_store(pools: &[Pool], db: aws_sdk_dynamodb::Client) -> Option<Store> {
    use wsctl_functions::layout::{self, DEFAULT_TTL_ATTRIBUTE, table_env, ttl_env};
    let env = &pools
        .iter()
        .find(|p| {
            p.def()
                .env
                .contains_key(&table_env(layout::SUBSCRIPTIONS.name))
        })?
        .def()
        .env;
    let name = |t: &layout::Table| env.get(&table_env(t.name)).cloned().unwrap_or_default();
    let ttl = |t: &layout::Table| {
        env.get(&ttl_env(t.name))
            .cloned()
            .unwrap_or_else(|| DEFAULT_TTL_ATTRIBUTE.into())
    };
    Some(Store {
        db,
        tables: Tables::named(name, ttl),
        history_ttl: Duration::from_secs(24 * 3600),
    })
}

/// Each table's partition key and its indexes', by the table's name in this stack.
fn table_keys(tables: &Tables) -> HashMap<String, TableKeys> {
    use wsctl_functions::layout::{CONNECTIONS, COUNTERS, HISTORY, SUBSCRIPTIONS};
    [
        (&tables.connections, CONNECTIONS),
        (&tables.subscriptions, SUBSCRIPTIONS),
        (&tables.history, HISTORY),
        (&tables.counters, COUNTERS),
    ]
    .into_iter()
    .map(|(name, t)| {
        let indexes = t.indexes.iter();
        let keys = TableKeys {
            partition_key: t.partition_key.name.to_string(),
            indexes: indexes
                .map(|i| (i.name.to_string(), i.partition_key.name.to_string()))
                .collect(),
        };
        (name.clone(), keys)
    })
    .collect()
}

/// `wsctl dev` is up: where everything answers. As JSON, one line a script reads before the
/// logs start.
#[derive(Debug, Serialize)]
pub struct Up {
    stack: String,
    stage: String,
    url: String,
    /// A token for user `dev` that may do everything, valid for a day.
    token: Option<String>,
    connect_url: String,
    connections_url: String,
    page: String,
    lambda_endpoint: String,
    /// The publish function's URL (`publish_endpoint: true`), served here with SigV4 checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    publish_endpoint: Option<String>,
    aws_endpoint: String,
    moto: String,
    dynamodb: String,
    functions: usize,
    routes: usize,
    iam: bool,
    /// What `--like-aws` models, when on.
    #[serde(skip_serializing_if = "Option::is_none")]
    like_aws: Option<String>,
    seconds: f64,
    #[serde(skip)]
    region: String,
    #[serde(skip)]
    dynamodb_local: bool,
    #[serde(skip)]
    moto_started: bool,
}

impl Display for Up {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Up {
            stack,
            stage,
            url,
            connect_url,
            connections_url,
            page,
            aws_endpoint,
            moto,
            dynamodb,
            functions,
            routes,
            seconds,
            region,
            ..
        } = self;
        write!(
            f,
            "wsctl dev: {stack}/{stage} is up ({functions} functions, {routes} routes) in {seconds:.1} s\n  \
             WebSocket URL:    {url}\n  \
             Connect with:     {connect_url}\n  \
             @connections URL: {connections_url}\n  \
             Demo page:        {page}\n  \
             AWS endpoint:     {aws_endpoint}  (Lambda here, DynamoDB's items to {}, every other call to {moto}{})\n  \
             IAM:              {}\n  \
             Like AWS:         {}\n  \
             Try:              AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local wsctl --endpoint-url {aws_endpoint} --region {region} publish --channel room-1 --data '{{\"text\":\"hi\"}}'\n{}\
             Ctrl-C stops everything.",
            match self.dynamodb_local {
                true => format!("DynamoDB Local at {dynamodb}"),
                false => dynamodb.clone(),
            },
            if self.moto_started {
                ", the moto wsctl dev started"
            } else {
                ""
            },
            match self.iam {
                true =>
                    "each function's calls are checked against its role (--no-iam serves them all)",
                false =>
                    "not checked (--no-iam): a call a role does not allow works here and fails on AWS",
            },
            self.like_aws
                .as_deref()
                .unwrap_or("off: calls take this machine's time, nothing is throttled but the stage (--like-aws)"),
            match &self.publish_endpoint {
                Some(endpoint) => format!(
                    "  Publish endpoint: {endpoint}\n    curl --aws-sigv4 aws:amz:{region}:lambda --user local:local -H 'content-type: application/json' -d '{{\"channel\":\"room-1\",\"data\":{{\"text\":\"hi\"}}}}' {endpoint}\n"
                ),
                None => String::new(),
            },
        )
    }
}

/// DynamoDB's TTL, which DynamoDB Local lacks: expired items are deleted every `every` (never
/// when zero). A failed sweep is said once and retried.
async fn sweep(
    data: aws_sdk_dynamodb::Client,
    tables: Vec<TableSpec>,
    every: Duration,
    verbosity: i8,
) {
    if every.is_zero() {
        return;
    }
    let mut said = false;
    loop {
        tokio::time::sleep(every).await;
        match super::dynamodb::sweep(&data, &tables).await {
            Ok(n) if n > 0 && verbosity > 0 => {
                eprintln!("{:>12} | deleted {n} expired item(s)", "ttl");
            }
            Err(e) if !said => {
                eprintln!("{:>12} | the TTL sweep failed, will retry: {e}", "ttl");
                said = true;
            }
            _ => {}
        }
    }
}

/// Function logs in the emulator's CloudWatch Logs, and on stderr each line prefixed with the
/// function's key.
fn log_sink(verbosity: i8, cloudwatch: Arc<super::logs::Shipper>) -> LogSink {
    let quiet = verbosity < 0;
    Arc::new(move |who: &str, line: &str, echo: Echo| {
        cloudwatch.ship(who, line);
        if !quiet && echo == Echo::Terminal {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{who:>12} | {line}");
        }
    })
}

/// The stack's token secret, from the parameter the authorizer is configured with.
/// The audience comes from the deployed authorizer too, so the page's tokens pass it.
async fn secret(clients: &Clients, live: &LiveState) -> Result<Option<Minter>, Error> {
    let authorizer = live.resources.values().find_map(|r| match &r.spec {
        Spec::Function(f) if f.environment.contains_key("WSCTL_SECRET_PARAMETER") => {
            Some(&f.environment)
        }
        _ => None,
    });
    let Some(env) = authorizer else {
        return Ok(None);
    };
    let secret = crate::aws::ssm::token_keys(clients, &env["WSCTL_SECRET_PARAMETER"])
        .await?
        .current;
    Ok(Some(Minter {
        secret,
        audience: env.get("TOKEN_AUDIENCE").cloned(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line scripts (and the tests' `DevStack`) read to find the stack.
    #[test]
    fn the_up_line_is_pinned() {
        let base = "http://127.0.0.1:8080".to_string();
        let mut up = Up {
            stack: "chat".into(),
            stage: "dev".into(),
            url: "ws://127.0.0.1:8080/dev".into(),
            token: None,
            connect_url: "ws://127.0.0.1:8080/dev".into(),
            connections_url: "http://127.0.0.1:8080/dev/@connections".into(),
            page: format!("{base}/"),
            lambda_endpoint: base.clone(),
            publish_endpoint: None,
            aws_endpoint: base,
            moto: "http://127.0.0.1:5000".into(),
            dynamodb: "http://127.0.0.1:5000".into(),
            functions: 4,
            routes: 6,
            iam: true,
            like_aws: None,
            seconds: 2.5,
            region: "us-east-1".into(),
            dynamodb_local: false,
            moto_started: true,
        };
        let (json, text) = crate::output::line_forms(&up);
        assert_eq!(
            json,
            r#"{"aws_endpoint":"http://127.0.0.1:8080","connect_url":"ws://127.0.0.1:8080/dev","connections_url":"http://127.0.0.1:8080/dev/@connections","dynamodb":"http://127.0.0.1:5000","functions":4,"iam":true,"lambda_endpoint":"http://127.0.0.1:8080","moto":"http://127.0.0.1:5000","page":"http://127.0.0.1:8080/","routes":6,"seconds":2.5,"stack":"chat","stage":"dev","token":null,"url":"ws://127.0.0.1:8080/dev"}"#
        );
        assert!(text.starts_with("wsctl dev: chat/dev is up (4 functions, 6 routes) in 2.5 s\n"));
        assert!(text.contains("DynamoDB's items to http://127.0.0.1:5000, every other call to http://127.0.0.1:5000, the moto wsctl dev started)"));
        assert!(text.ends_with("\nCtrl-C stops everything."));

        // With the publish endpoint: its URL, and a curl line signed with the banner's key.
        let endpoint = "http://127.0.0.1:8080/_lambda-url/chat-dev-publish/";
        up.publish_endpoint = Some(endpoint.into());
        let (json, text) = crate::output::line_forms(&up);
        assert!(
            json.contains(&format!(r#""publish_endpoint":"{endpoint}""#)),
            "{json}"
        );
        assert!(text.contains(&format!("  Publish endpoint: {endpoint}\n    curl --aws-sigv4 aws:amz:us-east-1:lambda --user local:local ")), "{text}");
        assert!(text.ends_with("\nCtrl-C stops everything."));
    }
}
