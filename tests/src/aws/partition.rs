//! Where moto ignores the partition: it reports every API's endpoint under `amazonaws.com`,
//! while API Gateway in China's regions serves it under `amazonaws.com.cn` ("Endpoints and ARNs
//! for Amazon Web Services in China": `execute-api.cn-north-1.amazonaws.com.cn`).

use crate::proxy::{Behaviour, Call, Exchange, Reply};

/// Rewrites `apiEndpoint` in API Gateway's answers (CreateApi, GetApi, GetApis, UpdateApi) to
/// the domain of the API's region's partition.
pub struct ChinaEndpoints;

impl ChinaEndpoints {
    fn fix(v: &mut serde_json::Value) -> bool {
        let mut changed = false;
        match v {
            serde_json::Value::Object(o) => {
                if let Some(serde_json::Value::String(url)) = o.get_mut("apiEndpoint")
                    && url.contains(".execute-api.cn-")
                    && url.trim_end_matches('/').ends_with(".amazonaws.com")
                {
                    *url = format!("{}.cn", url.trim_end_matches('/'));
                    changed = true;
                }
                for x in o.values_mut() {
                    changed |= Self::fix(x);
                }
            }
            serde_json::Value::Array(a) => {
                for x in a {
                    changed |= Self::fix(x);
                }
            }
            _ => {}
        }
        changed
    }
}

impl Behaviour for ChinaEndpoints {
    fn rewrite(&self, call: &Call, _req: &Exchange, reply: &mut Reply) {
        if call.service != "apigateway" || !call.operation.contains(" /v2/apis") {
            return;
        }
        let Ok(mut body) = serde_json::from_slice::<serde_json::Value>(&reply.body) else {
            return;
        };
        if Self::fix(&mut body) {
            reply.body = body.to_string().into();
        }
    }
}
