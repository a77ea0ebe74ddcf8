//! The `$connect` REQUEST authorizer, as API Gateway runs it: a handshake without its identity
//! sources is refused unseen (401), otherwise the function is called and its IAM policy must
//! allow `execute-api:Invoke` on the connect ARN; its context then rides along every later event.

use std::time::Instant;

use hyper::{Response, StatusCode};
use serde_json::{Value, json};

use super::events::{self, Handshake, Origin};
use super::http::{Body, message};
use super::integration::{Failed, Integration};
use super::runtime::Failure;

/// The `$connect` REQUEST authorizer.
#[derive(Clone)]
pub struct Authorizer {
    pub function: Integration,
    /// `route.request.querystring.NAME` / `route.request.header.NAME`.
    pub identity_source: Vec<String>,
}

impl Authorizer {
    /// `Ok(context)` to go on, `Err(response)` to refuse the handshake with. `arn` is the
    /// `methodArn` of the API's `$connect`; `note` logs a failure of the function itself.
    pub async fn authorize(
        &self,
        origin: &Origin,
        hs: &Handshake,
        arn: &str,
        note: impl Fn(&str),
    ) -> Result<Value, Response<Body>> {
        if self.identity_source.iter().any(|s| identity_missing(s, hs)) {
            return Err(message(StatusCode::UNAUTHORIZED, "Unauthorized"));
        }
        let started = Instant::now();
        let mut call = self
            .function
            .call(|stamp| events::authorizer(origin, hs, arn, stamp));
        let doc = match call.answer().await {
            Ok(doc) => doc,
            Err(Failed::Function(Failure::Handled { message: m, .. })) if m == "Unauthorized" => {
                return Err(message(StatusCode::UNAUTHORIZED, "Unauthorized"));
            }
            Err(failed) => {
                if let Failed::Function(f) = &failed {
                    note(&format!(
                        "authorizer failed for {} (request {}): {f}",
                        origin.connection_id, call.request_id
                    ));
                }
                return Err(message(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal server error",
                ));
            }
        };
        if !allows(doc.get("policyDocument").unwrap_or(&Value::Null), arn) {
            return Err(message(StatusCode::FORBIDDEN, "Forbidden"));
        }
        // The context reaches later events flat, next to principalId and integrationLatency.
        let mut context = match doc.get("context") {
            Some(Value::Object(m)) => m.clone(),
            _ => Default::default(),
        };
        context.insert(
            "principalId".into(),
            doc.get("principalId").cloned().unwrap_or(json!("")),
        );
        context.insert(
            "integrationLatency".into(),
            json!(started.elapsed().as_millis() as u64),
        );
        Ok(Value::Object(context))
    }
}

/// Whether the handshake lacks what an identity source names (API Gateway then answers 401
/// without calling the authorizer). Stage-variable and context sources are not emulated.
fn identity_missing(source: &str, hs: &Handshake) -> bool {
    let source = source.trim();
    let found = if let Some(name) = source.strip_prefix("route.request.querystring.") {
        hs.query.iter().rev().find(|(k, _)| k == name)
    } else if let Some(name) = source.strip_prefix("route.request.header.") {
        hs.headers
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
    } else {
        return false;
    };
    found.is_none_or(|(_, v)| v.is_empty())
}

/// Whether an authorizer policy allows `execute-api:Invoke` on `arn`.
fn allows(policy: &Value, arn: &str) -> bool {
    let as_list = |v: Option<&Value>| -> Vec<String> {
        match v {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            _ => vec![],
        }
    };
    let statements = match policy.get("Statement") {
        Some(Value::Array(a)) => a.clone(),
        Some(s @ Value::Object(_)) => vec![s.clone()],
        _ => vec![],
    };
    let matching = |s: &Value| {
        let actions = as_list(s.get("Action"));
        let resources = as_list(s.get("Resource"));
        actions
            .iter()
            .any(|a| wsctl_functions::auth::glob_match(a, "execute-api:Invoke"))
            && resources
                .iter()
                .any(|r| wsctl_functions::auth::glob_match(r, arn))
    };
    let effect = |s: &Value| {
        s.get("Effect")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let denied = statements
        .iter()
        .any(|s| effect(s) == "Deny" && matching(s));
    let allowed = statements
        .iter()
        .any(|s| effect(s) == "Allow" && matching(s));
    allowed && !denied
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        let arn = "arn:aws:execute-api:us-east-1:123456789012:abc/dev/$connect";
        let allow = json!({"Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": ["arn:aws:execute-api:us-east-1:123456789012:abc/*"]}]});
        let deny = json!({"Statement": [{"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": arn}]});
        let other = json!({"Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": "arn:aws:execute-api:us-east-1:123456789012:zzz/dev/$connect"}]});
        assert!(allows(&allow, arn));
        assert!(!allows(&deny, arn));
        assert!(!allows(&other, arn));
        assert!(!allows(&Value::Null, arn));
    }
}
