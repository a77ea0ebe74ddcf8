//! `access_logs:`: the stage's access log, and the account-level role API Gateway writes it
//! with.

use super::*;

/// API Gateway writes a WebSocket stage's access log through one CloudWatch Logs role set in
/// the account's API Gateway settings of the region ("Set up CloudWatch logging for REST APIs
/// in API Gateway": the role is an account-level setting; without it CreateStage/UpdateStage
/// answer "CloudWatch Logs role ARN must be set in account settings to enable logging").
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessLogsConfig {
    /// Days the access log keeps its lines; default: `log_retention_days`.
    #[serde(default)]
    pub retention_days: Option<u32>,
    /// The line API Gateway writes, with `$context` variables; default: one JSON
    /// object per line with the request and connection ids, event, route, status, source IP,
    /// integration and authorizer latency and errors.
    #[serde(default)]
    pub format: Option<String>,
    /// The account's API Gateway CloudWatch role: absent, the one the account has (an error
    /// when it has none); `create`, that one or else a role wsctl creates and sets; a role ARN,
    /// that role, set in the account's settings.
    #[serde(default)]
    pub account_role: Option<String>,
}

/// JSON, one object per line: who (connection, source IP), what (event, route), and how it
/// went (status, integration and authorizer latency, errors). Every variable is one API
/// Gateway documents for WebSocket APIs ("Configure logging for WebSocket APIs in API
/// Gateway").
pub const ACCESS_LOG_FORMAT: &str = concat!(
    r#"{"requestId":"$context.requestId","#,
    r#""extendedRequestId":"$context.extendedRequestId","#,
    r#""connectionId":"$context.connectionId","#,
    r#""eventType":"$context.eventType","#,
    r#""routeKey":"$context.routeKey","#,
    r#""status":"$context.status","#,
    r#""requestTime":"$context.requestTimeEpoch","#,
    r#""sourceIp":"$context.identity.sourceIp","#,
    r#""integrationLatency":"$context.integrationLatency","#,
    r#""authorizerLatency":"$context.authorizer.latency","#,
    r#""error":"$context.error.message","#,
    r#""authorizerError":"$context.authorizer.error"}"#
);

/// What `access_logs.account_role` asks of the account's API Gateway settings.
#[derive(Debug, Clone, PartialEq)]
pub enum AccountRole<'a> {
    /// Whatever role the account has; none is an error.
    Existing,
    /// The account's role, or one wsctl creates when it has none.
    Create,
    /// This role.
    Arn(&'a str),
}

impl AccessLogsConfig {
    pub fn account_role(&self) -> AccountRole<'_> {
        match self.account_role.as_deref() {
            None => AccountRole::Existing,
            Some("create") => AccountRole::Create,
            Some(arn) => AccountRole::Arn(arn),
        }
    }

    pub fn format(&self) -> &str {
        self.format.as_deref().unwrap_or(ACCESS_LOG_FORMAT)
    }

    pub(super) fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut bad = |field: &str, message: String| {
            out.push(Problem {
                field: format!("access_logs.{field}"),
                message,
            })
        };
        if let Some(days) = self.retention_days
            && !LOG_RETENTION_DAYS.contains(&days)
        {
            bad(
                "retention_days",
                format!(
                    "{days} is not a CloudWatch Logs retention; allowed: {}",
                    list(LOG_RETENTION_DAYS.iter())
                ),
            );
        }
        if let Some(format) = &self.format {
            // API Gateway refuses a format without a request id, and one line is one event.
            if !format.contains("$context.requestId")
                && !format.contains("$context.extendedRequestId")
            {
                bad(
                    "format",
                    "must contain `$context.requestId` or `$context.extendedRequestId` (API Gateway's rule); leave it out for wsctl's JSON line".into(),
                );
            }
            if format.len() > ACCESS_LOG_FORMAT_BYTES {
                bad(
                    "format",
                    format!(
                        "is {} bytes; API Gateway's access log template size is at most 3 KB ({ACCESS_LOG_FORMAT_BYTES} bytes, not adjustable): leave out some fields",
                        format.len()
                    ),
                );
            }
            if format.contains('\n') || format.contains('\r') {
                bad(
                    "format",
                    "must be one line: each access log event is one line".into(),
                );
            }
        }
        if let AccountRole::Arn(arn) = self.account_role() {
            // arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME
            let parts: Vec<&str> = arn.splitn(6, ':').collect();
            let ok = parts.len() == 6
                && parts[0] == "arn"
                && parts[1].starts_with("aws")
                && parts[2] == "iam"
                && parts[3].is_empty()
                && parts[4].len() == 12
                && parts[4].chars().all(|c| c.is_ascii_digit())
                && parts[5]
                    .strip_prefix("role/")
                    .is_some_and(|r| !r.is_empty() && !r.ends_with('/'));
            if !ok {
                bad(
                    "account_role",
                    format!(
                        "`{arn}` is neither `create` nor an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME): leave it out to use the role the account's API Gateway settings already have, write `create` to let wsctl create one when there is none, or name a role API Gateway may assume"
                    ),
                );
            }
        }
        out
    }
}
