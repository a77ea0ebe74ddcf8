//! What the parts of the gateway share, made once by `wsctl dev`.

use std::time::Duration;

use tokio::sync::watch;

use super::api::Api;
use super::connections::Registry;
use super::crowd::Crowd;
use super::endpoints::Minter;
use super::iam::Principals;
use super::likeaws::LikeAws;
use super::proxy::Upstream;
use super::runtime::LogSink;

/// The log key of the stage's access log.
pub const ACCESS: &str = "access";

pub struct Gateway {
    pub api: Api,
    pub limits: Limits,
    pub conns: Registry,
    pub minter: Option<Minter>,
    pub page: String,
    /// `host:port` the gateway listens on: the `domainName` of events.
    pub domain: String,
    pub log: LogSink,
    pub stop: watch::Receiver<bool>,
    /// Where other AWS calls go (moto).
    pub upstream: Upstream,
    /// The functions' credentials, when their calls are checked against their roles.
    pub iam: Option<Principals>,
    /// AWS's latencies and the account's throttle (`--like-aws`).
    pub like_aws: Option<LikeAws>,
    /// Virtual subscribers.
    pub crowd: Crowd,
}

/// How long connections may live.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub idle: Duration,
    pub lifetime: Duration,
}

impl Gateway {
    pub fn note(&self, line: &str) {
        (self.log)("gateway", line, super::runtime::Echo::Terminal);
    }

    /// A line of the stage's access log, when it has one (never on the terminal).
    pub fn access(&self, request: &super::access::Request) {
        if let Some(log) = &self.api.access_log {
            (self.log)(ACCESS, &log.line(request), super::runtime::Echo::LogOnly);
        }
    }
}
