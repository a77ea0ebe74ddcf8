//! `alarms:`: CloudWatch alarms on the stage's health, and who they tell.

use super::*;

/// Each alarm watches one figure over [`AlarmsConfig::period_minutes`] and goes off at its
/// threshold or above; `null` turns it off. An alarm summing several functions or tables is
/// one alarm with metric math, billed per metric it reads ($0.10 a month each, "Amazon
/// CloudWatch pricing").
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlarmsConfig {
    /// An SNS topic to notify, in the stack's region: `arn:aws:sns:REGION:ACCOUNT:NAME`.
    #[serde(default)]
    pub topic: Option<String>,
    /// Addresses subscribed to a topic the stack creates (`STACK-STAGE-alarms`); each must
    /// confirm the subscription from the mail SNS sends.
    #[serde(default)]
    pub emails: Vec<String>,
    /// Minutes each figure is summed over: 1, 5, 10, 15, 30 or 60.
    #[serde(default = "default_period")]
    pub period_minutes: u32,
    /// Consecutive periods at the threshold before the alarm goes off.
    #[serde(default = "default_periods")]
    pub periods: u32,
    /// Invocations that failed, all functions together (Lambda `Errors`).
    #[serde(default = "some::<1>")]
    pub function_errors: Option<f64>,
    /// Invocations Lambda refused for concurrency, all functions together (`Throttles`).
    #[serde(default = "some::<1>")]
    pub function_throttles: Option<f64>,
    /// Messages and connects whose function could not be reached or failed, as API Gateway
    /// counts them (`IntegrationError`).
    #[serde(default = "some::<10>")]
    pub integration_errors: Option<f64>,
    /// Reads and writes DynamoDB throttled, all tables together (`ReadThrottleEvents` and
    /// `WriteThrottleEvents`).
    #[serde(default = "some::<1>")]
    pub table_throttles: Option<f64>,
    /// Posts to connections that failed other than gone (the functions' `FailedPosts`).
    #[serde(default = "some::<10>")]
    pub failed_posts: Option<f64>,
    /// Handshakes refused by the authorizer, whatever the reason (`HandshakesRefused`): a
    /// flood of bad tokens, or a secret rotated without the clients.
    #[serde(default = "some::<100>")]
    pub refused_handshakes: Option<f64>,
    /// The longest fan-out, in milliseconds (`FanoutDuration`, its maximum).
    #[serde(default = "some::<10000>")]
    pub fanout_ms: Option<f64>,
}

fn default_period() -> u32 {
    5
}

fn default_periods() -> u32 {
    1
}

fn some<const N: u32>() -> Option<f64> {
    Some(N as f64)
}

/// The periods CloudWatch's alarms take at standard resolution, in minutes (a period is 10,
/// 30 or a multiple of 60 seconds, "PutMetricAlarm", CloudWatch API Reference).
pub const ALARM_PERIODS: &[u32] = &[1, 5, 10, 15, 30, 60];

/// One alarm of the section turned on: its key and threshold.
pub struct AlarmSetting {
    pub key: &'static str,
    pub threshold: f64,
}

impl AlarmsConfig {
    fn settings(&self) -> [(&'static str, Option<f64>); 7] {
        [
            ("function_errors", self.function_errors),
            ("function_throttles", self.function_throttles),
            ("integration_errors", self.integration_errors),
            ("table_throttles", self.table_throttles),
            ("failed_posts", self.failed_posts),
            ("refused_handshakes", self.refused_handshakes),
            ("fanout_ms", self.fanout_ms),
        ]
    }

    /// The alarms turned on, by key.
    pub fn enabled(&self) -> Vec<AlarmSetting> {
        self.settings()
            .into_iter()
            .filter_map(|(key, t)| t.map(|threshold| AlarmSetting { key, threshold }))
            .collect()
    }

    pub(super) fn problems(&self, region: Option<&str>) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut bad = |field: &str, message: String| {
            out.push(Problem {
                field: format!("alarms.{field}"),
                message,
            })
        };
        if let Some(topic) = &self.topic {
            match topic_region(topic) {
                None => bad(
                    "topic",
                    format!(
                        "`{topic}` is not an SNS topic's ARN (arn:aws:sns:REGION:ACCOUNT:NAME): name an existing topic, or list `emails:` for a topic the stack creates"
                    ),
                ),
                Some(r) if region.is_some_and(|own| own != r) => bad(
                    "topic",
                    format!(
                        "the topic is in {r} but the stack in {}: an alarm notifies a topic of its own region only; make a topic in {} or leave `topic` out and list `emails:`",
                        region.unwrap_or_default(),
                        region.unwrap_or_default()
                    ),
                ),
                Some(_) => {}
            }
        }
        for (i, email) in self.emails.iter().enumerate() {
            if !is_email(email) {
                bad(
                    &format!("emails[{i}]"),
                    format!("`{email}` is not an email address (name@domain)"),
                );
            }
        }
        if !ALARM_PERIODS.contains(&self.period_minutes) {
            bad(
                "period_minutes",
                format!(
                    "{} is not a period an alarm takes; allowed: {}",
                    self.period_minutes,
                    list(ALARM_PERIODS.iter())
                ),
            );
        }
        // EvaluationPeriods × Period is at most one day ("PutMetricAlarm").
        if self.periods == 0 || self.periods * self.period_minutes > 24 * 60 {
            bad(
                "periods",
                format!(
                    "{} is out of range: 1 to {} periods of {} minutes (CloudWatch evaluates at most one day)",
                    self.periods,
                    24 * 60 / self.period_minutes.max(1),
                    self.period_minutes
                ),
            );
        }
        for setting in self.settings() {
            if let (key, Some(t)) = setting
                && !(t.is_finite() && t > 0.0)
            {
                bad(
                    key,
                    format!(
                        "{t} is not a threshold: use a number above 0, or `null` to turn the alarm off"
                    ),
                );
            }
        }
        out
    }
}

/// The region of an SNS topic's ARN, if it is one.
fn topic_region(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", partition, "sns", region, account, name]
            if partition.starts_with("aws")
                && !region.is_empty()
                && account.len() == 12
                && account.chars().all(|c| c.is_ascii_digit())
                && !name.is_empty()
                && name.len() <= 256
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.') =>
        {
            Some(region)
        }
        _ => None,
    }
}

fn is_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((user, domain)) => {
            !user.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !s.chars().any(|c| c.is_whitespace() || c.is_control())
                && s.len() <= 254
        }
        None => false,
    }
}
