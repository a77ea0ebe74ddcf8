//! `wsctl dev --like-aws`: the calls a deployed stack makes take as long as AWS's do, and the
//! account's API Gateway throttle answers as API Gateway does. Off by default, so the local
//! figures stay those of this machine.
//!
//! What is modelled, and from where:
//! - **The account throttle over `@connections`.** "Amazon API Gateway quotas": 10,000 requests
//!   a second with a burst of 5,000 per account and Region, shared by every API, WebSocket
//!   callback APIs included (some Regions: 2,500 / 1,250). Above it `PostToConnection`,
//!   `GetConnection` and `DeleteConnection` answer HTTP 429 `LimitExceededException` ("The client
//!   is sending more than the allowed number of requests per unit of time", API Gateway
//!   Management API reference). Both figures are settings, so a raised quota can be modelled.
//! - **Latencies**, each drawn from a log-normal distribution given by its median and p99
//!   (a long right tail, as service latencies have). AWS publishes no latency figure for these
//!   calls except DynamoDB's "single-digit millisecond" (Amazon DynamoDB developer guide,
//!   "What is Amazon DynamoDB?"); the defaults below are assumptions of a same-Region call from
//!   Lambda, marked as such in `wsctl dev --help`, and each is overridable with `--aws-latency`.

use std::time::Duration;

use super::partitions::Partitions;
use super::throttle::Throttle;

/// A call the emulator delays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    /// `PostToConnection`, `GetConnection`, `DeleteConnection`.
    Connections,
    /// Lambda `Invoke`: the API call itself, either type.
    Invoke,
    /// An asynchronous (`Event`) invocation's time in Lambda's internal queue before it runs.
    Queue,
    /// Any DynamoDB data-plane call.
    Dynamodb,
}

impl Call {
    const ALL: [(&'static str, Call); 4] = [
        ("connections", Call::Connections),
        ("invoke", Call::Invoke),
        ("queue", Call::Queue),
        ("dynamodb", Call::Dynamodb),
    ];

    fn name(self) -> &'static str {
        Call::ALL
            .iter()
            .find(|(_, c)| *c == self)
            .map(|(n, _)| *n)
            .unwrap_or_default()
    }
}

/// A latency distribution: log-normal with this median and 99th percentile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub median: Duration,
    pub p99: Duration,
}

/// The 99th percentile of the standard normal distribution.
const Z99: f64 = 2.326_347_874;

impl Latency {
    const fn ms(median: u64, p99: u64) -> Latency {
        Latency {
            median: Duration::from_millis(median),
            p99: Duration::from_millis(p99),
        }
    }

    /// One draw.
    pub fn sample(&self) -> Duration {
        let median = self.median.as_secs_f64();
        if median <= 0.0 {
            return Duration::ZERO;
        }
        let sigma = (self.p99.as_secs_f64() / median).max(1.0).ln() / Z99;
        // Box–Muller: one standard normal draw from two uniform ones.
        let (u1, u2): (f64, f64) = (rand::random::<f64>().max(f64::MIN_POSITIVE), rand::random());
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        Duration::from_secs_f64((median * (sigma * z).exp()).min(60.0))
    }
}

/// The assumed defaults (see the module's comment): median and p99 in milliseconds.
fn default_latency(call: Call) -> Latency {
    match call {
        Call::Connections => Latency::ms(6, 30),
        Call::Invoke => Latency::ms(15, 60),
        Call::Queue => Latency::ms(30, 150),
        Call::Dynamodb => Latency::ms(4, 15),
    }
}

/// `--aws-latency CALL=MEDIAN[:P99]`, e.g. `connections=6ms:30ms`; without a p99 the call
/// always takes the median.
pub fn parse_latency(s: &str) -> Result<(Call, Latency), String> {
    let names = || {
        Call::ALL
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (call, spec) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: write CALL=MEDIAN[:P99], e.g. connections=6ms:30ms"))?;
    let call = Call::ALL
        .iter()
        .find(|(n, _)| *n == call.trim())
        .map(|(_, c)| *c)
        .ok_or_else(|| {
            format!(
                "{call:?} is not a call wsctl dev delays; use one of {}",
                names()
            )
        })?;
    let (median, p99) = match spec.split_once(':') {
        Some((m, p)) => (m, p),
        None => (spec, spec),
    };
    let median = crate::args::parse_duration_or_zero(median)?;
    let p99 = crate::args::parse_duration_or_zero(p99)?;
    if p99 < median {
        return Err(format!(
            "{s:?}: the p99 ({p99:?}) is below the median ({median:?})"
        ));
    }
    Ok((call, Latency { median, p99 }))
}

/// What `--like-aws` turns on.
pub struct LikeAws {
    /// The account's API Gateway throttle, shared by every `@connections` call.
    pub throttle: Throttle,
    /// Its rate and burst, as set.
    pub quota: (u32, u32),
    /// The account's Lambda concurrency: invocations in flight at once, over every function.
    pub concurrency: u64,
    /// DynamoDB's request units and per-partition throughput.
    pub partitions: Partitions,
    latencies: Vec<(Call, Latency)>,
}

impl LikeAws {
    /// The account throttle at `quota` (rate, burst), Lambda's account concurrency, DynamoDB's
    /// per-partition read and write units a second, and the default latencies with `overrides`.
    pub fn new(
        quota: (u32, u32),
        concurrency: u32,
        partition: (u32, u32),
        overrides: &[(Call, Latency)],
    ) -> LikeAws {
        let (rate, burst) = quota;
        let latencies = Call::ALL
            .iter()
            .map(|(_, call)| {
                let l = overrides
                    .iter()
                    .rev()
                    .find(|(c, _)| c == call)
                    .map(|(_, l)| *l)
                    .unwrap_or_else(|| default_latency(*call));
                (*call, l)
            })
            .collect();
        LikeAws {
            throttle: Throttle::new(
                f64::from(rate.max(1)),
                burst.clamp(1, i32::MAX as u32) as i32,
            )
            .expect("a positive rate and burst"),
            quota: (rate, burst),
            concurrency: u64::from(concurrency.max(1)),
            partitions: Partitions::new(partition.0, partition.1),
            latencies,
        }
    }

    pub fn latency(&self, call: Call) -> Latency {
        self.latencies
            .iter()
            .find(|(c, _)| *c == call)
            .map(|(_, l)| *l)
            .unwrap_or_else(|| default_latency(call))
    }

    /// Waits as long as one `call` takes.
    pub async fn delay(&self, call: Call) {
        let d = self.latency(call).sample();
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }

    /// One line for the startup banner.
    pub fn describe(&self) -> String {
        let latencies: Vec<String> = self
            .latencies
            .iter()
            .map(|(c, l)| {
                format!(
                    "{} {}/{} ms",
                    c.name(),
                    l.median.as_millis(),
                    l.p99.as_millis()
                )
            })
            .collect();
        let (reads, writes) = self.partitions.rates();
        format!(
            "account throttle {}/s burst {}; Lambda concurrency {}; DynamoDB {reads} read / {writes} write units a second per partition key; latency median/p99: {}",
            self.quota.0,
            self.quota.1,
            self.concurrency,
            latencies.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_parse_and_are_drawn_around_their_median_with_their_tail() {
        assert_eq!(
            parse_latency("connections=6ms:30ms").unwrap(),
            (Call::Connections, Latency::ms(6, 30))
        );
        assert_eq!(
            parse_latency("queue=40ms").unwrap(),
            (Call::Queue, Latency::ms(40, 40))
        );
        for bad in ["connections", "sqs=1ms", "invoke=5ms:1ms", "dynamodb=fast"] {
            assert!(parse_latency(bad).is_err(), "{bad}");
        }
        let e = parse_latency("sqs=1ms").unwrap_err();
        assert!(e.contains("connections, invoke, queue, dynamodb"), "{e}");

        let l = Latency::ms(10, 50);
        let mut draws: Vec<Duration> = (0..20_000).map(|_| l.sample()).collect();
        draws.sort();
        let at = |q: f64| draws[(q * draws.len() as f64) as usize].as_secs_f64() * 1000.0;
        assert!((9.0..11.0).contains(&at(0.5)), "median {}", at(0.5));
        assert!((40.0..62.0).contains(&at(0.99)), "p99 {}", at(0.99));
        assert_eq!(Latency::ms(7, 7).sample(), Duration::from_millis(7));
        assert_eq!(Latency::ms(0, 0).sample(), Duration::ZERO);
    }

    #[test]
    fn overrides_replace_the_defaults_one_call_at_a_time() {
        let like = LikeAws::new(
            (10_000, 5_000),
            1_000,
            (3_000, 1_000),
            &[(Call::Invoke, Latency::ms(1, 2))],
        );
        assert_eq!(like.latency(Call::Invoke), Latency::ms(1, 2));
        assert_eq!(
            like.latency(Call::Dynamodb),
            default_latency(Call::Dynamodb)
        );
    }
}
