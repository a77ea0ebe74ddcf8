//! `domain:`: a custom domain the stage is served under.

use super::*;

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DomainConfig {
    /// The host clients connect to, e.g. `ws.example.com`.
    pub name: String,
    /// An ACM certificate for `name`, issued in the stack's region (WebSocket APIs take only
    /// regional custom domains).
    pub certificate_arn: String,
    /// The API mapping key: the stage is served at `wss://NAME/PATH`. Default: the stage's name,
    /// so the URLs keep the stage path (`""` maps the stage at the root).
    #[serde(default)]
    pub path: Option<String>,
}

impl DomainConfig {
    /// The API mapping key the stage is served under.
    pub fn mapping_key<'a>(&'a self, stage: &'a str) -> &'a str {
        self.path.as_deref().unwrap_or(stage)
    }
}

impl DomainConfig {
    pub(super) fn problems(&self, region: Option<&str>) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut bad = |field: &str, message: String| {
            out.push(Problem {
                field: format!("domain.{field}"),
                message,
            })
        };
        // A DNS host name: labels of 1-63 letters, digits or `-` (not at either end), at most
        // 253 characters, at least two labels. API Gateway stores it in lower case.
        let name = &self.name;
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        };
        if name.len() > 253 || name.split('.').count() < 2 || !name.split('.').all(label_ok) {
            bad(
                "name",
                format!(
                    "`{name}` is not a host name: use lower-case labels of letters, digits and `-` separated by dots, e.g. `ws.example.com`"
                ),
            );
        }
        // arn:PARTITION:acm:REGION:ACCOUNT:certificate/ID
        let parts: Vec<&str> = self.certificate_arn.splitn(6, ':').collect();
        let arn_ok = parts.len() == 6
            && parts[0] == "arn"
            && parts[1].starts_with("aws")
            && parts[2] == "acm"
            && !parts[3].is_empty()
            && parts[4].len() == 12
            && parts[4].chars().all(|c| c.is_ascii_digit())
            && parts[5]
                .strip_prefix("certificate/")
                .is_some_and(|id| !id.is_empty());
        if !arn_ok {
            bad(
                "certificate_arn",
                format!(
                    "`{}` is not an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID); request one for `{name}` in AWS Certificate Manager",
                    self.certificate_arn
                ),
            );
        } else if let Some(region) = region
            && parts[3] != region
        {
            bad(
                "certificate_arn",
                format!(
                    "the certificate is in {}, the stack in {region}: a WebSocket API takes a regional certificate from its own region; request or import one there",
                    parts[3]
                ),
            );
        }
        // CreateApiMapping: letters, digits and `$-_.+!*'()`, `/` between levels, at most 300.
        if let Some(path) = &self.path {
            let ok = path.len() <= 300
                && !path.starts_with('/')
                && !path.ends_with('/')
                && !path.contains("//")
                && path
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "$-_.+!*'()/".contains(c));
            if !ok {
                bad(
                    "path",
                    format!(
                        "`{path}` is not an API mapping path: at most 300 letters, digits and `$-_.+!*'()`, levels separated by single `/`, none at either end; `\"\"` serves the stage at the root"
                    ),
                );
            }
        }
        out
    }
}
