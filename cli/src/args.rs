//! The command line, as plain data. Doc comments are the help text.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::aws::AwsArgs;
use crate::config::Arch;
use crate::output::Format;

/// Deploy and run serverless WebSocket applications on AWS: API Gateway, Lambda, DynamoDB.
#[derive(Debug, Parser)]
#[command(name = "wsctl", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// The stack's config file.
    #[arg(long, short = 'c', global = true, env = "WSCTL_CONFIG", default_value = "wsctl.yaml")]
    pub config: PathBuf,
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Result format on stdout.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t)]
    pub output: Format,
    /// Plain progress lines instead of a progress bar.
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// More detail (repeat for more).
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only results and errors.
    #[arg(long, short = 'q', global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented wsctl.yaml to start from.
    Init {
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Build every function into a deployment zip with cargo-lambda.
    Build(BuildArgs),
    /// Show what deploy would change, without changing anything.
    Plan(BuildArgs),
    /// Create or update the stack so it matches the config.
    Deploy(BuildArgs),
    /// Show what exists, its URLs, and whether it has drifted from the config.
    Status,
    /// Delete every resource of the stack.
    Destroy {
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct BuildArgs {
    /// Architecture for every function (default: from wsctl.yaml; `host` = this machine).
    #[arg(long, value_enum)]
    pub arch: Option<Arch>,
    /// Use the zips of the last build instead of building.
    #[arg(long)]
    pub no_build: bool,
}
