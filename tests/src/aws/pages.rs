//! Lists one item at a time. moto answers every list call with all it has on one page, while
//! AWS pages each of them and says so only by a token: API Gateway V2 `nextToken` (API
//! reference, "Pagination": "The next page of elements from this collection"), Lambda
//! `NextMarker` (ListFunctions), DynamoDB `LastEvaluatedTableName` (ListTables) and `NextToken`
//! (ListTagsOfResource: "If this value is returned, there are additional results to be
//! displayed"), CloudWatch Logs `nextToken` (DescribeLogGroups) and IAM `IsTruncated`/`Marker`
//! (ListRoles, ListRolePolicies, ListPolicies, ListPolicyVersions: "Make the call again using
//! the returned marker value"). A caller that reads only the first page sees one item.

use bytes::Bytes;
use serde_json::{Value, json};

use crate::dev::percent_decode;
use crate::proxy::{Behaviour, Call, Exchange, Reply};

/// Tokens this behaviour makes: `page:N` is the N-th item (from 0) of the whole list.
const TOKEN: &str = "page:";

/// Pages every list call of the services wsctl uses at one item.
pub struct OneItemPages;

/// Where a call keeps its page token, and where its reply keeps the items.
enum Shape {
    /// REST with the token in the query string (API Gateway, Lambda).
    Query {
        param: &'static str,
        items: &'static str,
        next: &'static str,
    },
    /// JSON-RPC (DynamoDB, CloudWatch Logs).
    Json {
        param: &'static str,
        items: &'static str,
        next: &'static str,
    },
    /// IAM's Query protocol: a `Marker` form field, an XML list.
    Iam { list: &'static str },
}

fn shape(call: &Call, req: &Exchange) -> Option<Shape> {
    let path = req.path.split('?').next().unwrap_or("");
    Some(match (call.service.as_str(), call.operation.as_str()) {
        ("apigateway", op) if op.starts_with("GET /v2/") && !path.starts_with("/v2/tags/") => {
            // Collections only: `/v2/apis`, `/v2/apis/ID/routes`, `/v2/domainnames/D/apimappings`.
            let segments = path.trim_matches('/').split('/').count();
            if segments % 2 == 1 {
                return None;
            }
            Shape::Query {
                param: "nextToken",
                items: "items",
                next: "nextToken",
            }
        }
        ("lambda", op)
            if op.starts_with("GET ") && path.trim_end_matches('/').ends_with("/functions") =>
        {
            Shape::Query {
                param: "Marker",
                items: "Functions",
                next: "NextMarker",
            }
        }
        ("dynamodb", "ListTables") => Shape::Json {
            param: "ExclusiveStartTableName",
            items: "TableNames",
            next: "LastEvaluatedTableName",
        },
        ("dynamodb", "ListTagsOfResource") => Shape::Json {
            param: "NextToken",
            items: "Tags",
            next: "NextToken",
        },
        ("logs", "DescribeLogGroups") => Shape::Json {
            param: "nextToken",
            items: "logGroups",
            next: "nextToken",
        },
        ("iam", "ListRoles") => Shape::Iam { list: "Roles" },
        ("iam", "ListRolePolicies") => Shape::Iam {
            list: "PolicyNames",
        },
        ("iam", "ListPolicies") => Shape::Iam { list: "Policies" },
        ("iam", "ListPolicyVersions") => Shape::Iam { list: "Versions" },
        ("iam", "ListAttachedRolePolicies") => Shape::Iam {
            list: "AttachedPolicies",
        },
        _ => return None,
    })
}

fn query_param(path: &str, name: &str) -> Option<String> {
    let query = path.split_once('?')?.1;
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| percent_decode(v))
    })
}

fn without_param(path: &str, name: &str) -> String {
    let Some((base, query)) = path.split_once('?') else {
        return path.to_string();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|kv| kv.split('=').next() != Some(name))
        .collect();
    if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

/// The item the request starts at: 0 without a token, N after `page:N`; a DynamoDB table
/// name (ListTables hands back the last name, not a token) starts after that name.
fn start(token: Option<String>, items: &[Value]) -> usize {
    match token {
        None => 0,
        Some(t) => match t.strip_prefix(TOKEN) {
            Some(n) => n.parse().unwrap_or(0),
            None => items
                .iter()
                .position(|i| i.as_str() == Some(t.as_str()))
                .map_or(items.len(), |p| p + 1),
        },
    }
}

/// The request's own token, if it names one.
fn token(req: &Exchange, shape: &Shape) -> Option<String> {
    match shape {
        Shape::Query { param, .. } => query_param(&req.path, param),
        Shape::Json { param, .. } => req.json()[*param].as_str().map(str::to_string),
        Shape::Iam { .. } => req.form("Marker"),
    }
}

impl Behaviour for OneItemPages {
    fn forward_as(&self, call: &Call, req: &Exchange) -> Option<(String, Bytes)> {
        let shape = shape(call, req)?;
        token(req, &shape)?;
        // moto is always asked for the whole list, from the start.
        Some(match shape {
            Shape::Query { param, .. } => (without_param(&req.path, param), req.body.clone()),
            Shape::Json { param, .. } => {
                let mut body = req.json();
                if let Some(o) = body.as_object_mut() {
                    o.remove(param);
                }
                (req.path.clone(), Bytes::from(body.to_string()))
            }
            Shape::Iam { .. } => {
                let body = std::str::from_utf8(&req.body).unwrap_or("");
                let kept: Vec<&str> = body
                    .split('&')
                    .filter(|kv| !kv.starts_with("Marker="))
                    .collect();
                (req.path.clone(), Bytes::from(kept.join("&")))
            }
        })
    }

    fn rewrite(&self, call: &Call, req: &Exchange, reply: &mut Reply) {
        if !(200..300).contains(&reply.status) {
            return;
        }
        let Some(shape) = shape(call, req) else {
            return;
        };
        let asked = token(req, &shape);
        match shape {
            Shape::Query { items, next, .. } | Shape::Json { items, next, .. } => {
                let Ok(mut body) = serde_json::from_slice::<Value>(&reply.body) else {
                    return;
                };
                let Some(all) = body[items].as_array().cloned() else {
                    return;
                };
                let from = start(asked, &all);
                let page: Vec<Value> = all.iter().skip(from).take(1).cloned().collect();
                body[items] = Value::Array(page.clone());
                let more = from + 1 < all.len();
                let obj = body.as_object_mut().expect("an object");
                obj.remove(next);
                if more {
                    let token = if next == "LastEvaluatedTableName" {
                        page[0].clone()
                    } else {
                        json!(format!("{TOKEN}{}", from + 1))
                    };
                    obj.insert(next.to_string(), token);
                }
                reply.body = body.to_string().into();
            }
            Shape::Iam { list } => {
                let Ok(xml) = std::str::from_utf8(&reply.body) else {
                    return;
                };
                if let Some(paged) = page_xml(xml, list, asked) {
                    reply.body = paged.into();
                }
            }
        }
    }
}

/// The top-level `<member>` elements of `<list>` in an IAM reply, cut to one, with
/// `IsTruncated` and `Marker` set to match.
fn page_xml(xml: &str, list: &str, asked: Option<String>) -> Option<String> {
    let open = format!("<{list}>");
    let close = format!("</{list}>");
    let begin = xml.find(&open)? + open.len();
    let end = begin + xml[begin..].find(&close)?;
    let inner = &xml[begin..end];
    let mut members = Vec::new();
    let (mut depth, mut at, mut i) = (0usize, 0usize, 0usize);
    while i < inner.len() {
        if inner[i..].starts_with("<member>") {
            if depth == 0 {
                at = i;
            }
            depth += 1;
            i += "<member>".len();
        } else if inner[i..].starts_with("</member>") {
            depth = depth.saturating_sub(1);
            i += "</member>".len();
            if depth == 0 {
                members.push(&inner[at..i]);
            }
        } else {
            i += inner[i..].chars().next().map_or(1, char::len_utf8);
        }
    }
    let from = asked
        .and_then(|t| t.strip_prefix(TOKEN)?.parse().ok())
        .unwrap_or(0usize);
    let page = members.get(from).copied().unwrap_or("");
    let more = from + 1 < members.len();
    let mut out = format!("{}{page}{}", &xml[..begin], &xml[end..]);
    // Drop moto's own paging fields, then say whether there is more.
    for field in ["IsTruncated", "Marker"] {
        while let Some(s) = out.find(&format!("<{field}>")) {
            let Some(e) = out[s..].find(&format!("</{field}>")) else {
                break;
            };
            out.replace_range(s..s + e + field.len() + 3, "");
        }
    }
    let mut paging = format!("<IsTruncated>{more}</IsTruncated>");
    if more {
        paging.push_str(&format!("<Marker>{TOKEN}{}</Marker>", from + 1));
    }
    let at = out.find(&close)? + close.len();
    out.insert_str(at, &paging);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iam_lists_are_cut_to_one_top_level_member() {
        let xml = "<R><ListRolesResult><IsTruncated>false</IsTruncated><Roles>\
                   <member><Name>a</Name><Tags><member>t</member></Tags></member>\
                   <member><Name>b</Name></member></Roles></ListRolesResult></R>";
        let first = page_xml(xml, "Roles", None).unwrap();
        assert!(first.contains("<Name>a</Name><Tags><member>t</member></Tags>"));
        assert!(!first.contains("<Name>b</Name>"));
        assert!(first.contains("<IsTruncated>true</IsTruncated><Marker>page:1</Marker>"));
        let second = page_xml(xml, "Roles", Some("page:1".into())).unwrap();
        assert!(second.contains("<Name>b</Name>") && !second.contains("<Name>a</Name>"));
        assert!(second.contains("<IsTruncated>false</IsTruncated>"));
        assert!(!second.contains("<Marker>"));
    }
}
