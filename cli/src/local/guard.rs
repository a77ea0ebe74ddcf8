//! Who may talk to `wsctl dev`'s port. It hands out tokens, forwards to an emulator that holds
//! the stack's secret, and can drop connections, so a web page the developer happens to open
//! must not reach it: not by a cross-site request (a foreign `Origin`) nor by DNS rebinding
//! (a foreign `Host` resolving to 127.0.0.1). The stage's WebSocket endpoint alone accepts
//! any origin, as API Gateway does; its handshake still needs a loopback `Host` and a token.

/// Why a request is refused, or `None` when it may go on.
pub fn refuse(
    host: Option<&str>,
    origin: Option<&str>,
    port: &str,
    websocket: bool,
) -> Option<String> {
    let Some(host) = host else {
        return Some("requests need a Host header".into());
    };
    if !is_loopback_authority(host) {
        return Some(format!(
            "Host `{host}` is not this machine; wsctl dev answers only 127.0.0.1, localhost and [::1]"
        ));
    }
    match origin {
        None => None,
        Some(_) if websocket => None,
        Some(o) if same_origin(o, port) => None,
        Some(o) => Some(format!(
            "Origin `{o}` is not this server; the dev endpoints serve only pages it serves itself"
        )),
    }
}

/// `127.0.0.1`, `localhost` or `[::1]`, with or without a port.
fn is_loopback_authority(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map(|(h, _)| h),
        None => Some(authority.split_once(':').map_or(authority, |(h, _)| h)),
    };
    matches!(
        host.map(str::to_ascii_lowercase).as_deref(),
        Some("127.0.0.1" | "localhost" | "::1")
    )
}

/// An `Origin` naming this server: `http://` a loopback name and this port.
fn same_origin(origin: &str, port: &str) -> bool {
    let Some(authority) = origin.strip_prefix("http://") else {
        return false;
    };
    let Some((_, p)) = authority.rsplit_once(':') else {
        return false;
    };
    p == port && is_loopback_authority(authority)
}

#[cfg(test)]
mod tests {
    use super::refuse;

    #[test]
    fn only_loopback_hosts_and_own_origins() {
        for host in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST",
            "[::1]:8080",
            "127.0.0.1",
        ] {
            assert_eq!(refuse(Some(host), None, "8080", false), None, "{host}");
        }
        for host in [
            "evil.example.com",
            "127.0.0.1.evil.example.com:8080",
            "localhost.evil:8080",
            "[::2]:8080",
            "10.0.0.1:8080",
        ] {
            assert!(refuse(Some(host), None, "8080", false).is_some(), "{host}");
        }
        assert!(refuse(None, None, "8080", false).is_some());
        for origin in [
            "http://127.0.0.1:8080",
            "http://localhost:8080",
            "http://[::1]:8080",
        ] {
            assert_eq!(
                refuse(Some("127.0.0.1:8080"), Some(origin), "8080", false),
                None,
                "{origin}"
            );
        }
        for origin in [
            "https://evil.example.com",
            "null",
            "http://127.0.0.1:9999",
            "http://evil.example.com:8080",
            "http://127.0.0.1.evil.com:8080",
        ] {
            assert!(
                refuse(Some("127.0.0.1:8080"), Some(origin), "8080", false).is_some(),
                "{origin}"
            );
        }
        // The stage's WebSocket endpoint takes any origin, as API Gateway does.
        assert_eq!(
            refuse(
                Some("127.0.0.1:8080"),
                Some("https://app.example.com"),
                "8080",
                true
            ),
            None
        );
        assert!(
            refuse(
                Some("evil.example.com"),
                Some("https://app.example.com"),
                "8080",
                true
            )
            .is_some()
        );
    }
}
