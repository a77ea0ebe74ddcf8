//! One module per command. Each loads what it needs and returns an [`Error`] on failure.

mod bench;
mod build;
mod completions;
mod connect;
mod connections;
mod deploy;
mod destroy;
mod dev;
mod disconnect;
mod docs;
mod gc;
mod history;
mod init;
mod logs;
mod metrics;
mod plan;
mod publish;
mod revoke;
mod schema;
mod secret;
mod status;
mod tail;
mod token;

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};

use crate::args::{BuildArgs, Cli, Command};
use crate::aws::policy::{self, Printed};
use crate::build::{Artifact, Profile};
use crate::config::Config;
use crate::engine;
use crate::error::Error;
use crate::output::Printer;

/// Runs the command and shows its result: each command returns a value, the printer picks
/// its form.
pub async fn run(cli: Cli, printer: Printer) -> Result<(), Error> {
    let config = || engine::load_config(&cli.config);
    match &cli.command {
        Command::Init { force } => init::run(&cli.config, *force, &printer)?,
        Command::Completions { shell } => completions::run(*shell, &mut std::io::stdout().lock()),
        Command::Schema => schema::run(&mut std::io::stdout().lock())
            .map_err(|e| Error::Io(format!("cannot write the schema: {e}")))?,
        Command::Build(args) => {
            printer.show(&build::run(&load(&cli.config, args)?, args, &printer).await?)
        }
        Command::Plan(args) => {
            printer.show(&plan::run(&load(&cli.config, args)?, &cli.aws, args, &printer).await?)
        }
        Command::Deploy(args) if args.print_policy || args.print_boundary => {
            let which = match args.print_boundary {
                true => Printed::Boundary,
                false => Printed::Deployer,
            };
            let config = load(&cli.config, &args.build)?;
            printer.show(&policy::print(&config, &cli.aws, which, &printer).await?)
        }
        Command::Deploy(args) => printer
            .show(&deploy::run(&load(&cli.config, &args.build)?, &cli.aws, args, &printer).await?),
        Command::Status => printer.show(&status::run(&config()?, &cli.aws, &printer).await?),
        Command::Token(args) => printer.show(&token::run(&config()?, &cli.aws, args).await?),
        Command::Publish(args) if args.print_policy => {
            let config = config()?;
            printer.show(&policy::print(&config, &cli.aws, Printed::Publisher, &printer).await?)
        }
        Command::Publish(args) => printer.show(&publish::run(&config()?, &cli.aws, args).await?),
        Command::Tail(args) => tail::run(&config()?, &cli.aws, args, &printer).await?,
        Command::Connect(args) => connect::run(&config()?, &cli.aws, args, &printer).await?,
        Command::Connections(args) => {
            printer.show(&connections::run(&config()?, &cli.aws, args).await?)
        }
        Command::History(args) => printer.show(&history::run(&config()?, &cli.aws, args).await?),
        Command::Logs(args) => logs::run(&config()?, &cli.aws, args, &printer).await?,
        Command::Metrics(args) => printer.show(&metrics::run(&config()?, &cli.aws, args).await?),
        Command::Secret(command) => {
            printer.show(&secret::run(&config()?, &cli.aws, command).await?)
        }
        Command::Gc(args) => gc::run(&config()?, &cli.aws, args, &printer).await?,
        Command::Revoke(args) => printer.show(&revoke::run(&config()?, &cli.aws, args).await?),
        Command::Disconnect(args) => {
            printer.show(&disconnect::run(&config()?, &cli.aws, args, &printer).await?)
        }
        Command::Bench(args) => bench::run(&cli.config, &cli.aws, args, &printer).await?,
        Command::Dev(args) => dev::run(&cli.config, &cli.aws, args, &printer).await?,
        Command::Docs(args) => printer.show(&docs::run(args, &printer)?),
        Command::Destroy { yes } => {
            printer.show(&destroy::run(&config()?, &cli.aws, *yes, &printer).await?)
        }
    }
    Ok(())
}

/// Asks on the terminal to type the stack's name to go on. Without a terminal nobody can
/// answer: `unattended` is the error then.
fn confirm(
    config: &Config,
    question: &str,
    unattended: impl FnOnce() -> Error,
) -> Result<(), Error> {
    if !std::io::stdin().is_terminal() {
        return Err(unattended());
    }
    eprint!("{question} Type the stack name to confirm: ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Error::Io(e.to_string()))?;
    if answer.trim() != config.stack {
        return Err(Error::Declined);
    }
    Ok(())
}

/// The config, with `--arch` applied to every function.
fn load(path: &std::path::Path, args: &BuildArgs) -> Result<Config, Error> {
    let mut config = engine::load_config(path)?;
    if let Some(arch) = args.arch {
        with_arch(&mut config, arch);
    }
    Ok(config)
}

fn with_arch(config: &mut Config, arch: crate::config::Arch) {
    config.architecture = arch;
    for f in config.functions.values_mut() {
        f.architecture = Some(arch);
    }
}

/// The config and build profile a live stack is compared with: `wsctl dev` deploys its own
/// build (this machine's architecture, the local profile), so a stack it serves is compared
/// with that, not reported as drifted from the config's Lambda architecture.
async fn as_served(
    config: &Config,
    stack: &crate::stack::Stack<'_>,
    printer: &Printer,
) -> Result<(Config, Profile), Error> {
    let mut config = config.clone();
    let Some(gateway) = stack.local_gateway().await? else {
        return Ok((config, Profile::Lambda));
    };
    printer.note(format!(
        "{}/{} is served by wsctl dev at {}: comparing with its build for this machine",
        config.stack, config.stage, gateway.websocket
    ));
    with_arch(&mut config, crate::config::Arch::Host);
    Ok((config, Profile::Local))
}

/// Builds (or, with `--no-build`, finds) every function's zip.
async fn artifacts(
    config: &Config,
    args: &BuildArgs,
    profile: Profile,
    printer: &Printer,
) -> Result<BTreeMap<String, Artifact>, Error> {
    if args.no_build {
        let found = crate::build::existing(config, profile);
        let missing: Vec<&String> = config
            .functions
            .keys()
            .filter(|f| !found.contains_key(*f))
            .collect();
        if !missing.is_empty() {
            let list = missing
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            let first = match profile {
                Profile::Lambda => "`wsctl build`",
                Profile::Local => "`wsctl dev` once without --no-build",
            };
            return Err(Error::Usage {
                usage: format!(
                    "--no-build, but no zip was built for: {list}\nhint: run {first} first, or drop --no-build"
                ),
            });
        }
        return Ok(found);
    }
    printer.note("Building functions…");
    let config = config.clone();
    let quiet = printer.verbosity < 1;
    tokio::task::spawn_blocking(move || crate::build::build_all(&config, None, profile, quiet))
        .await
        .map_err(|e| Error::Io(format!("build task: {e}")))?
        .map_err(Error::from)
}
