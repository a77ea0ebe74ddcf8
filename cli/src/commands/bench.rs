//! `wsctl bench`: load on the stage, deployed or served by `wsctl dev`, with the same code.
//! This module decides what may be loaded and how hard (only this machine or the stack's own
//! stage; under the account's connection quota), mints the token, shows progress, and writes
//! the report; `crate::bench` runs the load.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use wsctl_functions::auth::Capabilities;

use crate::args::{ACCOUNT_CONNECT_RATE, BenchArgs, PublishVia};
use crate::aws::AwsArgs;
use crate::bench::{self, BenchPlan, Counters, End, Load, Phase, Via};
use crate::error::Error;
use crate::output::Printer;
use crate::stack::{PublishFunction, Stack, is_local_ws};

/// A steady load without --duration.
const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// Rounds without --rounds or --publish-rate.
const DEFAULT_ROUNDS: u64 = 5;
/// Publishes one run may make: each one's deliveries are tracked.
const MAX_PUBLISHES: u64 = 1_000_000;
/// Below the account's quota, so the bench leaves room for the account's other clients.
const SAFE_CONNECT_RATE: f64 = 450.0;
/// API Gateway's account throttle is 10,000 requests a second with a burst of 5,000, shared by
/// the `@connections` posts of every fan-out.
const SAFE_POSTS_PER_SECOND: f64 = 5_000.0;

pub async fn run(
    config_path: &Path,
    aws: &AwsArgs,
    args: &BenchArgs,
    printer: &Printer,
) -> Result<(), Error> {
    let load = load(args)?;
    let connections = args.connections as usize;
    let needed = (connections + args.publishers as usize + 64) as u64;
    if let Some(limit) = crate::local::raise_fd_limit()
        && limit < needed
    {
        return Err(usage(format!(
            "{connections} connections need {needed} open files, and this process may open {limit}\nhint: raise the hard limit (`ulimit -Hn`, or LimitNOFILE for a service) or pass fewer --connections"
        )));
    }
    if let Some(ports) = local_ports()
        && ports < needed - 64
    {
        return Err(usage(format!(
            "{connections} connections from this machine to one address need as many local ports, and its range (net.ipv4.ip_local_port_range) holds {ports}\nhint: widen the range (`sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\"`), or run several benches from several machines"
        )));
    }
    // Opened before the run, so a path that cannot be written is said before the load, not
    // after it.
    let report_file = match &args.report {
        Some(path) => Some((
            path,
            std::fs::File::create(path).map_err(|e| {
                usage(format!(
                    "cannot write the report to {}: {e}\nhint: pass a --report path in a folder you can write to",
                    path.display()
                ))
            })?,
        )),
        None => None,
    };
    let channel_prefix = format!("bench-{:08x}", rand::random::<u32>());
    // The token outlives the whole run, whatever its phases take.
    let lifetime = Duration::from_secs(3600)
        + args.hold
        + args.drain
        + args.duration.unwrap_or_default()
        + Duration::from_secs_f64(connections as f64 / args.rate);
    let target = target(config_path, aws, args, lifetime).await?;
    if target.remote {
        within_quota(args, load, connections)?;
    }
    if target.remote && args.virtual_subscribers > 0 {
        return Err(usage(
            "--virtual adds subscribers inside `wsctl dev`; a deployed stage has no such thing\nhint: run the bench against `wsctl dev` (--endpoint-url its address), or leave out --virtual".into(),
        ));
    }
    let dev = (!target.remote).then(|| dev_base(&target.url));
    let plan = BenchPlan {
        url: target.url,
        tokens: target.tokens,
        connections,
        rate: args.rate,
        in_flight: args.in_flight as usize,
        channels: args.channels as usize,
        channel_prefix,
        publishers: args.publishers as usize,
        load,
        size: args.size as usize,
        hold: args.hold,
        drain: args.drain,
        end: args.end,
        via: match target.function {
            Some(function) => Via::Function(function),
            None => Via::Socket,
        },
        dev,
        virtual_per_channel: args.virtual_subscribers as usize,
        prices: args.prices.clone(),
    };
    printer.note(describe(&plan, target.remote));
    let live = Counters::new();
    let progress = tokio::spawn(show_progress(
        live.clone(),
        connections as u64,
        load.publishes(),
        *printer,
    ));
    let report = bench::run(plan, live).await;
    let _ = progress.await;

    printer.show(&report);
    if let Some((path, mut file)) = report_file {
        use std::io::Write;
        file.write_all(report.html().as_bytes()).map_err(|e| {
            Error::Io(format!(
                "cannot write the report to {}: {e}",
                path.display()
            ))
        })?;
        printer.note(format!("report written to {}", path.display()));
    }
    let refused = report
        .connections
        .failures
        .keys()
        .any(|k| k.starts_with("401") || k.starts_with("403"));
    if report.connections.opened == 0 && refused {
        return Err(Error::Refused(
            "the stage refused every connection's token\nhint: mint one with `wsctl token` for this stack, or leave out --token".into(),
        ));
    }
    if report.connections.opened == 0 {
        let why: Vec<&str> = report
            .connections
            .failures
            .keys()
            .map(String::as_str)
            .collect();
        return Err(Error::Degraded(format!(
            "no connection opened ({})\nhint: check that the stage is up: `wsctl status`, or that `wsctl dev` is running",
            why.join("; ")
        )));
    }
    if !report.clean {
        return Err(Error::Degraded(
            "the bench ran, but not everything went through (see the figures above)".into(),
        ));
    }
    Ok(())
}

/// How many ephemeral ports this machine gives its outgoing connections: each connection to
/// one address and port takes one.
fn local_ports() -> Option<u64> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut bounds = range.split_whitespace().map(|p| p.parse::<u64>().ok());
    let (low, high) = (bounds.next()??, bounds.next()??);
    Some(high.saturating_sub(low) + 1)
}

/// `http://host:port` of the `wsctl dev` that serves the WebSocket `url`.
fn dev_base(url: &str) -> String {
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("wss://"))
        .unwrap_or(url);
    let host = rest.split(['/', '?']).next().unwrap_or(rest);
    format!("http://{host}")
}

fn usage(text: String) -> Error {
    Error::Usage { usage: text }
}

fn load(args: &BenchArgs) -> Result<Load, Error> {
    let load = match (args.publish_rate, args.rounds) {
        (Some(per_second), _) => Load::Rate {
            per_second,
            duration: args.duration.unwrap_or(DEFAULT_DURATION),
        },
        (None, Some(n)) => Load::Rounds(n),
        (None, None) if args.channels == 0 => Load::Rounds(0),
        (None, None) => Load::Rounds(DEFAULT_ROUNDS),
    };
    if args.channels == 0 && load.publishes() > 0 {
        return Err(usage(
            "--channels 0 opens connections that subscribe to nothing, so there is nothing to publish to\nhint: drop --rounds / --publish-rate, or give --channels 1 or more".into(),
        ));
    }
    if let Load::Rate { duration, .. } = load
        && duration.is_zero()
    {
        return Err(usage(
            "--duration 0 publishes nothing\nhint: give a duration such as 30s, or --rounds for fan-out rounds".into(),
        ));
    }
    if load.publishes() > MAX_PUBLISHES {
        return Err(usage(format!(
            "--publish-rate × --duration is {} publishes; a run tracks at most {MAX_PUBLISHES}\nhint: lower the rate or the duration",
            load.publishes()
        )));
    }
    Ok(load)
}

/// Against AWS the account's quotas are shared with production: stay under them unless told.
fn within_quota(args: &BenchArgs, load: Load, connections: usize) -> Result<(), Error> {
    if args.raised_quota {
        return Ok(());
    }
    if args.rate > SAFE_CONNECT_RATE {
        return Err(usage(format!(
            "--rate {} is above {SAFE_CONNECT_RATE}: API Gateway allows {ACCOUNT_CONNECT_RATE} new connections a second per account and Region by default, shared with every other client of the account, and throttles the rest with 429\nhint: lower --rate, or pass --raised-quota if the account's quota was raised",
            args.rate
        )));
    }
    if let Load::Rate { per_second, .. } = load {
        let per_channel = connections.div_ceil(args.channels.max(1) as usize) as f64;
        let posts = per_second * per_channel;
        if posts > SAFE_POSTS_PER_SECOND {
            return Err(usage(format!(
                "--publish-rate {per_second} to about {per_channel:.0} subscribers a channel is about {posts:.0} @connections calls a second: API Gateway's account throttle is 10,000 requests a second (burst 5,000), shared with the account's other APIs\nhint: lower --publish-rate, spread over more --channels, or pass --raised-quota"
            )));
        }
    }
    Ok(())
}

struct BenchTarget {
    url: String,
    /// Connection `i` uses token `i` (modulo their number); publishers come after the
    /// subscribers.
    tokens: Vec<String>,
    /// Not this machine: the stack's stage on AWS.
    remote: bool,
    /// With --via function: the stack's publish function.
    function: Option<PublishFunction>,
}

/// Where the load goes and with what token. Only this machine or the stack's own stage: the
/// bench must not become a way to load someone else's server.
async fn target(
    config_path: &Path,
    aws: &AwsArgs,
    args: &BenchArgs,
    lifetime: Duration,
) -> Result<BenchTarget, Error> {
    if let (Some(url), Some(token), PublishVia::Socket) = (&args.url, &args.token, args.via)
        && is_local_ws(url)
    {
        return Ok(BenchTarget {
            url: url.clone(),
            tokens: vec![token.clone()],
            remote: false,
            function: None,
        });
    }
    let config = crate::engine::load_config(config_path)?;
    let stack = Stack::open(&config, aws).await?;
    let (url, remote) = match &args.url {
        Some(url) if is_local_ws(url) => (url.clone(), false),
        Some(url) => {
            let mut own: Vec<String> = stack
                .find_gateway()
                .await?
                .into_iter()
                .map(|g| g.websocket)
                .collect();
            if let Some(domain) = stack.custom_domain().await? {
                own.push(domain.gateway.websocket);
            }
            let same = |a: &str| a.trim_end_matches('/') == url.trim_end_matches('/');
            if !own.iter().any(|o| same(o)) {
                let stage = if own.is_empty() {
                    format!("{} is not deployed", stack.names.api())
                } else {
                    format!("its stage is {}", own.join(" or "))
                };
                return Err(usage(format!(
                    "refusing to load {url}: a bench goes only to this machine (ws://127.0.0.1…, ws://localhost…) or to the stack's own stage, and {stage}\nhint: leave out --url to load the stage of {}",
                    config_path.display()
                )));
            }
            (url.clone(), !is_local_ws(url))
        }
        None => {
            let gateway = stack.gateway().await?;
            let remote = !is_local_ws(&gateway.websocket);
            (gateway.websocket, remote)
        }
    };
    // One user per connection, as real clients are: the stage's per-user limits
    // (`limits.connections_per_user`, publishes a second) then bound each one, not the run.
    let tokens = match &args.token {
        Some(token) => vec![token.clone()],
        None => {
            let users: Vec<String> = (0..args.connections as u64 + u64::from(args.publishers))
                .map(|i| format!("bench-{i}"))
                .collect();
            let users: Vec<&str> = users.iter().map(String::as_str).collect();
            stack
                .mint_many(&users, Capabilities::everything(), lifetime)
                .await?
                .into_iter()
                .map(|(token, _)| token)
                .collect()
        }
    };
    // The function fans out to the subscribers of its own stage: the bench's connections
    // must be there, or every post would go to another stage.
    if args.via == PublishVia::Function && !remote {
        let own = stack.gateway().await?.websocket;
        if !is_local_ws(&own) {
            return Err(usage(format!(
                "--via function publishes through the stack's publish function, whose subscribers are on {own}, not on {url}\nhint: pass the --endpoint-url of the wsctl dev that serves {url}, or leave out --via function"
            )));
        }
    }
    let function = (args.via == PublishVia::Function).then(|| stack.publish_function());
    Ok(BenchTarget {
        url,
        tokens,
        remote,
        function,
    })
}

fn describe(plan: &BenchPlan, remote: bool) -> String {
    let load = match plan.load {
        Load::Rounds(n) => format!("{n} fan-out rounds"),
        Load::Rate {
            per_second,
            duration,
        } => format!(
            "{per_second} publishes a second for {:.0} s",
            duration.as_secs_f64()
        ),
    };
    let channels = match plan.channels {
        0 => "subscribed to nothing".to_string(),
        1 => "on 1 channel".to_string(),
        n => format!("over {n} channels"),
    };
    let publishers = match (&plan.via, plan.publishers) {
        (Via::Socket, 1) => "from 1 publisher connection".to_string(),
        (Via::Socket, n) => format!("from {n} publisher connections"),
        (Via::Function(_), n) => {
            format!(
                "through the publish function, {n} invocation{} at a time",
                if n == 1 { "" } else { "s" }
            )
        }
    };
    format!(
        "bench {}{}: {} connections at {}/s {channels}, {load} of {} bytes {publishers}; ending with {}",
        plan.url,
        if remote { " (AWS)" } else { "" },
        plan.connections,
        plan.rate,
        plan.size,
        match plan.end {
            End::Close => "a close frame",
            End::Drop => "the connections dropped (no close frame)",
        }
    )
}

/// A bar on a terminal; otherwise a line a second and one at each phase.
async fn show_progress(live: Arc<Counters>, connections: u64, publishes: u64, printer: Printer) {
    let bar = printer.progress.then(|| {
        let bar = ProgressBar::new(connections);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg:<12} [{bar:30}] {pos}/{len} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let lines = bar.is_none() && printer.verbosity >= 0;
    let mut phase = live.phase();
    let mut tick = 0u64;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        tick += 1;
        let now = live.phase();
        let opened = live.opened.load(Relaxed);
        let failed = live.failed.load(Relaxed);
        let published = live.published.load(Relaxed);
        let delivered = live.delivered.load(Relaxed);
        let seconds = live.started.elapsed().as_secs_f64();
        let status = match now {
            Phase::Ramp => format!("ramp: {opened}/{connections} open, {failed} failed"),
            Phase::Hold => format!("hold: {opened} open and idle"),
            Phase::Publish => {
                format!("publish: {published}/{publishes} sent, {delivered} delivered")
            }
            Phase::Drain => format!("drain: {delivered} delivered"),
            Phase::End => format!("end: {delivered} delivered"),
        };
        if now != phase {
            if let Some(bar) = &bar {
                bar.println(format!("{seconds:>6.1} s  {status}"));
                bar.set_length(match now {
                    Phase::Ramp | Phase::Hold => connections,
                    Phase::Publish | Phase::Drain | Phase::End => publishes,
                });
            } else if lines {
                eprintln!("{seconds:>6.1} s  {status}");
            }
            phase = now;
        } else if lines && tick.is_multiple_of(10) {
            eprintln!("{seconds:>6.1} s  {status}");
        }
        if let Some(bar) = &bar {
            let (name, pos) = match now {
                Phase::Ramp => ("connecting", opened + failed),
                Phase::Hold => ("holding", opened),
                Phase::Publish => ("publishing", published),
                Phase::Drain | Phase::End => ("delivering", published),
            };
            bar.set_message(name);
            bar.set_position(pos);
        }
        if now == Phase::End {
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command};

    fn args(line: &[&str]) -> BenchArgs {
        let cli = Cli::try_parse_from([&["wsctl", "bench"], line].concat()).expect("parses");
        match cli.command {
            Command::Bench(args) => args,
            other => panic!("not bench: {other:?}"),
        }
    }

    fn refusal(line: &[&str]) -> String {
        let a = args(line);
        let load = load(&a).expect("a valid load");
        match within_quota(&a, load, a.connections as usize) {
            Err(Error::Usage { usage }) => usage,
            other => panic!("{line:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn against_aws_the_connection_rate_stays_under_the_account_quota_unless_told() {
        let why = refusal(&["--rate", "600"]);
        assert!(
            why.contains("500 new connections a second") && why.contains("--raised-quota"),
            "{why}"
        );
        for ok in [&["--rate", "450"][..], &["--rate", "600", "--raised-quota"]] {
            let a = args(ok);
            assert!(within_quota(&a, load(&a).unwrap(), 100).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn against_aws_a_fan_out_above_the_account_throttle_is_refused_unless_told() {
        let why = refusal(&["-n", "10000", "--channels", "100", "--publish-rate", "100"]);
        assert!(
            why.contains("10,000 requests a second") && why.contains("--channels"),
            "{why}"
        );
        let a = args(&["-n", "10000", "--channels", "1000", "--publish-rate", "100"]);
        assert!(within_quota(&a, load(&a).unwrap(), 10_000).is_ok());
    }

    #[test]
    fn loads_are_bounded_and_default_to_rounds() {
        assert_eq!(load(&args(&[])).unwrap(), Load::Rounds(DEFAULT_ROUNDS));
        assert_eq!(load(&args(&["--channels", "0"])).unwrap(), Load::Rounds(0));
        assert_eq!(
            load(&args(&["--publish-rate", "5"])).unwrap(),
            Load::Rate {
                per_second: 5.0,
                duration: DEFAULT_DURATION
            }
        );
        for bad in [
            &["--publish-rate", "1000", "--duration", "1h"][..],
            &["--publish-rate", "5", "--duration", "0s"],
            &["--channels", "0", "--rounds", "1"],
        ] {
            assert!(
                matches!(load(&args(bad)), Err(Error::Usage { .. })),
                "{bad:?}"
            );
        }
        for bad in [
            &["--connections", "0"][..],
            &["--connections", "100001"],
            &["--rate", "0"],
            &["--rate", "20000"],
            &["--duration", "2h", "--publish-rate", "1"],
            &["--rounds", "3", "--publish-rate", "1"],
            &["--size", "200000"],
        ] {
            assert!(
                Cli::try_parse_from([&["wsctl", "bench"], bad].concat()).is_err(),
                "{bad:?} accepted"
            );
        }
    }
}
