//! `wsctl bench` against `wsctl dev`: every delivery counted, its HTML report seen in headless
//! Chromium; against a server that loses, repeats and reorders on purpose: each fault caught;
//! and the targets and tokens it must refuse.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use wsctl_tests::dev::{Dev, http};
use wsctl_tests::pubsub::{Faults, pubsub_server};
use wsctl_tests::{isolate, root, stdout_json, text, wsctl_bin};

use crate::browser::chromium;

/// `wsctl ARGS` with the repository's wsctl.yaml and throwaway credentials, not started.
fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(wsctl_bin());
    cmd.arg("--config")
        .arg(root().join("wsctl.yaml"))
        .args(args);
    isolate(&mut cmd);
    cmd.env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_REGION", "us-east-1");
    cmd
}

fn wsctl(args: &[&str]) -> Output {
    command(args).output().expect("run wsctl")
}

/// `wsctl --endpoint-url ENDPOINT --output json bench ARGS`.
fn bench(endpoint: &str, args: &[&str]) -> Output {
    wsctl(
        &[
            &["--endpoint-url", endpoint, "--output", "json", "bench"],
            args,
        ]
        .concat(),
    )
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bench_against_wsctl_dev_counts_every_delivery_and_its_report_opens_in_chromium() {
    let dev = Dev::start(&root().join("wsctl.yaml"), &[]);
    let endpoint = dev.base();
    let report_file = wsctl_tests::target_dir().join("bench-report.html");
    let _ = std::fs::remove_file(&report_file);

    // Fan-out rounds: 60 subscribers over 3 channels, 6 rounds from 2 publishers.
    let out = bench(
        &endpoint,
        &[
            "--connections",
            "60",
            "--rate",
            "300",
            "--channels",
            "3",
            "--publishers",
            "2",
            "--rounds",
            "6",
            "--report",
            report_file.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let r = stdout_json(&out);
    assert_eq!(r["clean"], true, "{r:#}");
    assert_eq!(n(&r["connections"]["opened"]), 60);
    assert_eq!(n(&r["connections"]["failed"]), 0);
    let d = &r["delivery"];
    // Each round reaches the 20 subscribers of its channel, once each, in serial order.
    assert_eq!((n(&d["expected"]), n(&d["delivered"])), (120, 120), "{d:#}");
    assert_eq!(
        (n(&d["lost"]), n(&d["duplicated"]), n(&d["out_of_order"])),
        (0, 0, 0)
    );
    assert_eq!(n(&d["latency"]["count"]), 120);
    let bars: u64 = d["histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| n(&b["count"]))
        .sum();
    assert_eq!(bars, 120, "the histogram holds every delivery");
    for c in r["channels"].as_array().unwrap() {
        assert_eq!(
            (n(&c["subscribers"]), n(&c["published"]), n(&c["delivered"])),
            (20, 2, 40),
            "{c}"
        );
    }
    let rounds = r["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 6);
    assert!(
        rounds.iter().all(|r| r["all_ms"].as_f64().is_some()),
        "every round reached all its subscribers: {rounds:?}"
    );
    assert_eq!(n(&r["publishes"]["acked"]), 6);
    assert_eq!(r["plan"]["via"], "socket");
    assert!(
        r["posts"].is_null() && r["limits"]["gone"].is_null(),
        "publisher connections never see a post's answer: {r:#}"
    );

    // A steady rate, connections then dropped without a close frame: every `$disconnect`
    // still runs, as API Gateway's does when a client vanishes.
    let out = bench(
        &endpoint,
        &[
            "--connections",
            "40",
            "--rate",
            "300",
            "--channels",
            "2",
            "--publish-rate",
            "10",
            "--duration",
            "2s",
            "--end",
            "drop",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let r = stdout_json(&out);
    let d = &r["delivery"];
    assert_eq!((n(&d["expected"]), n(&d["delivered"])), (400, 400), "{r:#}");
    assert_eq!(
        (n(&d["lost"]), n(&d["duplicated"]), n(&d["out_of_order"])),
        (0, 0, 0)
    );
    let started = Instant::now();
    while !dev.connection_ids().await.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "dropped connections still listed: {:?}",
            dev.connection_ids().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A publish the stage refuses (data over the protocol's 120 KB once the bench's own fields
    // are added) is counted by its error code, and the run is not clean. The message reaches
    // the function at all because it is sent in frames of 32 KB: API Gateway closes a
    // connection that sends a larger frame (1009).
    let out = bench(
        &endpoint,
        &[
            "--connections",
            "2",
            "--rounds",
            "1",
            "--size",
            "122880",
            "--drain",
            "2s",
        ],
    );
    assert_eq!(out.status.code(), Some(10), "{}", text(&out));
    let r = stdout_json(&out);
    assert_eq!(
        (n(&r["publishes"]["sent"]), n(&r["publishes"]["rejected"])),
        (1, 1),
        "{r:#}"
    );
    assert_eq!(r["errors"]["error: too_large"], 1, "{r:#}");
    assert_eq!(r["closes"], serde_json::json!({}), "no 1009: {r:#}");

    // A report it could not write is said before any load.
    let out = bench(&endpoint, &["--report", "/nonexistent/dir/report.html"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot write the report to /nonexistent"),
        "{}",
        text(&out)
    );
    assert!(out.stdout.is_empty(), "no run: {}", text(&out));

    // What it refuses: another host, a forged token.
    for url in ["ws://203.0.113.9/dev", "wss://example.com/dev"] {
        let out = wsctl(&[
            "--endpoint-url",
            &endpoint,
            "bench",
            "--url",
            url,
            "--token",
            "t",
        ]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("refusing to load {url}")) && err.contains(&dev.field("url")),
            "names the URL and the stack's own stage: {err}"
        );
    }
    let out = wsctl(&[
        "--endpoint-url",
        &endpoint,
        "bench",
        "--connections",
        "3",
        "--token",
        "forged.token.here",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refused every connection's token"),
        "{}",
        text(&out)
    );

    // The report in a browser: the histogram drawn with every delivery, and the summary.
    let browser = chromium(&format!("file://{}", report_file.display()));
    let mut page = browser.page().await;
    let shown = "document.body ? document.body.innerText.slice(0, 500) : 'nothing'";
    page.wait_for(
        "the histogram",
        "document.readyState === 'complete' && document.querySelectorAll('#latency-histogram rect.bar').length > 0",
        shown,
    )
    .await;
    let drawn = page
        .eval("[...document.querySelectorAll('#latency-histogram rect.bar')].reduce((n, b) => n + Number(b.dataset.count), 0)")
        .await;
    assert_eq!(drawn, 120, "the bars add up to the deliveries");
    let visible = page
        .eval("(() => { const r = document.getElementById('latency-histogram').getBoundingClientRect(); const bars = [...document.querySelectorAll('#latency-histogram rect.bar')]; return r.width > 300 && r.height > 100 && bars.every(b => b.getBoundingClientRect().height > 0); })()")
        .await;
    assert_eq!(visible, true, "the histogram is laid out with visible bars");
    let summary = page
        .eval("document.getElementById('summary').innerText")
        .await;
    assert!(
        summary
            .as_str()
            .unwrap_or_default()
            .contains("120 of 120 delivered"),
        "{summary}"
    );
    let timeline = page
        .eval("document.querySelectorAll('#timeline polyline').length")
        .await;
    assert_eq!(timeline, 2, "connections and deliveries over time");
    page.screenshot("bench-report.png").await;
}

/// A subscriber whose connection ends without `$disconnect` (API Gateway delivers it on a
/// best-effort basis) stays listed until a post to it is answered 410 Gone: the publish
/// function counts each such answer, removes the connection, and the bench reports the sum.
#[tokio::test(flavor = "multi_thread")]
async fn a_bench_through_the_publish_function_counts_its_posts_and_the_410s_of_lost_subscribers() {
    let dev = Dev::start(&root().join("wsctl.yaml"), &[]);
    let endpoint = dev.base();
    let before = dev.connection_ids().await;
    let mut child = command(&[
        "--endpoint-url",
        &endpoint,
        "--output",
        "json",
        "bench",
        "--via",
        "function",
        "--connections",
        "30",
        "--rate",
        "300",
        "--rounds",
        "3",
        "--hold",
        "8s",
        "--drain",
        "3s",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start wsctl bench");
    // Progress lines go to stderr; the hold starts once every subscribe has been answered.
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            all.push_str(&line);
            all.push('\n');
            let _ = lines_tx.send(line);
        }
        all
    });
    let started = Instant::now();
    loop {
        match lines.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.contains("hold:") => break,
            Ok(_) => {}
            Err(e) => panic!("no hold phase after {:?}: {e}", started.elapsed()),
        }
    }
    let subscribers: Vec<String> = dev
        .connection_ids()
        .await
        .into_iter()
        .filter(|id| !before.contains(id))
        .collect();
    assert_eq!(subscribers.len(), 30, "{subscribers:?}");
    for id in &subscribers[..3] {
        let (status, body) = http(
            &format!("{endpoint}/_wsctl/connections/{id}/drop"),
            "POST",
            b"",
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .expect("wsctl bench");
    let err = reader.join().unwrap();
    let shown = format!("{}\n{err}", String::from_utf8_lossy(&out.stdout));
    // Three subscribers lost their connection: not clean, exit 10.
    assert_eq!(out.status.code(), Some(10), "{shown}");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {shown}"));
    assert_eq!(r["plan"]["via"], "function");
    let p = &r["publishes"];
    assert_eq!((n(&p["sent"]), n(&p["acked"])), (3, 3), "{r:#}");
    // 410 once per lost subscriber: the first post removes it, the next publishes skip it.
    let posts = &r["posts"];
    assert_eq!(
        (
            n(&posts["delivered"]),
            n(&posts["gone"]),
            n(&posts["failed"])
        ),
        (3 * 27, 3, 0),
        "{r:#}"
    );
    assert_eq!(r["limits"]["gone"], 3, "{r:#}");
    let d = &r["delivery"];
    assert_eq!(
        (n(&d["delivered"]), n(&d["lost"]), n(&d["duplicated"])),
        (3 * 27, 3 * 3, 0),
        "the function's count is what the subscribers received: {r:#}"
    );
    let closes: u64 = r["closes"].as_object().unwrap().values().map(n).sum();
    assert_eq!(closes, 3, "{r:#}");
    assert!(shown.contains("through the publish function"), "{shown}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bench_catches_a_lost_a_repeated_and_a_late_message() {
    let url = pubsub_server(Faults {
        lose: Some(2),
        repeat: Some(3),
        delay: Some(4),
    })
    .await;
    let run = url.clone();
    let out = tokio::task::spawn_blocking(move || {
        wsctl(&[
            "--output",
            "json",
            "bench",
            "--url",
            &run,
            "--token",
            "any",
            "--connections",
            "4",
            "--rounds",
            "6",
            "--drain",
            "1s",
        ])
    })
    .await
    .unwrap();
    // Exit 10: the run finished, and what it found is not clean.
    assert_eq!(out.status.code(), Some(10), "{}", text(&out));
    let r = stdout_json(&out);
    let d = &r["delivery"];
    assert_eq!(r["clean"], false);
    assert_eq!(n(&d["expected"]), 24, "{d:#}");
    assert_eq!(n(&d["lost"]), 1, "serial 2 never reached one subscriber");
    assert_eq!(n(&d["duplicated"]), 4, "serial 3 came twice to each of 4");
    assert_eq!(
        n(&d["out_of_order"]),
        4,
        "serial 4 came after 5 to each of 4"
    );
    assert_eq!(n(&d["delivered"]), 23);
    let rounds = r["rounds"].as_array().unwrap();
    assert_eq!(rounds[1]["delivered"], 3, "{rounds:?}");
    assert!(rounds[1]["all_ms"].is_null());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not everything went through"),
        "{}",
        text(&out)
    );
}
