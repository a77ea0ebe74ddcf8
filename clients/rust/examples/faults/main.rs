//! Runs one of the fault scenarios (cases.rs) against a running `wsctl dev`:
//!   WSCTL_URL=ws://127.0.0.1:PORT/dev WSCTL_BASE=http://127.0.0.1:PORT \
//!     cargo run -p wsctl-client --example faults -- drops
//! Prints the scenario's figures as one JSON line; exits 1 with the reason when it fails.
//! WSCTL_MESSAGES sets how many `drops` and `renewal` publish.

mod cases;

#[tokio::main]
async fn main() {
    let name = std::env::args().nth(1).unwrap_or_default();
    let (Ok(url), Ok(base)) = (std::env::var("WSCTL_URL"), std::env::var("WSCTL_BASE")) else {
        eprintln!(
            "usage: WSCTL_URL=ws://… WSCTL_BASE=http://… faults {}",
            cases::SCENARIOS.join("|")
        );
        std::process::exit(2);
    };
    let messages = std::env::var("WSCTL_MESSAGES")
        .ok()
        .and_then(|m| m.parse().ok());
    let stage = cases::Stage { url, base };
    match cases::run(&name, &stage, messages).await {
        Ok(figures) => {
            let mut line = serde_json::json!({"scenario": name, "runtime": "rust"});
            line["figures"] = figures;
            println!("{line}");
        }
        Err(why) => {
            eprintln!("{name}: {why}");
            std::process::exit(1);
        }
    }
}
