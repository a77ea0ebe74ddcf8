//! `wsctl dev`: the whole stack on this machine. Starts moto (unless `--endpoint-url` names an
//! emulator), builds the functions for this machine, deploys into the emulator with the same
//! code as a deploy to AWS, reads back what was deployed and serves it, until Ctrl-C/SIGTERM.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::watch;

use crate::args::{BuildArgs, DataPlane, DevArgs};
use crate::aws::{AwsArgs, Clients};
use crate::build::Profile;
use crate::config::Arch;
use crate::engine;
use crate::error::Error;
use crate::local::gateway::{self, Gateway, Limits, Minter};
use crate::local::runtime::LogSink;
use crate::local::{self, DevStack, LocalError, RuntimeSettings};
use crate::names::Target;
use crate::output::Printer;

const PAGE: &str = include_str!("../../../templates/demo.html");

pub async fn run(
    config_path: &Path,
    aws: &AwsArgs,
    args: &DevArgs,
    printer: &Printer,
) -> Result<(), Error> {
    let build = BuildArgs {
        arch: Some(Arch::Host),
        no_build: args.no_build,
    };
    let mut config = super::load(config_path, &build)?;
    // The local gateway keeps no access log, and the emulator's account has no logging role to
    // ask for: the stage would be refused for a log nobody writes.
    if config.access_logs.take().is_some() {
        printer.note("access_logs: not used by wsctl dev (its gateway writes no access log)");
    }
    local::raise_fd_limit();
    let started = Instant::now();

    // Bound first: the functions' environment carries the gateway's address.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .map_err(|source| LocalError::Port {
            port: args.port,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| LocalError::Port {
        port: args.port,
        source,
    })?;
    let base = format!("http://{addr}");

    // Java takes seconds to start: the engine starts while moto starts and the functions build.
    let data_plane = tokio::spawn({
        let wanted = args.dynamodb == DataPlane::Local;
        async move {
            match wanted {
                true => local::dynamodb::DynamoDbLocal::start().await.map(Some),
                false => Ok(None),
            }
        }
    });
    let (moto, endpoint) = match &aws.endpoint_url {
        Some(url) => (None, url.clone()),
        None => {
            printer.note("Starting moto…");
            let moto = local::moto::Moto::start().await?;
            let url = moto.url.clone();
            (Some(moto), url)
        }
    };
    let region = aws
        .region
        .clone()
        .or(config.region.clone())
        .unwrap_or_else(|| "us-east-1".into());
    let clients = Clients::local(&endpoint, &region);
    let account = clients.account().await?;

    let artifacts = super::artifacts(&config, &build, Profile::Local, printer).await?;
    let target = Target {
        account: account.clone(),
        region: region.clone(),
        api_id: None,
        authorizer_id: None,
        logging_role: None,
    };
    // No question, and no deployment to check: the emulator's stack is this machine's scratch
    // copy, rebuilt at will, and no client connects through its stage (the local gateway
    // serves them).
    let (target, _) = engine::converge(
        &config,
        &clients,
        target,
        &artifacts,
        printer,
        engine::Serving::NotChecked,
        |_| Ok(()),
    )
    .await?;

    // What runs is what the control plane now says, not what the config says.
    let names = config.names();
    let desired = engine::desired::desired(&config, &target, &artifacts);
    let live = engine::read(&clients, &config, &desired).await?;
    let ddb = data_plane
        .await
        .map_err(|e| Error::Io(format!("starting DynamoDB Local: {e}")))??;
    let items = ddb.as_ref().map_or(endpoint.clone(), |d| d.url.clone());
    let tables: Vec<_> = live
        .resources
        .values()
        .filter_map(|r| match &r.spec {
            engine::model::Spec::Table(t) => Some(t.clone()),
            _ => None,
        })
        .collect();
    let data = Clients::local(&items, &region).dynamodb;
    if ddb.is_some() {
        local::dynamodb::mirror(&data, &tables).await?;
    }
    let sweeper = tokio::spawn(sweep(data, tables, args.ttl_sweep, printer.verbosity));
    let stage = live
        .resources
        .values()
        .find_map(|r| match &r.spec {
            engine::model::Spec::Stage(s) => Some(s.name.clone()),
            _ => None,
        })
        .unwrap_or_else(|| config.stage.clone());
    let connections_url = format!("{base}/{stage}");
    // Checked calls go through the gateway, which knows whose credentials signed them.
    let (aws_url, items_url) = match args.no_iam {
        true => (endpoint.clone(), items.clone()),
        false => (base.clone(), base.clone()),
    };
    let env: BTreeMap<String, String> = [
        ("AWS_ENDPOINT_URL", aws_url),
        ("AWS_ENDPOINT_URL_DYNAMODB", items_url),
        // Lambda's Invoke is served by the gateway: moto cannot run functions.
        ("AWS_ENDPOINT_URL_LAMBDA", base.clone()),
        ("AWS_REGION", region.clone()),
        ("AWS_DEFAULT_REGION", region.clone()),
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
        account: account.clone(),
        region: region.clone(),
        concurrency: args.concurrency as usize,
        env,
        connections_url: connections_url.clone(),
        dir,
    };
    let (stop_tx, stop) = watch::channel(false);
    let logs = log_sink(printer);
    let stack = DevStack::from_live(
        &live,
        &names,
        &artifacts,
        &settings,
        logs.clone(),
        stop.clone(),
    )?;
    for pool in &stack.pools {
        pool.warm();
    }

    let minter = secret(&clients, &live).await?;
    let token = minter
        .as_ref()
        .map(|m| m.token("dev", Duration::from_secs(24 * 3600)));
    let routes = stack.api.routes.len();
    let functions = stack.pools.len();
    let gw = Arc::new(Gateway {
        api: stack.api,
        limits: Limits {
            idle: args.idle_timeout,
            lifetime: args.max_lifetime,
        },
        conns: Default::default(),
        minter,
        page: PAGE.replace("{{STAGE}}", &stage),
        domain: addr.to_string(),
        log: logs,
        stop: stop.clone(),
        upstream: local::proxy::Upstream::new(
            &endpoint,
            &items,
            live.api_id().unwrap_or_default(),
            &format!("ws://{addr}"),
        ),
        iam: (!args.no_iam).then_some(stack.principals),
    });
    let server = tokio::spawn(gateway::serve(gw.clone(), listener));
    local::release_free_memory();

    let ws_url = format!("ws://{addr}/{stage}");
    let connect_url = token
        .as_ref()
        .map(|t| format!("{ws_url}?token={t}"))
        .unwrap_or_else(|| ws_url.clone());
    if printer.json() {
        // One line, so a script can read it before the logs start.
        printer.result_line(&json!({
                "stack": config.stack, "stage": stage, "url": ws_url, "token": token, "connect_url": connect_url,
                "connections_url": format!("{connections_url}/@connections"), "page": format!("{base}/"),
                "lambda_endpoint": base, "aws_endpoint": base, "moto": endpoint, "dynamodb": items, "functions": functions, "routes": routes,
                "iam": !args.no_iam, "seconds": started.elapsed().as_secs_f64(),
            }));
    } else {
        printer.result(format!(
            "wsctl dev: {}/{stage} is up ({functions} functions, {routes} routes) in {:.1} s\n  \
             WebSocket URL:    {ws_url}\n  \
             Connect with:     {connect_url}\n  \
             @connections URL: {connections_url}/@connections\n  \
             Demo page:        {base}/\n  \
             AWS endpoint:     {base}  (Lambda here, DynamoDB's items to {}, every other call to {endpoint}{})\n  \
             IAM:              {}\n  \
             Try:              AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local wsctl --endpoint-url {base} --region {region} publish --channel room-1 --data '{{\"text\":\"hi\"}}'\n\
             Ctrl-C stops everything.",
            config.stack,
            started.elapsed().as_secs_f64(),
            match &ddb {
                Some(d) => format!("DynamoDB Local at {}", d.url),
                None => items.clone(),
            },
            if moto.is_some() { ", the moto wsctl dev started" } else { "" },
            match args.no_iam {
                false => "each function's calls are checked against its role (--no-iam serves them all)",
                true => "not checked (--no-iam): a call a role does not allow works here and fails on AWS",
            },
        ));
    }
    let _ = std::io::stdout().flush();

    wait_for_signal().await;
    printer.note("Stopping…");
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    // Give connections a moment to send their close frames and pools to reap their processes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    sweeper.abort();
    if let Some(ddb) = ddb {
        ddb.stop().await;
    }
    if let Some(moto) = moto {
        moto.stop().await;
    }
    Ok(())
}

/// DynamoDB's TTL, which DynamoDB Local lacks: expired items are deleted every `every` (never
/// when zero). A failed sweep is said once and retried.
async fn sweep(
    data: aws_sdk_dynamodb::Client,
    tables: Vec<crate::aws::dynamodb::TableSpec>,
    every: Duration,
    verbosity: i8,
) {
    if every.is_zero() {
        return;
    }
    let mut said = false;
    loop {
        tokio::time::sleep(every).await;
        match local::dynamodb::sweep(&data, &tables).await {
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

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("install a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Function logs on stderr, each line prefixed with the function's key.
fn log_sink(printer: &Printer) -> LogSink {
    let quiet = printer.verbosity < 0;
    Arc::new(move |who: &str, line: &str| {
        if !quiet {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{who:>12} | {line}");
        }
    })
}

/// The stack's token secret, from the parameter the authorizer is configured with.
/// The audience comes from the deployed authorizer too, so the page's tokens pass it.
async fn secret(
    clients: &Clients,
    live: &engine::model::LiveState,
) -> Result<Option<Minter>, Error> {
    let authorizer = live.resources.values().find_map(|r| match &r.spec {
        engine::model::Spec::Function(f)
            if f.environment.contains_key("WSCTL_SECRET_PARAMETER") =>
        {
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
