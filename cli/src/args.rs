//! The command line, as plain data. Doc comments are the help text.

use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::aws::AwsArgs;
use crate::config::Arch;
use crate::output::Format;

/// Deploy and run serverless WebSocket applications on AWS: API Gateway, Lambda, DynamoDB.
#[derive(Debug, Parser)]
#[command(
    name = "wsctl",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// The stack's config file.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "WSCTL_CONFIG",
        default_value = "wsctl.yaml"
    )]
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

/// The command line as typed, with each command's long help ending with its page in the book.
pub fn parse() -> Cli {
    // Finding the pages costs a look at the disk per command: only when help may be shown.
    let help = std::env::args()
        .skip(1)
        .any(|a| a == "--help" || a == "help");
    let command = if help {
        with_book_links(Cli::command(), &[])
    } else {
        Cli::command()
    };
    let matches = command.get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn with_book_links(command: clap::Command, path: &[&str]) -> clap::Command {
    let subcommands: Vec<String> = command
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    let mut command = if command.has_subcommands() && !path.is_empty() {
        command
    } else {
        command.after_long_help(crate::book::help_link(path))
    };
    for name in subcommands {
        command = command.mut_subcommand(&name, |sub| {
            let mut inner = path.to_vec();
            inner.push(&name);
            with_book_links(sub, &inner)
        });
    }
    command
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
    Deploy(DeployArgs),
    /// Show what exists, its URLs, and whether it has drifted from the config.
    Status,
    /// Run the whole stack on this machine: moto, the functions, a local API Gateway.
    Dev(DevArgs),
    /// Mint a client token with the stack's secret, for tests and demos.
    Token(TokenArgs),
    /// Publish to a channel (through the stack's publish function) or to one connection.
    Publish(PublishArgs),
    /// An interactive WebSocket client: stdin lines out as frames, frames in as lines.
    Connect(ConnectArgs),
    /// Stream connects, disconnects, subscribes (and messages) as they happen, until Ctrl-C.
    Tail(TailArgs),
    /// List live connections: id, user, connection time, channels.
    Connections(ConnectionsArgs),
    /// Show a channel's stored messages: the newest, or those after a serial.
    History(HistoryArgs),
    /// Print the functions' logs (and the stage's access log) in time order; trace one
    /// connection or request across every function.
    Logs(LogsArgs),
    /// Print the functions' metrics (handshakes, frames, refusals, deliveries, throttled posts,
    /// fan-out duration) and API Gateway's, Lambda's and DynamoDB's for the stack, over a range,
    /// summed by period.
    Metrics(MetricsArgs),
    /// Delete connection ids whose `$disconnect` never ran (for cron).
    Gc(GcArgs),
    /// Refuse every token of a user issued before now, and close the user's open connections.
    Revoke(RevokeArgs),
    /// Close connections (their `$disconnect` runs) without revoking any token.
    Disconnect(DisconnectArgs),
    /// Load-test the stage (deployed, or `wsctl dev` with --endpoint-url): connections ramped at
    /// a rate, publishes, every delivery timed and checked for loss, duplicates and order.
    Bench(BenchArgs),
    /// Manage the stack's token secret.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Delete every resource of the stack.
    Destroy {
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Print the JSON Schema of wsctl.yaml (editors complete and check the file with it).
    Schema,
    /// Print the completion script of a shell for every command and flag.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the path of the user's guide (the built book), or of one command's page in it;
    /// --open opens it in the browser.
    Docs(DocsArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct DocsArgs {
    /// A command whose reference page to show instead of the book's first page, e.g. `deploy`
    /// or `secret rotate`.
    #[arg(value_name = "COMMAND")]
    pub command: Vec<String>,
    /// Open the page in the browser (`$BROWSER`, else the desktop's opener).
    #[arg(long)]
    pub open: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum SecretCommand {
    /// Sign new tokens with a fresh key; tokens signed with the current one keep passing for
    /// the grace period, then are refused.
    Rotate {
        /// How long tokens signed with the current key stay valid, e.g. 1h; 0 refuses them at once.
        #[arg(long, default_value = "1h", value_parser = parse_duration_or_zero)]
        grace: std::time::Duration,
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

#[derive(Debug, Clone, clap::Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub build: BuildArgs,
    /// Print the IAM policy the deploying identity needs for this stack (JSON) and exit; the
    /// only AWS calls read the account id (STS) and the stack's API id, if it exists.
    #[arg(long)]
    pub print_policy: bool,
    /// Print the permissions boundary every role of this stack carries (JSON) and exit: the
    /// managed policy an administrator creates once, or names with `permissions_boundary:`.
    #[arg(long, conflicts_with = "print_policy")]
    pub print_boundary: bool,
    /// Make changes that drop connected clients or delete data (marked `(!)` in the plan)
    /// without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DevArgs {
    /// Port of the local gateway (WebSocket, @connections, Lambda Invoke, demo page); 0 = any free port.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Most processes per function.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Close connections idle this long (API Gateway: 10 minutes), e.g. 30s, 10m.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub idle_timeout: std::time::Duration,
    /// Close connections open this long (API Gateway: 2 hours), e.g. 90m, 2h.
    #[arg(long, default_value = "2h", value_parser = parse_duration)]
    pub max_lifetime: std::time::Duration,
    /// Use the zips of the last build instead of building.
    #[arg(long)]
    pub no_build: bool,
    /// How often expired items (past their table's TTL attribute) are deleted, as DynamoDB's
    /// TTL does; `0` never deletes them.
    #[arg(long, default_value = "10s", value_parser = parse_duration_or_zero)]
    pub ttl_sweep: std::time::Duration,
    /// Where the items live: `local` is DynamoDB Local (Amazon's engine; needs Java 17+),
    /// `moto` the control plane's emulator (no Java; slower, laxer).
    #[arg(long, value_enum, default_value = "local")]
    pub dynamodb: DataPlane,
    /// Serve every call of the functions, as if their roles granted everything. By default a
    /// call the function's role does not allow is refused with AWS's AccessDeniedException.
    #[arg(long)]
    pub no_iam: bool,
    /// Make calls take as long as AWS's and apply the account's API Gateway throttle to
    /// `@connections` calls (429 LimitExceededException above it), to see how a fan-out
    /// behaves on AWS. Latencies are assumed figures (DynamoDB's is AWS's "single-digit
    /// millisecond"); set them with --aws-latency.
    #[arg(long)]
    pub like_aws: bool,
    /// With --like-aws: the account's API Gateway requests a second over `@connections`
    /// (AWS's default quota: 10,000; 2,500 in some Regions).
    #[arg(long, default_value_t = 10_000, requires = "like_aws", value_parser = clap::value_parser!(u32).range(1..))]
    pub account_rate: u32,
    /// With --like-aws: the account throttle's burst (AWS's default: 5,000).
    #[arg(long, default_value_t = 5_000, requires = "like_aws", value_parser = clap::value_parser!(u32).range(1..))]
    pub account_burst: u32,
    /// With --like-aws: the account's Lambda concurrency, over every function (AWS's default:
    /// 1,000). Above it a synchronous Invoke is refused with 429 TooManyRequestsException and an
    /// asynchronous one waits in the queue, as Lambda does.
    #[arg(long, default_value_t = 1_000, requires = "like_aws", value_parser = clap::value_parser!(u32).range(1..))]
    pub lambda_concurrency: u32,
    /// With --like-aws: read units a second one partition key of a table or index serves
    /// (DynamoDB's per-partition limit: 3,000); above it a call is refused with 400
    /// ThrottlingException, as DynamoDB refuses a hot key.
    #[arg(long, default_value_t = crate::local::partitions::PARTITION_READS, requires = "like_aws", value_parser = clap::value_parser!(u32).range(1..))]
    pub partition_reads: u32,
    /// With --like-aws: write units a second per partition key (DynamoDB's limit: 1,000).
    #[arg(long, default_value_t = crate::local::partitions::PARTITION_WRITES, requires = "like_aws", value_parser = clap::value_parser!(u32).range(1..))]
    pub partition_writes: u32,
    /// With --like-aws: one call's latency as CALL=MEDIAN[:P99] (repeatable), CALL one of
    /// connections (6ms:30ms), invoke (15ms:60ms), queue (an Event invocation's wait before it
    /// runs, 30ms:150ms), dynamodb (4ms:15ms).
    #[arg(long = "aws-latency", value_name = "CALL=MEDIAN[:P99]", requires = "like_aws", value_parser = crate::local::likeaws::parse_latency)]
    pub aws_latency: Vec<(crate::local::likeaws::Call, crate::local::likeaws::Latency)>,
}

#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum)]
pub enum DataPlane {
    Local,
    Moto,
}

/// `500ms`, `30s`, `10m`, `2h`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let d = parse_duration_or_zero(s)?;
    if d.is_zero() {
        return Err("a duration must be above zero".into());
    }
    Ok(d)
}

/// A duration where `0s` means "none" (no grace period, no minimum age).
pub fn parse_duration_or_zero(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: write e.g. 30s, 10m or 2h"))?;
    let ms = match unit {
        "ms" => n,
        "" | "s" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}; use ms, s, m or h")),
    };
    Ok(std::time::Duration::from_millis(ms))
}

#[derive(Debug, Clone, clap::Args)]
pub struct TokenArgs {
    /// The user id (`sub`): what `from` says on the messages this client publishes.
    #[arg(long, default_value = "dev")]
    pub user: String,
    /// What the token allows, as CHANNEL-GLOB:OPERATION,… (repeatable), e.g. 'room-*:subscribe,publish'.
    /// Operations: subscribe, publish, presence, history. Required for a deployed stage; on
    /// `wsctl dev` the default is all of them on every channel.
    #[arg(long = "allow", value_name = "GLOB:OPS")]
    pub allow: Vec<String>,
    /// How long the token is valid, e.g. 30m, 24h.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub ttl: std::time::Duration,
}

#[derive(Debug, Clone, clap::Args)]
pub struct PublishArgs {
    /// The channel: the message is stored under its next serial and sent to every subscriber.
    #[arg(
        long,
        required_unless_present_any = ["connection", "print_policy"],
        conflicts_with = "connection"
    )]
    pub channel: Option<String>,
    /// One connection id: the data goes straight to it through @connections (not stored).
    #[arg(long)]
    pub connection: Option<String>,
    /// The data: JSON, or else sent as a text string. Default: read from --file or stdin.
    #[arg(long, conflicts_with = "file")]
    pub data: Option<String>,
    /// Read the data from this file.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// An id that makes the publish idempotent (channel only; with --count, `ID-N`).
    #[arg(long)]
    pub id: Option<String>,
    /// Publish this many times.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub count: u32,
    /// At most this many publishes per second, 0.01-10000 (default: one after another, as fast as they complete).
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Print the IAM policy a backend needs to publish through the stack's publish endpoint
    /// (`publish_endpoint: true`) and exit; the only AWS calls read the account id (STS).
    #[arg(long, conflicts_with_all = ["channel", "connection", "data", "file", "id"])]
    pub print_policy: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct GcArgs {
    /// Report what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// GetConnection calls in flight at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
    /// Stop starting new checks after this long (e.g. 5m); the run then exits 9.
    #[arg(long, value_parser = parse_duration)]
    pub max_duration: Option<std::time::Duration>,
    /// Only look at connections opened at least this long ago. `@connections` answers 410
    /// while a `$connect` is still running (up to 29 s), so younger rows may be live.
    #[arg(long, default_value = "1m", value_parser = parse_duration_or_zero)]
    pub older_than: std::time::Duration,
    /// How a stale connection's subscriptions are found: `index`, one Query of the
    /// by-connection index per connection, as it is found; `scan`, one Scan of the
    /// subscriptions table for all of them after the checks; `auto`, the first thousand by
    /// index, the rest by one scan when they are at least 1 in 20 of the rows checked.
    #[arg(long, value_enum, default_value = "auto")]
    pub lookup: GcLookup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GcLookup {
    Auto,
    Index,
    Scan,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.01..=10_000.0).contains(&r) => Ok(r),
        _ => Err(format!(
            "{s:?}: give a number of publishes per second between 0.01 and 10000"
        )),
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct RevokeArgs {
    /// The user (`sub`) whose tokens stop passing: new handshakes, renewals and the frames of
    /// connections still open. Tokens issued from now on pass.
    #[arg(long)]
    pub user: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DisconnectArgs {
    /// A connection id (repeatable), as `wsctl connections` lists them.
    #[arg(long, required_unless_present = "user", conflicts_with = "user")]
    pub connection: Vec<String>,
    /// Every open connection of this user.
    #[arg(long)]
    pub user: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionsArgs {
    /// Only the subscribers of this channel.
    #[arg(long)]
    pub channel: Option<String>,
    /// Only this user's connections.
    #[arg(long)]
    pub user: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct HistoryArgs {
    /// The channel.
    #[arg(long)]
    pub channel: String,
    /// Only messages after this serial, oldest first; default: the newest.
    #[arg(long)]
    pub since: Option<u64>,
    /// How many messages at most (1-1000).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
}

#[derive(Debug, Clone, clap::Args)]
pub struct LogsArgs {
    /// Only these functions (their keys in wsctl.yaml); default: every function.
    #[arg(value_name = "FUNCTION")]
    pub functions: Vec<String>,
    /// The stage's access log too (API Gateway's line for each connect, frame and disconnect);
    /// alone, without FUNCTION, beside every function.
    #[arg(long)]
    pub access: bool,
    /// How far back to start, e.g. 30s, 10m, 2h.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub since: std::time::Duration,
    /// Keep printing lines as they arrive, until Ctrl-C.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// A CloudWatch Logs filter pattern: terms (`ERROR -timeout`, `?a ?b`, `"a phrase"`) or a
    /// JSON pattern (`{ $.level = "WARN" }`).
    #[arg(long, value_name = "PATTERN")]
    pub filter: Option<String>,
    /// Only the lines of this Lambda request id.
    #[arg(long, value_name = "ID")]
    pub request_id: Option<String>,
    /// Only the lines about this connection id: its handshake, its frames, the fan-outs of its
    /// messages, its disconnect.
    #[arg(long, value_name = "ID")]
    pub connection: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct MetricsArgs {
    /// How far back to start, e.g. 10m, 1h, 24h.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub since: std::time::Duration,
    /// The length of one period, e.g. 1m, 5m, 1h.
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    pub period: std::time::Duration,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// A token; default: one minted for --user with the stack's secret.
    #[arg(long)]
    pub token: Option<String>,
    /// The user of the minted token.
    #[arg(long, default_value = "cli")]
    pub user: String,
    /// The WebSocket URL; default: the deployed stage's, or `--endpoint-url`'s with the stage.
    #[arg(long)]
    pub url: Option<String>,
    /// With stdin not a terminal: how long to wait for answers after the last line.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub wait: std::time::Duration,
}

#[derive(Debug, Clone, clap::Args)]
pub struct TailArgs {
    /// Only subscribes on these channels (repeatable); the messages too with --messages.
    #[arg(long)]
    pub channel: Vec<String>,
    /// Also print the messages published on the --channel channels.
    #[arg(long)]
    pub messages: bool,
    /// How often the tables are read, e.g. 500ms, 2s.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub interval: std::time::Duration,
}

/// API Gateway's default quota is 500 new connections a second per account and Region, shared
/// by every client of the account: a bench stays under it unless told the quota was raised.
pub const ACCOUNT_CONNECT_RATE: f64 = 500.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PublishVia {
    Socket,
    Function,
}

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Subscriber connections to open (at most 100,000).
    #[arg(long, short = 'n', default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub connections: u32,
    /// New connections a second, 0.1-10000. Against AWS at most 450 (the account's default
    /// quota is 500/s) unless --raised-quota.
    #[arg(long, default_value_t = 50.0, value_parser = parse_connect_rate)]
    pub rate: f64,
    /// Handshakes (each with its subscribe) in flight at once.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub in_flight: u16,
    /// Channels the subscribers spread over (connection i joins channel i mod C); 0 opens
    /// bare connections that subscribe to nothing, for handshake rates and idle memory.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub channels: u32,
    /// Publishers; publishes take turns among them. With --via socket each is a connection
    /// (not subscribed); with --via function, an invocation in flight.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub publishers: u16,
    /// How publishes reach the stage: `socket`, as clients publish (publish frames, acked by
    /// the message function); `function`, as `wsctl publish --channel` does (the publish
    /// function invoked and waited for, whose answers count its posts: delivered, 410 Gone,
    /// failed).
    #[arg(long, value_enum, default_value = "socket")]
    pub via: PublishVia,
    /// Fan-out rounds: one publish at a time, timed until every subscriber of its channel has
    /// it (the default load: 5 rounds).
    #[arg(long, conflicts_with_all = ["publish_rate", "duration"], value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub rounds: Option<u64>,
    /// Steady load instead of rounds: publishes a second, 0.1-10000, spread over the channels.
    #[arg(long, value_parser = parse_publish_rate)]
    pub publish_rate: Option<f64>,
    /// With --publish-rate: how long to publish, at most 1h.
    #[arg(long, requires = "publish_rate", value_parser = parse_bench_duration)]
    pub duration: Option<std::time::Duration>,
    /// Bytes of padding in each message's data (at most 120 KB, the protocol's limit).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(0..=120 * 1024))]
    pub size: u32,
    /// Keep the connections idle this long between the ramp and the first publish, e.g. 30s.
    #[arg(long, default_value = "0s", value_parser = parse_bench_duration)]
    pub hold: std::time::Duration,
    /// After the last publish, the longest wait for deliveries (also each round's limit).
    #[arg(long, default_value = "30s", value_parser = parse_bench_duration)]
    pub drain: std::time::Duration,
    /// How the connections end: with a close frame, or dropped without one (as a lost network
    /// drops them, which the gateway notices on its own).
    #[arg(long, value_enum, default_value = "close")]
    pub end: crate::bench::End,
    /// The stage's WebSocket URL: this machine's, or the stack's own deployed stage (anything
    /// else is refused). Default: the deployed stage, or `wsctl dev`'s with --endpoint-url.
    #[arg(long)]
    pub url: Option<String>,
    /// The token every connection presents (one user for all: the stage's per-user limits then
    /// bound the whole run); default: one minted per connection with the stack's secret, each
    /// for a user of its own.
    #[arg(long)]
    pub token: Option<String>,
    /// The account's quota of new connections a second was raised: allow --rate above 450,
    /// and a publish rate whose fan-out is above 5,000 `@connections` calls a second.
    #[arg(long)]
    pub raised_quota: bool,
    /// Also write a self-contained HTML report (latency histogram, connections and deliveries
    /// over time) to this file.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// With `wsctl dev` (--endpoint-url): add this many virtual subscribers to each channel,
    /// beside the real connections. They have no socket: the dev server records when each
    /// message reached each of them, so a fan-out to 100,000 fits on one machine.
    #[arg(long = "virtual", value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=200_000))]
    pub virtual_subscribers: u32,
    /// A price for the bill of a run against `wsctl dev`, as NAME=USD (repeatable): message
    /// and connection-minute (API Gateway, per million), lambda-request (per million),
    /// gb-second. Defaults: us-east-1 list prices, Lambda on arm64.
    #[arg(long = "price", value_name = "NAME=USD", value_parser = crate::bench::parse_price)]
    pub prices: Vec<(String, f64)>,
}

fn parse_connect_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.1..=10_000.0).contains(&r) => Ok(r),
        _ => Err(format!(
            "{s:?}: give new connections a second between 0.1 and 10000"
        )),
    }
}

fn parse_publish_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.1..=10_000.0).contains(&r) => Ok(r),
        _ => Err(format!(
            "{s:?}: give publishes a second between 0.1 and 10000"
        )),
    }
}

fn parse_bench_duration(s: &str) -> Result<std::time::Duration, String> {
    let d = parse_duration_or_zero(s)?;
    if d > std::time::Duration::from_secs(3600) {
        return Err(format!("{s:?}: a bench phase lasts at most 1h"));
    }
    Ok(d)
}
