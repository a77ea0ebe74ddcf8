//! What a run would cost on AWS, from what `wsctl dev` metered (`/_wsctl/stats`), at us-east-1
//! list prices (each overridable with `--price NAME=USD`):
//! - API Gateway WebSocket: $1.00 per million messages (metered in 32 KB steps) and $0.25 per
//!   million connection-minutes ("Amazon API Gateway pricing", WebSocket APIs, first billion);
//! - Lambda: $0.20 per million requests and $0.0000133334 per GB-second on arm64, the
//!   functions' default architecture ($0.0000166667 on x86_64) ("AWS Lambda pricing", first
//!   tier);
//! - DynamoDB on-demand: $0.125 per million read request units and $0.625 per million write
//!   request units ("Amazon DynamoDB pricing for on-demand capacity", Standard table class,
//!   since the November 2024 reduction), as `wsctl dev --like-aws` counts them; without it the
//!   total leaves them out, and says so.

use serde::Serialize;
use serde_json::Value;

/// A price: its name for `--price`, what it is for, and the default in US dollars.
const PRICES: [(&str, &str, f64); 6] = [
    ("message", "API Gateway messages, per million", 1.00),
    (
        "connection-minute",
        "API Gateway connection-minutes, per million",
        0.25,
    ),
    ("lambda-request", "Lambda requests, per million", 0.20),
    ("gb-second", "Lambda GB-seconds (arm64)", 0.000_013_333_4),
    (
        "read-unit",
        "DynamoDB read request units, per million",
        0.125,
    ),
    (
        "write-unit",
        "DynamoDB write request units, per million",
        0.625,
    ),
];

/// `--price NAME=USD`.
pub fn parse_price(s: &str) -> Result<(String, f64), String> {
    let names = || {
        PRICES
            .iter()
            .map(|(n, what, usd)| format!("{n} ({what}, default ${usd})"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let (name, usd) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: write NAME=USD, e.g. gb-second=0.0000166667"))?;
    if !PRICES.iter().any(|(n, _, _)| *n == name) {
        return Err(format!("{name:?} is not a price; use one of: {}", names()));
    }
    let usd: f64 = usd
        .parse()
        .ok()
        .filter(|u: &f64| u.is_finite() && *u >= 0.0)
        .ok_or_else(|| format!("{usd:?} is not a price in US dollars"))?;
    Ok((name.to_string(), usd))
}

#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub item: String,
    pub quantity: f64,
    /// US dollars per unit of `quantity`.
    pub unit_usd: f64,
    pub usd: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Bill {
    pub lines: Vec<Line>,
    pub total_usd: f64,
    /// The total spread over every delivery the run made (real and virtual subscribers).
    pub per_million_deliveries_usd: Option<f64>,
    /// The most invocations in flight at once: on Lambda, execution environments.
    pub peak_lambda_concurrency: u64,
    /// Invocations refused or kept waiting for Lambda concurrency.
    pub lambda_throttled: u64,
    /// DynamoDB calls refused for a partition's throughput (under `--like-aws`).
    pub dynamodb_throttled: u64,
    /// What the total leaves out, if anything.
    pub not_counted: Option<&'static str>,
}

/// The bill for `stats`, at the default prices with `overrides`.
pub fn bill(stats: &Value, overrides: &[(String, f64)], deliveries: u64) -> Bill {
    let price = |name: &str| {
        overrides
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, usd)| *usd)
            .or_else(|| PRICES.iter().find(|(n, _, _)| *n == name).map(|p| p.2))
            .unwrap_or_default()
    };
    let num = |v: &Value| v.as_f64().unwrap_or_default();
    let functions = stats["lambda"]["functions"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let requests: f64 = functions.values().map(|f| num(&f["requests"])).sum();
    let gb_seconds: f64 = functions.values().map(|f| num(&f["gb_seconds"])).sum();
    let line = |item: &str, quantity: f64, unit_usd: f64| Line {
        item: item.to_string(),
        quantity,
        unit_usd,
        usd: quantity * unit_usd,
    };
    let mut lines = vec![
        line(
            "API Gateway messages (32 KB steps)",
            num(&stats["api_gateway"]["messages"]),
            price("message") / 1e6,
        ),
        line(
            "API Gateway connection-minutes",
            num(&stats["api_gateway"]["connection_minutes"]),
            price("connection-minute") / 1e6,
        ),
        line("Lambda requests", requests, price("lambda-request") / 1e6),
        line("Lambda GB-seconds", gb_seconds, price("gb-second")),
    ];
    let dynamodb = &stats["dynamodb"];
    if dynamodb.is_object() {
        lines.push(line(
            "DynamoDB read request units",
            num(&dynamodb["read_units"]),
            price("read-unit") / 1e6,
        ));
        lines.push(line(
            "DynamoDB write request units",
            num(&dynamodb["write_units"]),
            price("write-unit") / 1e6,
        ));
    }
    let total_usd = lines.iter().map(|l| l.usd).sum();
    Bill {
        lines,
        total_usd,
        per_million_deliveries_usd: (deliveries > 0).then(|| total_usd / deliveries as f64 * 1e6),
        peak_lambda_concurrency: stats["lambda"]["peak_concurrency"].as_u64().unwrap_or(0),
        lambda_throttled: stats["lambda"]["throttled"].as_u64().unwrap_or(0),
        dynamodb_throttled: dynamodb["throttled"].as_u64().unwrap_or(0),
        not_counted: (!dynamodb.is_object())
            .then_some("DynamoDB request units (counted by wsctl dev --like-aws)"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_run_is_priced_line_by_line() {
        let stats = json!({
            "lambda": {"peak_concurrency": 7, "throttled": 0, "functions": {
                "chat-dev-publish": {"requests": 1_000_000, "gb_seconds": 1000.0},
                "chat-dev-message": {"requests": 1_000_000, "gb_seconds": 500.0},
            }},
            "api_gateway": {"messages": 3_000_000, "connection_minutes": 4_000_000.0},
        });
        let b = bill(&stats, &[], 2_000_000);
        let usd: Vec<f64> = b
            .lines
            .iter()
            .map(|l| (l.usd * 1e4).round() / 1e4)
            .collect();
        assert_eq!(usd, vec![3.0, 1.0, 0.4, 0.02]);
        assert!((b.total_usd - 4.42).abs() < 1e-3, "{}", b.total_usd);
        assert!((b.per_million_deliveries_usd.unwrap() - 2.21).abs() < 1e-3);
        assert_eq!(b.peak_lambda_concurrency, 7);
        let x86 = bill(&stats, &[("gb-second".into(), 0.000_016_666_7)], 0);
        assert!((x86.lines[3].usd - 0.025).abs() < 1e-6);
        assert_eq!(x86.per_million_deliveries_usd, None);
        assert!(x86.not_counted.is_some());

        let mut metered = stats.clone();
        metered["dynamodb"] =
            json!({"read_units": 2_000_000.0, "write_units": 1_000_000.0, "throttled": 3});
        let b = bill(&metered, &[], 0);
        assert_eq!(b.lines.len(), 6);
        assert!((b.lines[4].usd - 0.25).abs() < 1e-9 && (b.lines[5].usd - 0.625).abs() < 1e-9);
        assert!((b.total_usd - 5.295).abs() < 1e-3, "{}", b.total_usd);
        assert_eq!((b.dynamodb_throttled, b.not_counted), (3, None));
        assert!(parse_price("gb-second=0.0000166667").is_ok());
        for bad in ["gb-second", "dynamo=1", "message=-1", "message=free"] {
            assert!(parse_price(bad).is_err(), "{bad}");
        }
    }
}
