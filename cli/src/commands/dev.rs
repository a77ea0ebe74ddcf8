//! `wsctl dev`: the whole stack on this machine. Starts moto (unless `--endpoint-url` names an
//! emulator), builds the functions for this machine, deploys into the emulator with the same
//! code as a deploy to AWS, reads back what was deployed and serves it, until Ctrl-C/SIGTERM.

use std::collections::BTreeMap;
use std::path::Path;

use crate::args::{BuildArgs, DataPlane, DevArgs};
use crate::aws::{AwsArgs, Clients};
use crate::build::{Artifact, Profile};
use crate::config::Arch;
use crate::engine;
use crate::engine::model::LiveState;
use crate::error::Error;
use crate::local::gateway::Limits;
use crate::local::likeaws::LikeAws;
use crate::local::up::{Deployed, Options, Started};
use crate::names::Target;
use crate::output::Printer;

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
    // The emulator's account has no logging role of its own, whatever a real account has: the
    // deploy makes one there, so the stage keeps its access log, which the gateway writes.
    if let Some(logs) = config.access_logs.as_mut() {
        logs.account_role = Some("create".into());
    }
    crate::local::raise_fd_limit();
    let started = Started::start(
        args.port,
        args.dynamodb == DataPlane::Local,
        aws.endpoint_url.as_deref(),
        |note| printer.note(note),
    )
    .await?;
    let region = aws
        .region
        .clone()
        .or(config.region.clone())
        .unwrap_or_else(|| "us-east-1".into());
    let clients = Clients::local(&started.endpoint, &region);
    let deployed = match deploy(&config, &clients, &build, printer).await {
        Ok(deployed) => deployed,
        Err(e) => {
            started.abandon().await;
            return Err(e);
        }
    };
    let (account, live, artifacts) = &deployed;
    let options = Options {
        concurrency: args.concurrency as usize,
        limits: Limits {
            idle: args.idle_timeout,
            lifetime: args.max_lifetime,
        },
        ttl_sweep: args.ttl_sweep,
        iam: !args.no_iam,
        like_aws: args.like_aws.then(|| {
            LikeAws::new(
                (args.account_rate, args.account_burst),
                args.lambda_concurrency,
                (args.partition_reads, args.partition_writes),
                &args.aws_latency,
            )
        }),
        verbosity: printer.verbosity,
    };
    let stack = Deployed {
        stack: &config.stack,
        stage: &config.stage,
        account,
        region: &region,
        clients: &clients,
        live,
        names: &config.names(),
        artifacts,
    };
    let running = started.serve(stack, options).await?;
    printer.line(&running.up);
    wait_for_signal().await;
    printer.note("Stopping…");
    running.stop().await;
    Ok(())
}

/// Builds for this machine and deploys into the emulator; answers what the control plane now
/// holds and the builds it runs.
async fn deploy(
    config: &crate::config::Config,
    clients: &Clients,
    build: &BuildArgs,
    printer: &Printer,
) -> Result<(String, LiveState, BTreeMap<String, Artifact>), Error> {
    let account = clients.account().await?;
    let artifacts = super::artifacts(config, build, Profile::Local, printer).await?;
    let target = Target {
        account: account.clone(),
        region: clients.region.clone(),
        api_id: None,
        authorizer_id: None,
        logging_role: None,
    };
    // No question, and no deployment to check: the emulator's stack is this machine's scratch
    // copy, rebuilt at will, and no client connects through its stage (the local gateway
    // serves them).
    let (target, _) = engine::converge(
        config,
        clients,
        target,
        &artifacts,
        printer,
        engine::Serving::NotChecked,
        |_| Ok(()),
    )
    .await?;
    let desired = engine::desired::desired(config, &target, &artifacts);
    let live = engine::read(clients, config, &desired).await?;
    Ok((account, live, artifacts))
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
