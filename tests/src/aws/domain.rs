//! Custom domains as API Gateway reports them. moto echoes the `DomainNameConfigurations` it
//! was given; API Gateway fills in where the domain is served: `ApiGatewayDomainName` (the DNS
//! target), `HostedZoneId` and `DomainNameStatus`
//! (API Gateway v2 API reference, "DomainNameConfiguration").

use serde_json::Value;

use crate::proxy::{Behaviour, Call, Exchange, Reply};

pub struct DomainTargets;

impl Behaviour for DomainTargets {
    fn rewrite(&self, call: &Call, req: &Exchange, reply: &mut Reply) {
        if call.service != "apigateway"
            || !req.path.starts_with("/v2/domainnames")
            || req.path.contains("/apimappings")
            || reply.status >= 300
        {
            return;
        }
        let Ok(mut body) = serde_json::from_slice::<Value>(&reply.body) else {
            return;
        };
        match body.get_mut("items").and_then(Value::as_array_mut) {
            Some(items) => items.iter_mut().for_each(fill),
            None => fill(&mut body),
        }
        reply.body = body.to_string().into();
    }
}

fn fill(domain: &mut Value) {
    let name = domain["domainName"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let region = domain["domainNameArn"]
        .as_str()
        .and_then(|arn| arn.split(':').nth(3))
        .unwrap_or("us-east-1")
        .to_string();
    // A stable fake of API Gateway's `d-XXXXXXXXXX` name, derived from the domain.
    let id: String = name
        .bytes()
        .fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100000001b3)
        })
        .to_string()
        .chars()
        .take(10)
        .collect();
    if let Some(configs) = domain["domainNameConfigurations"].as_array_mut() {
        for c in configs {
            c["apiGatewayDomainName"] = format!("d-{id}.execute-api.{region}.amazonaws.com").into();
            c["hostedZoneId"] = "Z1UJRXOUMOOFQ8".into();
            c["domainNameStatus"] = "AVAILABLE".into();
        }
    }
}
