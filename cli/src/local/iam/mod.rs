//! IAM for the functions `wsctl dev` runs. moto accepts every call, so a function whose role
//! lacks a grant would work here and fail on AWS. Each function gets its own credentials (as
//! Lambda hands each function its role's session), and every call the gateway sees signed with
//! them is evaluated against that role's policies as deployed, before it is served:
//!
//! - DynamoDB item and table calls (each table of a batch or a transaction, and the index a
//!   query names), as the DynamoDB Developer Guide's "DynamoDB API permissions reference" lists
//!   them: a transaction needs the action of each of its parts (`dynamodb:PutItem`, …);
//! - SSM's parameter reads; EventBridge's `PutEvents` (on each entry's bus); Lambda's Invoke;
//!   `@connections` (`execute-api:ManageConnections` on
//!   `…:api/stage/METHOD/@connections/id`, API Gateway's "Use IAM authorization" for WebSocket
//!   APIs).
//!
//! Evaluation follows the IAM User Guide's "Policy evaluation logic" for one account with
//! identity-based policies and a permissions boundary: an explicit `Deny` in either wins; else
//! the call needs an `Allow` from the identity's policies and, when the role has a boundary,
//! from the boundary too. Conditions are evaluated against the request context as the "IAM
//! JSON policy elements: Condition operators" page defines the string, ARN, `Bool` and `Null`
//! operators, their `IfExists` forms and the `ForAnyValue`/`ForAllValues` qualifiers; a key
//! absent from the context fails a positive operator and passes a negated one. An operator it
//! does not know never allows and always denies. A function's calls carry
//! `lambda:SourceFunctionArn`, as Lambda adds it. Calls to other services pass unchecked.

use std::collections::HashMap;

use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use rand::Rng;
use serde_json::{Value, json};
use wsctl_functions::partition::Partition;

use super::http::{Body, json_response};

mod policy;

use policy::{Statement, evaluate, statements};

/// Who calls act as: a function's role session, as Lambda names it, or any identity whose
/// policies are known.
pub struct Principal {
    /// `arn:aws:sts::ACCOUNT:assumed-role/ROLE/FUNCTION`.
    pub arn: String,
    /// Its role's statements, read once: every `@connections` post of a fan-out is checked.
    statements: Vec<Statement>,
    /// Its permissions boundary's statements, if it has one.
    boundary: Option<Vec<Statement>>,
    /// Context keys every call of this principal carries.
    context: Vec<(String, String)>,
}

/// The functions' credentials, by access key id.
#[derive(Default)]
pub struct Principals {
    by_key: HashMap<String, Principal>,
}

/// One action on one resource, as IAM evaluates a request, with the request's context keys
/// (a key may repeat: a multivalued key such as `aws:TagKeys`).
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    pub action: String,
    pub resource: String,
    pub context: Vec<(String, String)>,
}

impl Ask {
    pub fn new(action: &str, resource: impl Into<String>) -> Ask {
        Ask {
            action: action.to_string(),
            resource: resource.into(),
            context: Vec::new(),
        }
    }

    /// With context key `key` set to `value` (once more, for a multivalued key).
    #[cfg(test)]
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Ask {
        self.context.push((key.to_string(), value.into()));
        self
    }
}

/// Which API refused, for the shape of its error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Service {
    DynamoDb,
    Ssm,
    Events,
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
    /// The identity allows it; its permissions boundary does not.
    OutsideBoundary,
    ExplicitDeny,
}

impl Principals {
    /// New credentials for `function`, acting with role `role` (its name), its `policies` and
    /// its permissions `boundary`; the variables Lambda sets for them.
    pub fn issue(
        &mut self,
        function: &str,
        role: &str,
        policies: Vec<Value>,
        boundary: Option<Value>,
        region: &str,
        account: &str,
    ) -> Vec<(String, String)> {
        let partition = Partition::of(region);
        let arn = partition.arn(
            "sts",
            "",
            account,
            &format!("assumed-role/{role}/{function}"),
        );
        let source = partition.arn("lambda", region, account, &format!("function:{function}"));
        // Temporary credentials start with ASIA, as the ones Lambda gives do.
        let key = format!("ASIA{}", random(16, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"));
        let principal = Principal::new(&arn, &policies, boundary.as_ref())
            .with("lambda:SourceFunctionArn", &source);
        self.by_key.insert(key.clone(), principal);
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
    /// An identity with `policies` and, if it has one, a permissions `boundary`.
    pub fn new(arn: &str, policies: &[Value], boundary: Option<&Value>) -> Principal {
        Principal {
            arn: arn.to_string(),
            statements: policies.iter().flat_map(statements).collect(),
            boundary: boundary.map(statements),
            context: Vec::new(),
        }
    }

    /// Every call carries context key `key` = `value`.
    pub fn with(mut self, key: &str, value: &str) -> Principal {
        self.context.push((key.to_string(), value.to_string()));
        self
    }

    /// The first ask the role does not allow, with AWS's message for it.
    pub fn check(&self, asks: &[Ask]) -> Result<(), Denied> {
        for ask in asks {
            let why = match self.decide(ask) {
                Decision::Allow => continue,
                Decision::ImplicitDeny => format!(
                    "because no identity-based policy allows the {} action",
                    ask.action
                ),
                Decision::OutsideBoundary => format!(
                    "because no permissions boundary allows the {} action",
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
        let context: Vec<(String, &str)> = self
            .context
            .iter()
            .chain(&ask.context)
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
            .collect();
        let identity = evaluate(&self.statements, &action, &ask.resource, &context);
        let boundary = self
            .boundary
            .as_ref()
            .map(|b| evaluate(b, &action, &ask.resource, &context));
        match (identity, boundary) {
            (Decision::ExplicitDeny, _) | (_, Some(Decision::ExplicitDeny)) => {
                Decision::ExplicitDeny
            }
            (Decision::Allow, None | Some(Decision::Allow)) => Decision::Allow,
            (Decision::Allow, Some(_)) => Decision::OutsideBoundary,
            _ => Decision::ImplicitDeny,
        }
    }
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
        vec![Ask::new(
            "execute-api:ManageConnections",
            self.arn(
                "execute-api",
                &format!("{api}/{stage}/{method}/@connections/{id}"),
            ),
        )]
    }

    /// Lambda's Invoke of `function` (a name), at `qualifier` if one is named.
    pub fn invoke(&self, function: &str, qualifier: Option<&str>) -> Vec<Ask> {
        let resource = match qualifier {
            Some(q) => format!("function:{function}:{q}"),
            None => format!("function:{function}"),
        };
        vec![Ask::new(
            "lambda:InvokeFunction",
            self.arn("lambda", &resource),
        )]
    }

    /// A JSON-protocol call (`X-Amz-Target`) to DynamoDB or SSM; `None` for other services.
    pub fn json_call(&self, target: &str, body: &[u8]) -> Option<(Service, Vec<Ask>)> {
        let (prefix, op) = target.split_once('.')?;
        let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        match prefix {
            "DynamoDB_20120810" => Some((Service::DynamoDb, self.dynamodb(op, &body))),
            "AmazonSSM" => Some((Service::Ssm, self.ssm(op, &body))),
            "AWSEvents" if op == "PutEvents" => Some((Service::Events, self.put_events(&body))),
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
        let ask =
            |action: &str, resource: String| Ask::new(&format!("dynamodb:{action}"), resource);
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

    /// `events:PutEvents` on each entry's bus ("Using identity-based policies for Amazon
    /// EventBridge": the resource is the bus; an entry without one goes to `default`).
    fn put_events(&self, body: &Value) -> Vec<Ask> {
        let mut buses: Vec<String> = body
            .get("Entries")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|e| match e.get("EventBusName").and_then(Value::as_str) {
                Some(arn) if arn.starts_with("arn:") => arn.to_string(),
                Some(name) => self.arn("events", &format!("event-bus/{name}")),
                None => self.arn("events", "event-bus/default"),
            })
            .collect();
        buses.sort();
        buses.dedup();
        buses
            .into_iter()
            .map(|bus| Ask::new("events:PutEvents", bus))
            .collect()
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
            .map(|resource| Ask::new(&format!("ssm:{op}"), resource))
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
        Service::Events => (
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
    use super::policy::glob;
    use super::*;

    fn principal(policies: Vec<Value>) -> (Principals, HeaderMap) {
        let mut p = Principals::default();
        let env = p.issue(
            "chat-dev-message",
            "chat-dev-message",
            policies,
            None,
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
            vec![Ask::new(
                "dynamodb:BatchGetItem",
                "arn:aws:dynamodb:us-east-1:123456789012:table/chat-dev-history"
            )]
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
    fn conditions_follow_iams_operators_and_absent_keys() {
        let allow = |condition: Value| {
            Principal::new(
                "arn:aws:iam::123456789012:role/ci",
                &[
                    json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": condition}]}),
                ],
                None,
            )
        };
        let ask = || Ask::new("iam:CreateRole", "arn:aws:iam::123456789012:role/x");
        let ok = |p: &Principal, a: Ask| p.check(&[a]).is_ok();

        let equals =
            allow(json!({"StringEquals": {"iam:PermissionsBoundary": ["arn:b1", "arn:b2"]}}));
        assert!(ok(&equals, ask().with("iam:PermissionsBoundary", "arn:b2")));
        assert!(!ok(
            &equals,
            ask().with("iam:PermissionsBoundary", "arn:B2")
        ));
        assert!(
            !ok(&equals, ask()),
            "an absent key fails a positive operator"
        );
        // Key names are case-insensitive.
        assert!(ok(&equals, ask().with("IAM:permissionsboundary", "arn:b1")));

        let not = allow(json!({"StringNotEquals": {"aws:RequestTag/team": "billing"}}));
        assert!(ok(&not, ask()), "an absent key passes a negated operator");
        assert!(!ok(&not, ask().with("aws:RequestTag/team", "billing")));

        let if_exists = allow(json!({"StringEqualsIfExists": {"aws:RequestTag/team": "chat"}}));
        assert!(ok(&if_exists, ask()));
        assert!(!ok(
            &if_exists,
            ask().with("aws:RequestTag/team", "billing")
        ));

        let like = allow(
            json!({"ArnLike": {"lambda:SourceFunctionArn": "arn:aws:lambda:*:*:function:chat-dev-*"}}),
        );
        assert!(ok(
            &like,
            ask().with(
                "lambda:SourceFunctionArn",
                "arn:aws:lambda:eu-west-1:1:function:chat-dev-message"
            )
        ));
        assert!(!ok(
            &like,
            ask().with(
                "lambda:SourceFunctionArn",
                "arn:aws:lambda:eu-west-1:1:function:billing"
            )
        ));

        let null = allow(json!({"Null": {"aws:RequestTag/team": "true"}}));
        assert!(ok(&null, ask()));
        assert!(!ok(&null, ask().with("aws:RequestTag/team", "x")));

        // Two keys of one operator, and two operators, must all hold.
        let both = allow(json!({
            "StringEquals": {"aws:ResourceTag/wsctl:stack": "chat", "aws:ResourceTag/wsctl:stage": "dev"},
            "Bool": {"aws:SecureTransport": true},
        }));
        let tagged = ask()
            .with("aws:ResourceTag/wsctl:stack", "chat")
            .with("aws:ResourceTag/wsctl:stage", "dev");
        assert!(ok(
            &both,
            tagged.clone().with("aws:SecureTransport", "true")
        ));
        assert!(!ok(&both, tagged.clone()));
        assert!(!ok(
            &both,
            ask()
                .with("aws:ResourceTag/wsctl:stack", "chat")
                .with("aws:SecureTransport", "true")
        ));

        let all = allow(
            json!({"ForAllValues:StringEquals": {"aws:TagKeys": ["wsctl:stack", "wsctl:stage"]}}),
        );
        assert!(ok(
            &all,
            ask()
                .with("aws:TagKeys", "wsctl:stack")
                .with("aws:TagKeys", "wsctl:stage")
        ));
        assert!(!ok(
            &all,
            ask()
                .with("aws:TagKeys", "wsctl:stack")
                .with("aws:TagKeys", "owner")
        ));
        assert!(
            ok(&all, ask()),
            "ForAllValues holds for an absent key, as IAM's does"
        );
        let any = allow(json!({"ForAnyValue:StringEquals": {"aws:TagKeys": "owner"}}));
        assert!(ok(
            &any,
            ask()
                .with("aws:TagKeys", "wsctl:stack")
                .with("aws:TagKeys", "owner")
        ));
        assert!(!ok(&any, ask()));

        // What it cannot read never allows, and always denies.
        let unknown =
            allow(json!({"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}));
        assert!(!ok(&unknown, ask()));
        let denied_anyway = Principal::new(
            "arn:aws:iam::123456789012:role/ci",
            &[json!({"Statement": [
                {"Effect": "Allow", "Action": "*", "Resource": "*"},
                {"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": {"NumericLessThan": {"aws:MultiFactorAuthAge": "3600"}}},
            ]})],
            None,
        );
        assert!(!ok(&denied_anyway, ask()));
    }

    #[test]
    fn a_boundary_caps_and_its_refusal_says_so() {
        let everything =
            json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]});
        let boundary = json!({"Statement": [{"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": "*"}]});
        let bounded = Principal::new(
            "arn:aws:sts::1:assumed-role/r/f",
            &[everything],
            Some(&boundary),
        );
        assert_eq!(
            bounded.check(&call(
                "DynamoDB_20120810.GetItem",
                &json!({"TableName": "t"})
            )),
            Ok(())
        );
        let denied = bounded
            .check(&call(
                "DynamoDB_20120810.PutItem",
                &json!({"TableName": "t"}),
            ))
            .unwrap_err();
        assert!(
            denied
                .0
                .ends_with("because no permissions boundary allows the dynamodb:PutItem action"),
            "{denied:?}"
        );
        // The boundary grants nothing by itself.
        let nothing = Principal::new("arn:aws:sts::1:assumed-role/r/f", &[], Some(&boundary));
        assert!(
            nothing
                .check(&call(
                    "DynamoDB_20120810.GetItem",
                    &json!({"TableName": "t"})
                ))
                .unwrap_err()
                .0
                .contains("no identity-based policy")
        );
    }

    #[test]
    fn a_functions_calls_carry_its_source_arn() {
        let policy = json!({"Statement": [{"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": "*",
            "Condition": {"ArnLike": {"lambda:SourceFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:chat-dev-*"}}}]});
        let (p, headers) = principal(vec![policy]);
        let me = p.signer(&headers).unwrap();
        assert_eq!(
            me.check(&call(
                "DynamoDB_20120810.GetItem",
                &json!({"TableName": "t"})
            )),
            Ok(())
        );
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
