//! The client libraries against `wsctl dev` under faults: `@wsctl/client` (clients/js) in Node
//! and in Chromium, `wsctl-client` (clients/rust) in this process. The dev server's fault switch
//! cuts sockets while messages flow, and every subscriber must still see every message once, in
//! order, and every publish resolve once (clients/js/test/cases.mjs, and the same scenarios in
//! clients/rust/examples/faults/cases.rs).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wsctl_tests::dev::{Dev, dev_config, http};
use wsctl_tests::{die_with_parent, root};

use crate::browser::chromium;

#[path = "../../clients/rust/examples/faults/cases.rs"]
mod rust_cases;

/// `drops` publishes this many in the suite, which shares two cores with every other test (by
/// hand, `scenarios.mjs` publishes 2,000: BENCHMARKS.md).
const SUITE_MESSAGES: u32 = 600;

const SCENARIOS: [&str; 4] = ["drops", "gaps", "renewal", "presence"];

fn package() -> PathBuf {
    root().join("clients/js")
}

/// The package's dev dependencies (TypeScript, esbuild, ws), installed once from its lock file.
fn node_modules() -> &'static Path {
    static READY: OnceLock<PathBuf> = OnceLock::new();
    READY.get_or_init(|| {
        let dir = package();
        if !dir.join("node_modules/ws").exists() {
            let out = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .output()
                .expect("npm is missing: install Debian's npm (apt-get install npm)");
            assert!(
                out.status.success(),
                "npm ci in clients/js failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        dir.join("node_modules")
    })
}

/// A stage whose limits let one user publish 100 a second (the defaults allow 20).
fn busy_dev(dir: &Path) -> Dev {
    let config = dev_config(dir);
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace(
            "frames: { per_second: 10, burst: 20 }",
            "frames: { per_second: 400, burst: 800 }",
        )
        .replace(
            "publishes: { per_second: 20, burst: 40 }",
            "publishes: { per_second: 400, burst: 800 }",
        );
    assert_eq!(
        text.matches("per_second: 400, burst: 800").count(),
        2,
        "limits raised"
    );
    std::fs::write(&config, text).expect("write config");
    Dev::start(&config, &[])
}

/// `node test/scenarios.mjs NAME` against `dev`; its figures.
fn node_scenario(dev: &Dev, name: &str, client: Option<&Path>) -> Result<Value, String> {
    node_modules();
    let mut cmd = Command::new("node");
    cmd.arg("test/scenarios.mjs")
        .arg(name)
        .current_dir(package())
        .env("WSCTL_MESSAGES", SUITE_MESSAGES.to_string())
        .env("WSCTL_URL", dev.field("url"))
        .env("WSCTL_BASE", dev.base());
    if let Some(client) = client {
        cmd.env("WSCTL_CLIENT", format!("file://{}", client.display()));
    }
    die_with_parent(&mut cmd);
    let out = cmd
        .output()
        .expect("node is missing: install Debian's nodejs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)));
    }
    let figures: Value = serde_json::from_str(stdout.trim()).expect("the scenario's JSON line");
    eprintln!("{figures}");
    Ok(figures)
}

#[test]
fn the_committed_module_is_what_the_sources_build() {
    let bin = node_modules().join(".bin");
    let out = tempfile::tempdir().expect("temp dir");
    let js = out.path().join("index.js");
    let esbuild = Command::new(bin.join("esbuild"))
        .args([
            "src/index.ts",
            "--bundle",
            "--format=esm",
            "--target=es2020",
        ])
        .arg(format!("--outfile={}", js.display()))
        .current_dir(package())
        .output()
        .expect("esbuild");
    assert!(esbuild.status.success(), "{esbuild:?}");
    // tsc also type-checks the sources.
    let tsc = Command::new(bin.join("tsc"))
        .args(["-p", "tsconfig.json", "--outDir"])
        .arg(out.path())
        .current_dir(package())
        .output()
        .expect("tsc");
    assert!(
        tsc.status.success(),
        "{}",
        String::from_utf8_lossy(&tsc.stdout)
    );
    let dist = package().join("dist");
    let mut built: Vec<_> = std::fs::read_dir(out.path())
        .expect("built")
        .map(|e| e.expect("entry").file_name())
        .collect();
    built.sort();
    for name in &built {
        assert_eq!(
            std::fs::read_to_string(dist.join(name)).unwrap_or_default(),
            std::fs::read_to_string(out.path().join(name)).expect("built file"),
            "clients/js/dist/{} is stale: run `npm run build` in clients/js",
            name.to_string_lossy()
        );
    }
    let committed = std::fs::read_dir(&dist).expect("dist").count();
    assert_eq!(
        committed,
        built.len(),
        "dist holds files the build no longer makes"
    );
}

/// `test/hostile.mjs`: servers on loopback that refuse, throttle or never answer, and what the
/// client costs them (the Rust crate's own tests do the same in `clients/rust/src/tests.rs`).
#[test]
fn js_client_is_gentle_with_a_stage_that_refuses_or_stays_silent() {
    node_modules();
    let mut cmd = Command::new("node");
    cmd.arg("test/hostile.mjs").current_dir(package());
    die_with_parent(&mut cmd);
    let out = cmd
        .output()
        .expect("node is missing: install Debian's nodejs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches("ok: ").count(), 9, "{text}");
}

/// The scenarios in Node, then in a real browser (the page imports the module wsctl dev
/// serves), one after the other: each keeps a stage busy at 100 publishes a second.
#[tokio::test(flavor = "multi_thread")]
async fn js_client_keeps_its_promises_through_drops_in_node_and_chromium() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dev = busy_dev(dir.path());
    for name in SCENARIOS {
        let dev = &dev;
        let run = tokio::task::block_in_place(|| node_scenario(dev, name, None));
        if let Err(why) = run {
            panic!("{name} in Node: {why}");
        }
    }
    let browser = chromium(&dev.field("page"));
    let mut page = browser.page().await;
    // The demo page itself, not the blank page Chromium starts on (complete too, and with no
    // base URL to resolve `/_wsctl/client.js` against).
    page.wait_for(
        "the demo page",
        "document.readyState === 'complete' && location.protocol === 'http:'",
        "location.href",
    )
    .await;
    let cases = std::fs::read_to_string(package().join("test/cases.mjs")).expect("cases.mjs");
    let url = dev.field("url");
    let base = dev.base();
    for name in SCENARIOS {
        let start = format!(
            "window.__done = null; (async () => {{ \
               const {{ Client }} = await import('/_wsctl/client.js'); \
               const cases = await import(URL.createObjectURL(new Blob([{src}], {{ type: 'text/javascript' }}))); \
               return cases[{name}]({{ Client, url: {url}, base: {base}, options: {{ tag: 'chromium', messages: {SUITE_MESSAGES} }} }}); \
             }})().then((r) => window.__done = {{ ok: r }}, (e) => window.__done = {{ err: String(e && e.message || e) }}); true",
            src = json!(cases),
            name = json!(name),
            url = json!(url),
            base = json!(base),
        );
        page.eval(&start).await;
        let started = Instant::now();
        let done = loop {
            let v = page.eval("window.__done").await;
            if !v.is_null() {
                break v;
            }
            assert!(
                started.elapsed() < Duration::from_secs(900),
                "{name} in Chromium did not finish in 900 s"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        assert!(done["err"].is_null(), "{name} in Chromium: {}", done["err"]);
        eprintln!(
            "{}",
            json!({"scenario": name, "runtime": "chromium", "figures": done["ok"]})
        );
    }
}

/// The same scenarios for the Rust crate, which `wsctl connect` and `tail --messages` run on;
/// first, the fault switches they use refuse what they cannot do.
#[tokio::test(flavor = "multi_thread")]
async fn rust_client_keeps_its_promises_through_drops() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dev = busy_dev(dir.path());
    switches_refuse_bad_input(&dev).await;
    let stage = rust_cases::Stage {
        url: dev.field("url"),
        base: dev.base(),
    };
    for name in rust_cases::SCENARIOS {
        match rust_cases::run(name, &stage, Some(SUITE_MESSAGES)).await {
            Ok(figures) => eprintln!(
                "{}",
                json!({"scenario": name, "runtime": "rust", "figures": figures})
            ),
            Err(why) => panic!("{name} in Rust: {why}"),
        }
    }
}

/// `lose` takes 1 to 1000 frames of a connection that exists; `drop` a connection that exists;
/// `?user=` of nobody lists nothing.
async fn switches_refuse_bad_input(dev: &Dev) {
    let base = dev.base();
    let mut alice = dev.connect("alice").await;
    alice.send(json!({"action": "ping", "id": "up"})).await;
    alice
        .expect("pong", |v| v["type"] == "pong", Duration::from_secs(20))
        .await;
    let (_, listed) = http(&format!("{base}/_wsctl/connections?user=alice"), "GET", b"").await;
    let listed: Value = serde_json::from_str(&listed).expect("JSON");
    let id = listed["connections"][0]
        .as_str()
        .expect("alice's id")
        .to_string();
    for frames in ["0", "1001", "-1", "abc", "", "1e3"] {
        let (status, body) = http(
            &format!("{base}/_wsctl/connections/{id}/lose?frames={frames}"),
            "POST",
            b"",
        )
        .await;
        assert_eq!(status, 400, "frames={frames}: {body}");
        assert!(body.contains("from 1 to 1000"), "{body}");
    }
    let (status, _) = http(&format!("{base}/_wsctl/connections/{id}/lose"), "POST", b"").await;
    assert_eq!(status, 400, "no frames");
    for path in ["nobody%3D/lose?frames=3", "nobody%3D/drop"] {
        let (status, body) = http(&format!("{base}/_wsctl/connections/{path}"), "POST", b"").await;
        assert_eq!(status, 410, "{path}: {body}");
    }
    let (_, none) = http(
        &format!("{base}/_wsctl/connections?user=nobody"),
        "GET",
        b"",
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&none).expect("JSON"),
        json!({"connections": []})
    );
    // A loss on a connection that exists is answered and takes effect: alice misses one post.
    let (status, _) = http(
        &format!("{base}/_wsctl/connections/{id}/lose?frames=1"),
        "POST",
        b"",
    )
    .await;
    assert_eq!(status, 200);
    alice.send(json!({"action": "ping", "id": "lost"})).await;
    alice.send(json!({"action": "ping", "id": "kept"})).await;
    let pong = alice
        .expect("a pong", |v| v["type"] == "pong", Duration::from_secs(20))
        .await;
    assert_eq!(pong["id"], "kept", "the first post was swallowed");
}
