//! The stage's access log, written as API Gateway writes it: one line per connect, message and
//! disconnect in the stage's format, each `$context` variable replaced by its value and `-`
//! where it has none ("Customize HTTP API access logs" and "Configure logging for WebSocket
//! APIs in API Gateway": a variable with no value is written as `-`).

/// The stage's access log: where lines go and how they read.
pub struct AccessLog {
    pub group: String,
    format: String,
}

/// One request, as the variables of an access log line see it.
#[derive(Default)]
pub struct Request<'a> {
    pub request_id: &'a str,
    pub connection_id: &'a str,
    /// `CONNECT`, `MESSAGE` or `DISCONNECT`.
    pub event_type: &'a str,
    pub route_key: &'a str,
    pub status: u16,
    pub request_time_ms: u64,
    pub source_ip: &'a str,
    pub integration_latency_ms: Option<u64>,
    pub authorizer_latency_ms: Option<u64>,
    pub error: Option<&'a str>,
    pub authorizer_error: Option<&'a str>,
}

impl AccessLog {
    /// From the stage's `DestinationArn` (`…:log-group:NAME`) and `Format`.
    pub fn new(destination_arn: &str, format: &str) -> Option<AccessLog> {
        let group = destination_arn.split_once(":log-group:")?.1;
        Some(AccessLog {
            group: group.trim_end_matches(":*").to_string(),
            format: format.to_string(),
        })
    }

    pub fn line(&self, r: &Request) -> String {
        let value = |name: &str| -> Option<String> {
            Some(match name {
                "requestId" | "extendedRequestId" => r.request_id.to_string(),
                "connectionId" => r.connection_id.to_string(),
                "eventType" => r.event_type.to_string(),
                "routeKey" => r.route_key.to_string(),
                "status" => r.status.to_string(),
                "requestTimeEpoch" => r.request_time_ms.to_string(),
                "identity.sourceIp" => r.source_ip.to_string(),
                "integrationLatency" => r.integration_latency_ms?.to_string(),
                "authorizer.latency" => r.authorizer_latency_ms?.to_string(),
                "error.message" => r.error?.to_string(),
                "authorizer.error" => r.authorizer_error?.to_string(),
                _ => return None,
            })
        };
        let mut out = String::with_capacity(self.format.len() + 64);
        let mut rest = self.format.as_str();
        while let Some(at) = rest.find("$context.") {
            out.push_str(&rest[..at]);
            let after = &rest[at + "$context.".len()..];
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_'))
                .unwrap_or(after.len());
            // A sentence's full stop is not part of the name.
            let name = after[..end].trim_end_matches('.');
            out.push_str(&value(name).unwrap_or_else(|| "-".into()));
            rest = &after[name.len()..];
        }
        out.push_str(rest);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_replaced_and_those_without_a_value_are_a_dash() {
        let log = AccessLog::new(
            "arn:aws:logs:us-east-1:123456789012:log-group:/aws/apigateway/chat-dev/access",
            r#"{"id":"$context.requestId","c":"$context.connectionId","s":"$context.status","l":"$context.integrationLatency","e":"$context.error.message","x":"$context.somethingElse"} at $context.requestTimeEpoch."#,
        )
        .unwrap();
        assert_eq!(log.group, "/aws/apigateway/chat-dev/access");
        let line = log.line(&Request {
            request_id: "r-1",
            connection_id: "c=",
            status: 200,
            request_time_ms: 17,
            integration_latency_ms: Some(5),
            ..Default::default()
        });
        assert_eq!(
            line,
            r#"{"id":"r-1","c":"c=","s":"200","l":"5","e":"-","x":"-"} at 17."#
        );
    }
}
