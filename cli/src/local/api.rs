//! The WebSocket API as deployed, read back from the control plane: its ids, its routes and
//! their integrations, its authorizer and its functions; and which route a frame takes.

use std::collections::HashMap;

use serde_json::Value;

use super::authorizer::Authorizer;
use super::integration::Integration;
use super::runtime::Pool;

pub struct Api {
    pub api_id: String,
    pub stage: String,
    pub region: String,
    pub account: String,
    /// The JSON path the route selection expression selects (`$request.body.action` → `["action"]`);
    /// `None` when the expression is not over the body, so every frame goes to `$default`.
    pub selection: Option<Vec<String>>,
    pub routes: HashMap<String, Integration>,
    pub authorizer: Option<Authorizer>,
    /// Every function of the stack by name, for the Invoke endpoint.
    pub functions: HashMap<String, Pool>,
    /// The stage's throttle, over every frame of every client.
    pub throttle: Option<super::throttle::Throttle>,
    /// The stage's access log, when it has one.
    pub access_log: Option<super::access::AccessLog>,
}

impl Api {
    /// Parses `$request.body.a.b` (or `${request.body.a.b}`) into `["a", "b"]`.
    pub fn selection_path(expression: &str) -> Option<Vec<String>> {
        let e = expression.trim();
        let e = e
            .strip_prefix("${")
            .and_then(|s| s.strip_suffix('}'))
            .map(|s| format!("${s}"))
            .unwrap_or_else(|| e.to_string());
        let path = e.strip_prefix("$request.body.")?;
        let parts: Vec<String> = path.split('.').map(str::to_string).collect();
        (!parts.iter().any(String::is_empty)).then_some(parts)
    }

    /// The route a frame goes to: the selected value if a route has that key, else `$default`.
    pub fn route_for(&self, text: Option<&str>) -> &str {
        let selected = (|| {
            let path = self.selection.as_ref()?;
            let mut v: Value = serde_json::from_str(text?).ok()?;
            for p in path {
                v = v.get_mut(p)?.take();
            }
            match v {
                Value::String(s) => Some(s),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            }
        })();
        match selected {
            Some(key) if !key.starts_with('$') => match self.routes.get_key_value(key.as_str()) {
                Some((k, _)) => k,
                None => "$default",
            },
            _ => "$default",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_selection_expressions() {
        assert_eq!(
            Api::selection_path("$request.body.action"),
            Some(vec!["action".to_string()])
        );
        assert_eq!(
            Api::selection_path("${request.body.msg.kind}"),
            Some(vec!["msg".to_string(), "kind".to_string()])
        );
        assert_eq!(Api::selection_path("$request.header.x"), None);
    }
}
