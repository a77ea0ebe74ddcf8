//! The error of a command, and the exit code it maps to (documented in README).

use crate::aws::AwsError;
use crate::build::BuildError;
use crate::config::ConfigError;
use crate::engine::model::ResourceId;

pub mod exit {
    pub const OK: i32 = 0;
    /// An unexpected failure (a bug, or the file system).
    pub const INTERNAL: i32 = 1;
    /// Bad command line or bad wsctl.yaml: nothing was sent to AWS.
    pub const USAGE: i32 = 2;
    /// No region, no or rejected credentials, access denied.
    pub const CREDENTIALS: i32 = 3;
    /// An AWS call failed while applying; re-running resumes where it stopped.
    pub const AWS: i32 = 4;
    /// Building a function failed, or a build tool is missing.
    pub const BUILD: i32 = 5;
    /// A resource with a name the stack needs exists but belongs to something else.
    pub const CONFLICT: i32 = 6;
    /// The user declined the confirmation.
    pub const DECLINED: i32 = 7;
    /// `wsctl dev` could not start its local stack (moto missing, port in use).
    pub const LOCAL: i32 = 8;
    /// `gc` did part of its work: some calls failed or it stopped at `--max-duration`.
    pub const UNFINISHED: i32 = 9;
    /// `bench` ran, but connections failed or messages were lost, duplicated or out of order.
    pub const DEGRADED: i32 = 10;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("{usage}")]
    Usage { usage: String },
    #[error("{} resource(s) with names this stack needs exist without its tags, so wsctl will not touch them:\n{}\nhint: delete or rename them, or choose another `stack`/`stage` in wsctl.yaml", .0.len(), list(.0))]
    Conflict(Vec<ResourceId>),
    #[error("{} change(s) failed:\n{}\nhint: fix the cause and re-run; every step is idempotent and the next run continues from here", .0.len(), failures(.0))]
    Partial(Vec<(ResourceId, AwsError)>),
    #[error(
        "access_logs: API Gateway in {region} has no CloudWatch Logs role in its account settings, and a stage writes access logs only through it; nothing was changed\nhint: add `account_role: create` under `access_logs` to have wsctl create {role} and set it (every API of the account in {region} then logs through it), or `account_role: arn:aws:iam::ACCOUNT:role/NAME` to set a role you have"
    )]
    NoLoggingRole { region: String, role: &'static str },
    #[error(
        "{} would delete table(s) with DynamoDB's deletion protection on: {}; DynamoDB refuses that, so nothing was changed\nhint: if their items may go, set `deletion_protection: false` for them under `tables:` in wsctl.yaml (a removed table: put it back with that setting) and run `wsctl deploy`, which turns the protection off and changes nothing else; then {}",
        .doing, .tables.join(", "), .then
    )]
    Protected {
        doing: &'static str,
        tables: Vec<String>,
        then: &'static str,
    },
    #[error(transparent)]
    NoRoomToReserve(#[from] crate::aws::lambda::NoRoomToReserve),
    #[error("aborted: nothing was changed")]
    Declined,
    /// A confirmation was needed and nobody could give it (no terminal, no `--yes`).
    #[error("{0}")]
    Unconfirmed(String),
    #[error("{0}")]
    Unfinished(String),
    /// A WebSocket handshake refused by the authorizer.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Local(#[from] crate::local::LocalError),
    #[error("{0}")]
    Io(String),
    /// The user's guide cannot be built, found or opened.
    #[error("{0}")]
    Docs(String),
    /// `bench` finished, and what it measured is not all clean.
    #[error("{0}")]
    Degraded(String),
}

fn list(ids: &[ResourceId]) -> String {
    ids.iter()
        .map(|i| format!("  - {i}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn failures(f: &[(ResourceId, AwsError)]) -> String {
    f.iter()
        .map(|(id, e)| format!("  - {id}: {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_)
            | Error::Usage { .. }
            | Error::NoLoggingRole { .. }
            | Error::NoRoomToReserve(_)
            | Error::Protected { .. } => exit::USAGE,
            Error::Aws(e) if e.is_setup() => exit::CREDENTIALS,
            Error::Aws(_) => exit::AWS,
            Error::Partial(f) if f.iter().all(|(_, e)| e.is_setup()) => exit::CREDENTIALS,
            Error::Partial(_) => exit::AWS,
            Error::Build(_) | Error::Docs(_) => exit::BUILD,
            Error::Conflict(_) => exit::CONFLICT,
            Error::Declined | Error::Unconfirmed(_) => exit::DECLINED,
            Error::Local(_) => exit::LOCAL,
            Error::Unfinished(_) => exit::UNFINISHED,
            Error::Refused(_) => exit::CREDENTIALS,
            Error::Io(_) => exit::INTERNAL,
            Error::Degraded(_) => exit::DEGRADED,
        }
    }
}
