//! Arbitrary bytes into the two parsers a client reaches before anything else: the frame
//! parser and the token verifier. Inputs are mutations of valid frames and tokens (so they get
//! past the first checks) and plain random bytes. `WSCTL_FUZZ_CASES` sets the count (default
//! 20,000 per parser; `WSCTL_FUZZ_CASES=1000000 cargo test --workspace --lib fuzz -- --nocapture`
//! for the long run).

use crate::auth::{Capabilities, Claims, SecretKeys, Verifier, mint};
use crate::protocol;

/// xorshift64*: reproducible from its seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"null",
    b"true",
    b"-1",
    b"1e999",
    b"18446744073709551616",
    b"\"action\"",
    b"\"channel\"",
    b"\"since\"",
    b"\"rewind\"",
    b"\"enter\"",
    b"\"seq\"",
    b"\"id\"",
    b"\xe2\x80\xae",
    b"\xef\xbb\xbf",
    b"\xff",
    b"\x00",
    b"#",
    b"*",
    b".",
    b"=",
    b"eyJhbGciOiJub25lIn0",
    b"\\u0000",
    b"\\ud800",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(out.len() + 1);
        match rng.below(6) {
            0 if !out.is_empty() => {
                let end = (at + rng.below(16)).min(out.len());
                out.drain(at.min(end)..end);
            }
            1 => out.insert(at, rng.next() as u8),
            2 if at < out.len() => out[at] ^= 1 << rng.below(8),
            3 => {
                let piece = INTERESTING[rng.below(INTERESTING.len())];
                out.splice(at..at, piece.iter().copied());
            }
            4 if !out.is_empty() => {
                // Repeat a slice: long runs, deep nesting.
                let start = rng.below(out.len());
                let end = (start + 1 + rng.below(32)).min(out.len());
                let piece: Vec<u8> = out[start..end].repeat(1 + rng.below(64));
                out.splice(at..at, piece);
            }
            _ => out = (0..rng.below(256)).map(|_| rng.next() as u8).collect(),
        }
    }
    out
}

/// The limits protocol.md states, checked apart from the parser's own code.
fn within_documented_bounds(frame: &protocol::ClientFrame) -> bool {
    use protocol::ClientFrame::*;
    // Controls, and the invisible characters protocol.md names: zero-width spaces and
    // joiners, bidi marks and overrides, the byte-order mark.
    let visible = |s: &str| {
        !s.chars().any(|c| {
            c.is_control()
                || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}' | '\u{2060}')
        })
    };
    let short = |s: &str, max: usize| (1..=max).contains(&s.chars().count()) && visible(s);
    let channel_ok = frame
        .channel()
        .is_none_or(|c| short(c, 128) && !c.contains('#'));
    let size = |v: &serde_json::Value| serde_json::to_string(v).map_or(usize::MAX, |s| s.len());
    channel_ok
        && match frame {
            Publish { data, id, .. } => {
                size(data) <= 120 * 1024 && id.as_deref().is_none_or(|i| short(i, 128))
            }
            Subscribe { rewind, .. } => rewind.is_none_or(|n| n <= 1000),
            History { limit, .. } => limit.is_none_or(|n| n <= 1000),
            Presence { enter, after, .. } => {
                enter.as_ref().is_none_or(|e| {
                    (e.is_object() || e == &serde_json::Value::Bool(true)) && size(e) <= 2048
                }) && after.as_deref().is_none_or(|a| short(a, 128))
            }
            Ping { id } => id.as_ref().is_none_or(|i| {
                i.is_number() || i.as_str().is_some_and(|s| s.chars().count() <= 128)
            }),
            Unsubscribe { .. } => true,
            Auth { token } => (1..=8 * 1024).contains(&token.len()),
        }
}

fn cases() -> usize {
    std::env::var("WSCTL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

#[test]
fn fuzz_frame_parser_never_panics() {
    let seeds: Vec<&[u8]> = vec![
        br#"{"action":"subscribe","channel":"room-1","since":41}"#,
        br#"{"action":"subscribe","channel":"room-1","rewind":10}"#,
        br#"{"action":"publish","channel":"c","data":{"x":[1,2,{"y":null}]},"id":"m1","seq":3}"#,
        br#"{"action":"history","channel":"c","since":1,"limit":5}"#,
        br#"{"action":"auth","token":"eyJhbGciOiJIUzI1NiJ9.e30.c2ln"}"#,
        br#"{"action":"presence","channel":"lobby","enter":{"name":"Ana"}}"#,
        br#"{"action":"presence","channel":"lobby","after":"Lx0HjcKGIAMCJ-w="}"#,
        br#"{"action":"unsubscribe","channel":"c"}"#,
        br#"{"action":"ping","id":7}"#,
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut ok, mut refused) = (0u64, 0u64);
    for _ in 0..cases() {
        let seed = seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, seed);
        let text = String::from_utf8_lossy(&input);
        match protocol::parse(&text) {
            Ok(frame) => {
                ok += 1;
                assert!(within_documented_bounds(&frame), "{text} → {frame:?}");
            }
            Err(e) => {
                refused += 1;
                assert_ne!(e.code, protocol::ErrorCode::Internal, "{text}");
            }
        }
    }
    assert!(
        ok > 0 && refused > 0,
        "the mutations reach both outcomes: {ok} parsed, {refused} refused"
    );
    eprintln!(
        "frame parser: {} inputs, {ok} parsed, {refused} refused, no panic",
        cases()
    );
}

#[test]
fn fuzz_token_verifier_never_panics() {
    let secret = "0123456789abcdef0123456789abcdef";
    let verifier = Verifier::new(SecretKeys::new(secret).unwrap(), Some("chat".into()), None);
    let mut claims = Claims::issue(
        "ana",
        Capabilities::everything(),
        std::time::Duration::from_secs(600),
    );
    claims.aud = Some(crate::auth::Audience::One("chat".into()));
    let good = mint(secret.as_bytes(), &claims);
    assert!(verifier.verify(&good, None).is_ok());
    let seeds = [
        good.as_bytes().to_vec(),
        b"eyJhbGciOiJIUzI1NiJ9.e30.".to_vec(),
        b"a.b.c".to_vec(),
    ];
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let mut accepted = 0u64;
    for _ in 0..cases() {
        let seed = &seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, seed);
        let token = String::from_utf8_lossy(&input);
        if verifier.verify(&token, None).is_ok() {
            accepted += 1;
            // Only the intact token passes: any other byte changes the signed part or the
            // signature.
            assert_eq!(token, good.as_str());
        }
    }
    assert!(
        accepted < cases() as u64 / 10,
        "{accepted} mutated tokens accepted"
    );
    eprintln!(
        "token verifier: {} inputs, {accepted} accepted, no panic",
        cases()
    );
}
