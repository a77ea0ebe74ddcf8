//! IAM for the functions `wsctl dev` runs. moto accepts every call, so a function whose role
//! lacks a grant would work here and fail on AWS. Each function gets its own credentials (as
//! Lambda hands each function its role's session), and every call the gateway sees signed with
//! them is evaluated against that role's policies as deployed, before it is served:
//!
//! - DynamoDB item and table calls (each table of a batch or a transaction, and the index a
//!   query names), as the DynamoDB Developer Guide's "DynamoDB API permissions reference" lists
//!   them: a transaction needs the action of each of its parts (`dynamodb:PutItem`, …);
//! - SSM's parameter reads; Lambda's Invoke; `@connections` (`execute-api:ManageConnections` on
//!   `…:api/stage/METHOD/@connections/id`, API Gateway's "Use IAM authorization" for WebSocket
//!   APIs).
//!
//! Evaluation follows the IAM User Guide's "Policy evaluation logic" for one account with
//! identity-based policies only: an explicit `Deny` wins, then an `Allow`, else the implicit deny.
//! A statement with a `Condition` is not evaluated here; to stay on the safe side, it never
//! allows and always denies. Calls to other services pass unchecked.

use std::collections::HashMap;

use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use rand::Rng;
use serde_json::{Value, json};
use wsctl_functions::partition::Partition;

use super::http::{Body, json_response};

/// Who a function's calls act as: its role's session, as Lambda names it.
pub struct Principal {
    /// `arn:aws:sts::ACCOUNT:assumed-role/ROLE/FUNCTION`.
    pub arn: String,
    /// Its role's statements, read once: every `@connections` post of a fan-out is checked.
    statements: Vec<Statement>,
}

/// One policy statement, as evaluation needs it.
#[derive(Debug)]
struct Statement {
    effect: Effect,
    /// A `Condition` this evaluator does not read.
    conditional: bool,
    /// Lower-cased: action names are case-insensitive; resource ARNs are not.
    actions: Patterns,
    resources: Patterns,
}

#[derive(Debug, PartialEq)]
enum Effect {
    Allow,
    Deny,
    /// Neither: the statement has no effect.
    Other,
}

/// `Key` (any pattern matches), `NotKey` (none does), or neither (nothing matches).
#[derive(Debug)]
enum Patterns {
    Any(Vec<String>),
    NoneOf(Vec<String>),
    Absent,
}

/// The functions' credentials, by access key id.
#[derive(Default)]
pub struct Principals {
    by_key: HashMap<String, Principal>,
}

/// One action on one resource, as IAM evaluates a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    pub action: String,
    pub resource: String,
}

/// Which API refused, for the shape of its error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Service {
    DynamoDb,
    Ssm,
    Lambda,
    ExecuteApi,
}

/// A refused call: AWS's message, naming the principal, the action, the resource and why.
#[derive(Debug, PartialEq)]
pub struct Denied(pub String);

#[derive(Debug, PartialEq)]
enum Decision {
    Allow,
    ImplicitDeny,
    ExplicitDeny,
}

impl Principals {
    /// New credentials for `function`, acting with role `role` (its name) and its `policies`;
    /// the variables Lambda sets for them.
    pub fn issue(
        &mut self,
        function: &str,
        role: &str,
        policies: Vec<Value>,
        region: &str,
        account: &str,
    ) -> Vec<(String, String)> {
        let arn = Partition::of(region).arn(
            "sts",
            "",
            account,
            &format!("assumed-role/{role}/{function}"),
        );
        // Temporary credentials start with ASIA, as the ones Lambda gives do.
        let key = format!("ASIA{}", random(16, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"));
        let statements = policies.iter().flat_map(statements).collect();
        self.by_key
            .insert(key.clone(), Principal { arn, statements });
        let chars = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        vec![
            ("AWS_ACCESS_KEY_ID".into(), key),
            ("AWS_SECRET_ACCESS_KEY".into(), random(40, chars)),
            ("AWS_SESSION_TOKEN".into(), random(96, chars)),
        ]
    }

    /// The function whose credentials signed a request (SigV4's `Credential=KEY/…`).
    pub fn signer(&self, headers: &HeaderMap) -> Option<&Principal> {
        let auth = headers.get("authorization")?.to_str().ok()?;
        let key = auth.split("Credential=").nth(1)?.split('/').next()?;
        self.by_key.get(key)
    }
}

fn random(n: usize, chars: &[u8]) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| chars[rng.random_range(0..chars.len())] as char)
        .collect()
}

impl Principal {
    /// The first ask the role does not allow, with AWS's message for it.
    pub fn check(&self, asks: &[Ask]) -> Result<(), Denied> {
        for ask in asks {
            let why = match self.decide(ask) {
                Decision::Allow => continue,
                Decision::ImplicitDeny => format!(
                    "because no identity-based policy allows the {} action",
                    ask.action
                ),
                Decision::ExplicitDeny => {
                    "with an explicit deny in an identity-based policy".into()
                }
            };
            return Err(Denied(format!(
                "User: {} is not authorized to perform: {} on resource: {} {why}",
                self.arn, ask.action, ask.resource
            )));
        }
        Ok(())
    }

    fn decide(&self, ask: &Ask) -> Decision {
        let action = ask.action.to_ascii_lowercase();
        let mut allowed = false;
        for statement in &self.statements {
            if !(statement.actions.cover(&action) && statement.resources.cover(&ask.resource)) {
                continue;
            }
            match statement.effect {
                Effect::Deny => return Decision::ExplicitDeny,
                Effect::Allow if !statement.conditional => allowed = true,
                _ => {}
            }
        }
        if allowed {
            Decision::Allow
        } else {
            Decision::ImplicitDeny
        }
    }
}

/// A policy's statements: `Statement` is one object or a list of them.
fn statements(policy: &Value) -> Vec<Statement> {
    let list = match policy.get("Statement") {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => Vec::new(),
    };
    list.into_iter()
        .map(|s| Statement {
            effect: match s.get("Effect").and_then(Value::as_str) {
                Some("Allow") => Effect::Allow,
                Some("Deny") => Effect::Deny,
                _ => Effect::Other,
            },
            conditional: s
                .get("Condition")
                .is_some_and(|c| c.as_object().is_none_or(|o| !o.is_empty())),
            actions: Patterns::of(s, "Action", |p| p.to_ascii_lowercase()),
            resources: Patterns::of(s, "Resource", str::to_string),
        })
        .collect()
}

impl Patterns {
    fn of(statement: &Value, key: &str, norm: fn(&str) -> String) -> Patterns {
        // A string or a list of strings; anything else matches nothing.
        let list = |v: &Value| match v {
            Value::String(s) => vec![norm(s)],
            Value::Array(list) => list.iter().filter_map(Value::as_str).map(norm).collect(),
            _ => Vec::new(),
        };
        match (
            statement.get(key),
            statement.get(format!("Not{key}").as_str()),
        ) {
            (Some(v), _) => Patterns::Any(list(v)),
            (None, Some(v)) => Patterns::NoneOf(list(v)),
            (None, None) => Patterns::Absent,
        }
    }

    fn cover(&self, text: &str) -> bool {
        match self {
            Patterns::Any(ps) => ps.iter().any(|p| glob(p, text)),
            Patterns::NoneOf(ps) => !ps.iter().any(|p| glob(p, text)),
            Patterns::Absent => false,
        }
    }
}

/// IAM's wildcards: `*` any run of characters (`/` and `:` included), `?` any one. Walks the
/// bytes, stepping whole characters where a wildcard takes one.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let width = |i: usize| match t[i] {
        b if b < 0x80 => 1,
        b if b >= 0xF0 => 4,
        b if b >= 0xE0 => 3,
        _ => 2,
    };
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == b'?' {
            pi += 1;
            ti += width(ti);
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            let next = st + width(st);
            pi = sp + 1;
            ti = next;
            star = Some((sp, next));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Where the stack lives, to build the ARNs of what a call touches.
pub struct Scope<'a> {
    pub region: &'a str,
    pub account: &'a str,
}

impl Scope<'_> {
    fn arn(&self, service: &str, resource: &str) -> String {
        Partition::of(self.region).arn(service, self.region, self.account, resource)
    }

    /// `@connections/{id}` of `api`'s `stage`, by `method`.
    pub fn manage_connections(&self, api: &str, stage: &str, method: &str, id: &str) -> Vec<Ask> {
        vec![Ask {
            action: "execute-api:ManageConnections".into(),
            resource: self.arn(
                "execute-api",
                &format!("{api}/{stage}/{method}/@connections/{id}"),
            ),
        }]
    }

    /// Lambda's Invoke of `function` (a name), at `qualifier` if one is named.
    pub fn invoke(&self, function: &str, qualifier: Option<&str>) -> Vec<Ask> {
        let resource = match qualifier {
            Some(q) => format!("function:{function}:{q}"),
            None => format!("function:{function}"),
        };
        vec![Ask {
            action: "lambda:InvokeFunction".into(),
            resource: self.arn("lambda", &resource),
        }]
    }

    /// A JSON-protocol call (`X-Amz-Target`) to DynamoDB or SSM; `None` for other services.
    pub fn json_call(&self, target: &str, body: &[u8]) -> Option<(Service, Vec<Ask>)> {
        let (prefix, op) = target.split_once('.')?;
        let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        match prefix {
            "DynamoDB_20120810" => Some((Service::DynamoDb, self.dynamodb(op, &body))),
            "AmazonSSM" => Some((Service::Ssm, self.ssm(op, &body))),
            _ => None,
        }
    }

    fn table(&self, name: &str) -> String {
        // DynamoDB takes a table's ARN wherever it takes its name.
        if name.starts_with("arn:") {
            name.to_string()
        } else {
            self.arn("dynamodb", &format!("table/{name}"))
        }
    }

    fn dynamodb(&self, op: &str, body: &Value) -> Vec<Ask> {
        let ask = |action: &str, resource: String| Ask {
            action: format!("dynamodb:{action}"),
            resource,
        };
        let str_at = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
        match op {
            "BatchGetItem" | "BatchWriteItem" => body
                .get("RequestItems")
                .and_then(Value::as_object)
                .map(|tables| {
                    tables
                        .keys()
                        .map(|t| ask(op, self.table(t)))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default(),
            "TransactWriteItems" | "TransactGetItems" => body
                .get("TransactItems")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_object)
                .flat_map(|item| item.iter())
                .map(|(part, detail)| {
                    let action = match part.as_str() {
                        "Put" => "PutItem",
                        "Update" => "UpdateItem",
                        "Delete" => "DeleteItem",
                        "ConditionCheck" => "ConditionCheckItem",
                        "Get" => "GetItem",
                        other => other,
                    };
                    let table = str_at(detail, "TableName").unwrap_or_default();
                    ask(action, self.table(&table))
                })
                .collect(),
            _ => {
                let Some(table) = str_at(body, "TableName") else {
                    return vec![ask(op, "*".into())];
                };
                let mut resource = self.table(&table);
                if let Some(index) = str_at(body, "IndexName") {
                    resource = format!("{resource}/index/{index}");
                }
                vec![ask(op, resource)]
            }
        }
    }

    fn ssm(&self, op: &str, body: &Value) -> Vec<Ask> {
        let parameter = |name: &str| {
            self.arn(
                "ssm",
                &format!("parameter/{}", name.trim_start_matches('/')),
            )
        };
        let names: Vec<String> = match (body.get("Name"), body.get("Names"), body.get("Path")) {
            (Some(Value::String(n)), _, _) => vec![parameter(n)],
            (_, Some(Value::Array(ns)), _) => {
                ns.iter().filter_map(Value::as_str).map(parameter).collect()
            }
            (_, _, Some(Value::String(p))) => vec![parameter(p)],
            _ => vec!["*".into()],
        };
        names
            .into_iter()
            .map(|resource| Ask {
                action: format!("ssm:{op}"),
                resource,
            })
            .collect()
    }
}

/// The answer each service gives a refused call.
pub fn refusal(service: Service, denied: &Denied) -> Response<Body> {
    let text = denied.0.as_str();
    // DynamoDB and SSM (JSON protocol) name the error in the body; Lambda and API Gateway in
    // `x-amzn-ErrorType`.
    let (status, body, header) = match service {
        Service::DynamoDb => (
            StatusCode::BAD_REQUEST,
            json!({"__type": "com.amazon.coral.service#AccessDeniedException", "Message": text}),
            ("content-type", "application/x-amz-json-1.0"),
        ),
        Service::Ssm => (
            StatusCode::BAD_REQUEST,
            json!({"__type": "AccessDeniedException", "message": text}),
            ("content-type", "application/x-amz-json-1.1"),
        ),
        Service::Lambda => (
            StatusCode::FORBIDDEN,
            json!({"Type": "User", "Message": text}),
            ("x-amzn-errortype", "AccessDeniedException"),
        ),
        Service::ExecuteApi => (
            StatusCode::FORBIDDEN,
            json!({"Message": text}),
            ("x-amzn-errortype", "AccessDeniedException"),
        ),
    };
    let mut r = json_response(status, &body);
    r.headers_mut()
        .insert(header.0, HeaderValue::from_static(header.1));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(policies: Vec<Value>) -> (Principals, HeaderMap) {
        let mut p = Principals::default();
        let env = p.issue(
            "chat-dev-message",
            "chat-dev-message",
            policies,
            "us-east-1",
            "123456789012",
        );
        let key = &env[0].1;
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            format!("AWS4-HMAC-SHA256 Credential={key}/20261126/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=00").parse().unwrap(),
        );
        (p, headers)
    }

    const SCOPE: Scope = Scope {
        region: "us-east-1",
        account: "123456789012",
    };

    /// What a JSON-protocol call with `body` asks for.
    fn call(target: &str, body: &Value) -> Vec<Ask> {
        SCOPE
            .json_call(target, body.to_string().as_bytes())
            .expect("a checked service")
            .1
    }

    fn table_policy() -> Value {
        json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem"],
             "Resource": ["arn:aws:dynamodb:us-east-1:123456789012:table/chat-dev-history"]},
            {"Effect": "Allow", "Action": "execute-api:ManageConnections",
             "Resource": "arn:aws:execute-api:us-east-1:123456789012:a1/dev/*/@connections/*"},
        ]})
    }

    #[test]
    fn a_signed_call_is_its_functions_and_nothing_else_is() {
        let (p, headers) = principal(vec![]);
        assert_eq!(
            p.signer(&headers).unwrap().arn,
            "arn:aws:sts::123456789012:assumed-role/chat-dev-message/chat-dev-message"
        );
        let mut other = HeaderMap::new();
        other.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=local/20261126/us-east-1/dynamodb/aws4_request"
                .parse()
                .unwrap(),
        );
        assert!(p.signer(&other).is_none());
        assert!(p.signer(&HeaderMap::new()).is_none());
    }

    #[test]
    fn grants_are_exact_and_the_message_is_aws() {
        let (p, headers) = principal(vec![table_policy()]);
        let me = p.signer(&headers).unwrap();
        let get = |table: &str, index: Option<&str>| {
            let mut body = json!({"TableName": table});
            if let Some(i) = index {
                body["IndexName"] = i.into();
            }
            call("DynamoDB_20120810.Query", &body)
        };
        assert_eq!(me.check(&get("chat-dev-history", None)), Ok(()));
        assert_eq!(
            me.check(&get("chat-dev-counters", None)),
            Err(Denied("User: arn:aws:sts::123456789012:assumed-role/chat-dev-message/chat-dev-message is not authorized to perform: dynamodb:Query on resource: arn:aws:dynamodb:us-east-1:123456789012:table/chat-dev-counters because no identity-based policy allows the dynamodb:Query action".into()))
        );
        // A grant on the table does not reach its indexes, nor a table whose name extends it.
        assert!(me.check(&get("chat-dev-history", Some("by-x"))).is_err());
        assert!(me.check(&get("chat-dev-history2", None)).is_err());
        // The action is part of the grant.
        let delete = call(
            "DynamoDB_20120810.DeleteItem",
            &json!({"TableName": "chat-dev-history"}),
        );
        assert!(me.check(&delete).is_err());
        // @connections: any id, every method, this stage only.
        assert_eq!(
            me.check(&SCOPE.manage_connections("a1", "dev", "POST", "L0SM9cOFvHcCIhw=")),
            Ok(())
        );
        assert!(
            me.check(&SCOPE.manage_connections("a1", "prod", "POST", "x"))
                .is_err()
        );
        assert!(
            me.check(&SCOPE.invoke("chat-dev-publish", None))
                .unwrap_err()
                .0
                .contains("lambda:InvokeFunction on resource: arn:aws:lambda:us-east-1:123456789012:function:chat-dev-publish")
        );
    }

    #[test]
    fn every_part_of_a_transaction_and_a_batch_needs_its_grant() {
        let (p, headers) = principal(vec![table_policy()]);
        let me = p.signer(&headers).unwrap();
        let transact = |items: Value| {
            call(
                "DynamoDB_20120810.TransactWriteItems",
                &json!({ "TransactItems": items }),
            )
        };
        let put = json!({"Put": {"TableName": "chat-dev-history"}});
        assert_eq!(me.check(&transact(json!([put]))), Ok(()));
        let denied = me
            .check(&transact(
                json!([put, {"Update": {"TableName": "chat-dev-history"}}]),
            ))
            .unwrap_err();
        assert!(denied.0.contains("dynamodb:UpdateItem"), "{denied:?}");
        let batch = call(
            "DynamoDB_20120810.BatchGetItem",
            &json!({"RequestItems": {"chat-dev-history": {}}}),
        );
        assert_eq!(
            batch,
            vec![Ask {
                action: "dynamodb:BatchGetItem".into(),
                resource: "arn:aws:dynamodb:us-east-1:123456789012:table/chat-dev-history".into()
            }]
        );
        assert!(me.check(&batch).is_err());
    }

    #[test]
    fn deny_wins_wildcards_match_and_conditions_stay_safe() {
        let policy = json!({"Statement": [
            {"Effect": "Allow", "Action": "dynamodb:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "DynamoDB:Delete*", "Resource": "arn:aws:dynamodb:*:*:table/chat-???-history"},
            {"Effect": "Allow", "Action": "ssm:GetParameter", "Resource": "*",
             "Condition": {"StringEquals": {"aws:ResourceTag/team": "x"}}},
            {"Effect": "Allow", "NotAction": "lambda:*", "NotResource": "arn:aws:execute-api:*:*:a1/prod/*"},
        ]});
        let (p, headers) = principal(vec![policy]);
        let me = p.signer(&headers).unwrap();
        assert_eq!(
            me.check(&call(
                "DynamoDB_20120810.DeleteItem",
                &json!({"TableName": "chat-x1-counters"})
            )),
            Ok(())
        );
        let denied = me
            .check(&call(
                "DynamoDB_20120810.DeleteItem",
                &json!({"TableName": "chat-dev-history"}),
            ))
            .unwrap_err();
        assert!(
            denied
                .0
                .ends_with("with an explicit deny in an identity-based policy"),
            "{denied:?}"
        );
        // The conditional allow is not taken; NotAction still grants ssm outside prod.
        let ssm = call(
            "AmazonSSM.GetParameter",
            &json!({"Name": "/wsctl/chat/dev/secret"}),
        );
        assert_eq!(
            ssm[0].resource,
            "arn:aws:ssm:us-east-1:123456789012:parameter/wsctl/chat/dev/secret"
        );
        assert_eq!(me.check(&ssm), Ok(()));
        assert!(me.check(&SCOPE.invoke("f", None)).is_err());
        assert!(
            me.check(&SCOPE.manage_connections("a1", "prod", "GET", "c"))
                .is_err()
        );
        assert!(SCOPE.json_call("AWSCognito.X", b"{}").is_none());
    }

    #[test]
    fn globbing() {
        assert!(glob("a*b?d", "aXYZbcd"));
        assert!(glob("*", ""));
        assert!(glob("arn:*:table/t", "arn:aws:dynamodb:r:1:table/t"));
        assert!(!glob("arn:*:table/t", "arn:aws:dynamodb:r:1:table/t2"));
        assert!(!glob("a?", "a"));
        assert!(glob("**x", "abcx"));
        // `?` is one character, however many bytes it takes.
        assert!(glob("t?ble/*", "t\u{fc}ble/x"));
        assert!(!glob("a?b", "a\u{fc}\u{fc}b"));
        assert!(glob("a*\u{fc}", "aa\u{fc}\u{fc}"));
        assert!(glob("a*c", "a\u{1F600}c"));
        assert!(!glob("a*\u{fc}", "a\u{fd}"));
    }

    #[test]
    fn refusals_carry_each_services_shape() {
        let denied = Denied("User: x is not authorized".into());
        let r = refusal(Service::DynamoDb, &denied);
        assert_eq!(r.status(), 400);
        assert_eq!(r.headers()["content-type"], "application/x-amz-json-1.0");
        let r = refusal(Service::Lambda, &denied);
        assert_eq!(r.status(), 403);
        assert_eq!(r.headers()["x-amzn-errortype"], "AccessDeniedException");
    }
}
