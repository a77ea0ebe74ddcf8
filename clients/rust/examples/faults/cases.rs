//! The fault scenarios of wsctl-client against a running `wsctl dev`, the same four as
//! clients/js/test/cases.mjs: `drops`, `gaps`, `renewal`, `presence`. Each returns its figures,
//! or says what went wrong. Shared by `cargo run --example faults` and the e2e tests.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wsctl_client::{Client, Event, Options, PresenceEvent, State, TokenGrant};

/// Where the stage is: `url` its WebSocket URL, `base` its HTTP root (token and fault switches).
#[derive(Clone)]
pub struct Stage {
    pub url: String,
    pub base: String,
}

pub const SCENARIOS: [&str; 4] = ["drops", "gaps", "renewal", "presence"];

pub async fn run(name: &str, stage: &Stage, messages: Option<u32>) -> Result<Value, String> {
    match name {
        "drops" => drops(stage, messages.unwrap_or(2000), 100).await,
        "gaps" => gaps(stage).await,
        "renewal" => renewal(stage, messages.unwrap_or(300).min(300), 20).await,
        "presence" => presence(stage).await,
        _ => Err(format!("no scenario {name}: {}", SCENARIOS.join(", "))),
    }
}

fn tag() -> String {
    format!("{:06x}", fastrand::u32(..0xff_ffff))
}

/// A plain HTTP/1.1 request to the dev server (127.0.0.1, no TLS).
async fn http(base: &str, method: &str, path: &str) -> Result<Option<Value>, String> {
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(host)
        .await
        .map_err(|e| format!("{method} {path}: {e}"))?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("{method} {path}: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .await
        .map_err(|e| format!("{method} {path}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if status == 410 {
        return Ok(None);
    }
    if !(200..300).contains(&status) {
        return Err(format!("{method} {path}: {status} {body}"));
    }
    Ok(Some(serde_json::from_str(body).unwrap_or(Value::Null)))
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A token from the dev server's `/_wsctl/token`, as an application's backend would mint it.
async fn dev_token(base: String, path: String) -> Result<TokenGrant, String> {
    let got = http(&base, "GET", &path).await?.unwrap_or_default();
    Ok(TokenGrant {
        token: got["token"].as_str().unwrap_or_default().to_string(),
        expires_at: got["expires_at"].as_u64(),
    })
}

fn token_path(user: &str, ttl: Option<u32>) -> String {
    let ttl = ttl.map(|t| format!("&ttl={t}")).unwrap_or_default();
    format!("/_wsctl/token?user={}{ttl}", enc(user))
}

fn options(stage: &Stage, user: &str, ttl: Option<u32>) -> Options {
    let (base, path) = (stage.base.clone(), token_path(user, ttl));
    Options::new(&stage.url).get_token(move || dev_token(base.clone(), path.clone()))
}

/// Cuts every open socket of `user` with the dev server's fault switch ($disconnect never runs).
async fn cut(stage: &Stage, user: &str) -> Result<usize, String> {
    let listed = http(
        &stage.base,
        "GET",
        &format!("/_wsctl/connections?user={}", enc(user)),
    )
    .await?
    .unwrap_or_default();
    let ids: Vec<String> = listed["connections"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    for id in &ids {
        http(
            &stage.base,
            "POST",
            &format!("/_wsctl/connections/{}/drop", enc(id)),
        )
        .await?;
    }
    Ok(ids.len())
}

/// Counts the client's `Connected` states from now on.
fn count_opens(client: &Client) -> Arc<Mutex<u32>> {
    let opens = Arc::new(Mutex::new(0));
    let mut events = client.events();
    let counter = opens.clone();
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            if let Event::State(s) = e
                && s.state == State::Connected
            {
                *counter.lock().unwrap() += 1;
            }
        }
    });
    opens
}

/// Until `count()` reaches `n`, failing only when it stops growing for `stall`: a loaded
/// machine is slow, not wrong.
async fn progress(
    what: impl Fn() -> String,
    count: impl Fn() -> usize,
    n: usize,
    stall: Duration,
) -> Result<(), String> {
    let mut last = count();
    let mut since = Instant::now();
    loop {
        let now = count();
        if now >= n {
            return Ok(());
        }
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() > stall {
            return Err(format!(
                "no progress for {} s waiting for {}",
                stall.as_secs(),
                what()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn until(what: impl Fn() -> String, pred: impl Fn() -> bool, ms: u64) -> Result<(), String> {
    let started = Instant::now();
    while !pred() {
        if started.elapsed() > Duration::from_millis(ms) {
            return Err(format!("timed out after {ms} ms waiting for {}", what()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// A publish's number and what it resolved with.
type Settled = (u32, Result<u64, String>);

/// (serial, i) of each delivery.
type Got = Arc<Mutex<Vec<(u64, u64)>>>;

/// Subscribes `client` to `channel`, recording each delivery's serial and `data.i`.
/// The time from each cut of a subscriber's socket to its next delivery: how long a reconnect
/// takes to resume. Nothing is timed until `cut_at` is set.
#[derive(Clone, Default)]
struct Resumes {
    cut_at: Arc<Mutex<Option<Instant>>>,
    took_ms: Arc<Mutex<Vec<u64>>>,
}

async fn record(client: &Client, channel: &str, resumes: Resumes) -> Result<Got, String> {
    let mut sub = client
        .channel(channel)
        .subscribe()
        .await
        .map_err(|e| format!("subscribe: {e}"))?;
    let got: Got = Arc::default();
    let into = got.clone();
    tokio::spawn(async move {
        while let Some(m) = sub.recv().await {
            if let Some(at) = resumes.cut_at.lock().unwrap().take() {
                let took = at.elapsed().as_millis() as u64;
                resumes.took_ms.lock().unwrap().push(took);
            }
            into.lock()
                .unwrap()
                .push((m.serial, m.data["i"].as_u64().unwrap_or_default()));
        }
    });
    Ok(got)
}

/// One subscriber's deliveries: exactly 1..n, in serial order, none twice.
fn check_deliveries(name: &str, got: &[(u64, u64)], n: u64) -> Result<(), String> {
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    for (k, &(serial, i)) in got.iter().enumerate() {
        if !seen.insert(i) {
            problems.push(format!("message {i} delivered twice"));
        }
        if k > 0 && serial <= got[k - 1].0 {
            problems.push(format!("serial {serial} after {}", got[k - 1].0));
        }
    }
    let missing: Vec<u64> = (1..=n).filter(|i| !seen.contains(i)).collect();
    if !missing.is_empty() {
        problems.push(format!(
            "{} messages missing (first: {:?})",
            missing.len(),
            &missing[..missing.len().min(5)]
        ));
    }
    if let Some(k) = got
        .iter()
        .enumerate()
        .position(|(k, m)| m.1 != k as u64 + 1)
    {
        problems.push(format!(
            "position {} holds message {}: not in publish order",
            k + 1,
            got[k].1
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        problems.truncate(5);
        Err(format!("{name}: {}", problems.join("; ")))
    }
}

fn percentile(sorted: &[u64], p: usize) -> Option<u64> {
    sorted
        .get((p * sorted.len() / 100).min(sorted.len().saturating_sub(1)))
        .copied()
}

/// Three subscribers, one publisher; `n` publishes at `rate` a second while each client's
/// socket is cut every ~2 s. Every subscriber sees every message once, in order; every publish
/// resolves once, with serials in publish order.
pub async fn drops(stage: &Stage, n: u32, rate: u32) -> Result<Value, String> {
    let tag = format!("rust-{}", tag());
    let channel = format!("faults-{tag}");
    let make = |user: &str| {
        let opts =
            options(stage, user, None).delays(Duration::from_millis(100), Duration::from_secs(2));
        Client::new(opts).map_err(|e| e.to_string())
    };
    struct Sub {
        user: String,
        client: Client,
        got: Got,
        opens: Arc<Mutex<u32>>,
        resumes: Resumes,
    }
    let mut subs = Vec::new();
    for k in 0..3 {
        let user = format!("sub{k}-{tag}");
        let client = make(&user)?;
        let opens = count_opens(&client);
        let resumes = Resumes::default();
        let got = record(&client, &channel, resumes.clone()).await?;
        subs.push(Sub {
            user,
            client,
            got,
            opens,
            resumes,
        });
    }
    let publisher_name = format!("pub-{tag}");
    let publisher = make(&publisher_name)?;
    let resolved: Arc<Mutex<Vec<Settled>>> = Arc::default();

    let cutting = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let cutter = {
        let users: Vec<String> = subs
            .iter()
            .map(|s| s.user.clone())
            .chain([publisher_name.clone()])
            .collect();
        let cut_ats: Vec<_> = subs.iter().map(|s| s.resumes.cut_at.clone()).collect();
        let (stage, cutting) = (stage.clone(), cutting.clone());
        tokio::spawn(async move {
            let mut cuts = 0;
            let mut k = 0;
            // One client every 500 ms: each one's socket goes every ~2 s.
            while cutting.load(std::sync::atomic::Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(2000 / users.len() as u64)).await;
                let who = k % users.len();
                k += 1;
                let dropped = cut(&stage, &users[who]).await?;
                if dropped > 0
                    && let Some(at) = cut_ats.get(who)
                {
                    at.lock().unwrap().get_or_insert_with(Instant::now);
                }
                cuts += dropped;
            }
            Ok::<usize, String>(cuts)
        })
    };

    let started = Instant::now();
    for i in 1..=n {
        let due = started + Duration::from_secs_f64(f64::from(i) / f64::from(rate));
        tokio::time::sleep_until(due.into()).await;
        let ack = publisher.publish(&channel, json!({"i": i}), Some(format!("{tag}-{i}")));
        let resolved = resolved.clone();
        tokio::spawn(async move {
            let r = ack.await.map(|r| r.serial).map_err(|e| e.to_string());
            resolved.lock().unwrap().push((i, r));
        });
    }
    let settled = || resolved.lock().unwrap().len();
    let waited = progress(
        || format!("every publish to resolve ({} of {n} did)", settled()),
        settled,
        n as usize,
        Duration::from_secs(60),
    )
    .await;
    cutting.store(false, std::sync::atomic::Ordering::Relaxed);
    let cuts = cutter.await.map_err(|e| e.to_string())??;
    if let Err(why) = waited {
        let done: HashSet<u32> = resolved.lock().unwrap().iter().map(|r| r.0).collect();
        let never = (1..=n).find(|i| !done.contains(i)).unwrap_or(0);
        return Err(format!("{why}; publish {never} never resolved"));
    }
    progress(
        || {
            let have: Vec<String> = subs
                .iter()
                .map(|s| s.got.lock().unwrap().len().to_string())
                .collect();
            format!(
                "every subscriber to get {n} messages (they have {})",
                have.join(", ")
            )
        },
        || {
            subs.iter()
                .map(|s| s.got.lock().unwrap().len())
                .min()
                .unwrap_or(0)
        },
        n as usize,
        Duration::from_secs(60),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await; // a late duplicate would show now
    publisher.close().await;
    for s in &subs {
        s.client.close().await;
    }

    let mut results = resolved.lock().unwrap().clone();
    let failures: Vec<String> = results
        .iter()
        .filter_map(|(i, r)| r.as_ref().err().map(|e| format!("publish {i}: {e}")))
        .collect();
    if !failures.is_empty() {
        return Err(failures[..failures.len().min(5)].join("; "));
    }
    results.sort_by_key(|r| r.0);
    for pair in results.windows(2) {
        if pair[0].0 == pair[1].0 {
            return Err(format!("publish {} resolved twice", pair[0].0));
        }
        if pair[1].1 <= pair[0].1 {
            return Err(format!(
                "publish {} got serial {:?} after {:?}: not in publish order",
                pair[1].0, pair[1].1, pair[0].1
            ));
        }
    }
    for s in &subs {
        check_deliveries(&s.user, &s.got.lock().unwrap(), u64::from(n))?;
    }
    let mut resumes: Vec<u64> = subs
        .iter()
        .flat_map(|s| s.resumes.took_ms.lock().unwrap().clone())
        .collect();
    resumes.sort_unstable();
    let reconnects: u32 = subs.iter().map(|s| *s.opens.lock().unwrap() - 1).sum();
    Ok(json!({
        "messages": n,
        "subscribers": subs.len(),
        "cuts": cuts,
        "reconnects": reconnects,
        "seconds": started.elapsed().as_secs_f64(),
        "resume_ms": {
            "count": resumes.len(),
            "p50": percentile(&resumes, 50),
            "p99": percentile(&resumes, 99),
            "max": resumes.last(),
        },
    }))
}

/// Tokens that live 5 s, renewed through `get_token` with `auth` frames while messages flow:
/// none lost, and the connection never opened again.
pub async fn renewal(stage: &Stage, n: u32, rate: u32) -> Result<Value, String> {
    let tag = tag();
    let channel = format!("renewal-{tag}");
    let asked = Arc::new(Mutex::new(0u32));
    let (base, path) = (
        stage.base.clone(),
        token_path(&format!("renew-{tag}"), Some(5)),
    );
    let counter = asked.clone();
    let sub = Client::new(Options::new(&stage.url).get_token(move || {
        *counter.lock().unwrap() += 1;
        dev_token(base.clone(), path.clone())
    }))
    .map_err(|e| e.to_string())?;
    let opens = count_opens(&sub);
    let got = record(&sub, &channel, Resumes::default()).await?;
    let publisher = Client::new(options(stage, &format!("renew-pub-{tag}"), Some(5)))
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut acks = Vec::new();
    for i in 1..=n {
        let due = started + Duration::from_secs_f64(f64::from(i) / f64::from(rate));
        tokio::time::sleep_until(due.into()).await;
        let (p, c) = (publisher.clone(), channel.clone());
        acks.push(tokio::spawn(async move {
            p.publish(&c, json!({"i": i}), None).await
        }));
    }
    for a in acks {
        a.await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("publish: {e}"))?;
    }
    until(
        || format!("{n} messages (got {})", got.lock().unwrap().len()),
        || got.lock().unwrap().len() >= n as usize,
        30_000,
    )
    .await?;
    sub.close().await;
    publisher.close().await;
    check_deliveries(
        "the renewing subscriber",
        &got.lock().unwrap(),
        u64::from(n),
    )?;
    let asked = *asked.lock().unwrap();
    let opens = *opens.lock().unwrap();
    if asked < 3 {
        return Err(format!(
            "get_token was called {asked} times in {} s of 5 s tokens: no renewal happened",
            n / rate
        ));
    }
    if opens != 1 {
        return Err(format!(
            "the subscriber connected {opens} times: a renewal should keep the connection"
        ));
    }
    Ok(json!({"messages": n, "tokens": asked, "connections": opens,
              "seconds": started.elapsed().as_secs_f64()}))
}

/// A member whose socket is cut and who comes back is, to the others, present all along: no
/// leave then enter for a reconnect.
pub async fn presence(stage: &Stage) -> Result<Value, String> {
    let tag = format!("rust-{}", tag());
    let channel = format!("presence-{tag}");
    let watcher =
        Client::new(options(stage, &format!("watch-{tag}"), None)).map_err(|e| e.to_string())?;
    let ch = watcher.channel(&channel);
    let mut presence_events = ch.presence().events();
    let events: Arc<Mutex<Vec<String>>> = Arc::default();
    let into = events.clone();
    tokio::spawn(async move {
        while let Some(e) = presence_events.recv().await {
            let line = match e {
                PresenceEvent::Enter { user, .. } => format!("enter {user}"),
                PresenceEvent::Leave { user, .. } => format!("leave {user}"),
                PresenceEvent::Update { user, .. } => format!("update {user}"),
            };
            into.lock().unwrap().push(line);
        }
    });
    let _watching = ch.subscribe().await.map_err(|e| e.to_string())?;
    let member = format!("member-{tag}");
    let mover = Client::new(
        options(stage, &member, None).delays(Duration::from_millis(100), Duration::from_secs(15)),
    )
    .map_err(|e| e.to_string())?;
    let opens = count_opens(&mover);
    let _moving = mover
        .channel(&channel)
        .subscribe()
        .await
        .map_err(|e| e.to_string())?;
    mover
        .channel(&channel)
        .presence()
        .enter(json!({"name": "mover"}));
    let entered = format!("enter {member}");
    until(
        || {
            format!(
                "the watcher to see {member} enter (events: {:?})",
                events.lock().unwrap()
            )
        },
        || events.lock().unwrap().contains(&entered),
        10_000,
    )
    .await?;
    for _ in 0..3 {
        let before = *opens.lock().unwrap();
        cut(stage, &member).await?;
        until(
            || "the member to reconnect".into(),
            || *opens.lock().unwrap() > before,
            10_000,
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let listed = ch.presence().members().await.map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_secs(3)).await; // past the leave grace
    mover.close().await;
    watcher.close().await;
    let about: Vec<String> = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.ends_with(&format!(" {member}")))
        .cloned()
        .collect();
    if about != [entered] {
        return Err(format!(
            "the watcher saw {about:?} for a member that only reconnected"
        ));
    }
    if !listed.iter().any(|m| m.user == member) {
        return Err(format!("members() does not list {member}: {listed:?}"));
    }
    Ok(json!({"reconnects": *opens.lock().unwrap() - 1, "events": about, "listed": listed.len()}))
}

/// Deliveries lost on the way (the dev server's loss switch swallows three posts to the
/// subscriber): the next message shows the gap and history refills it. Then messages
/// published while the subscriber is away, with nothing after them: only the resume brings
/// them.
pub async fn gaps(stage: &Stage) -> Result<Value, String> {
    let tag = format!("rust-{}", tag());
    let channel = format!("gaps-{tag}");
    let user = format!("gap-{tag}");
    // A slow comeback, so the second step's messages are all published while it is away.
    let sub = Client::new(
        options(stage, &user, None).delays(Duration::from_secs(4), Duration::from_secs(4)),
    )
    .map_err(|e| e.to_string())?;
    let got = record(&sub, &channel, Resumes::default()).await?;
    let publisher =
        Client::new(options(stage, &format!("gap-pub-{tag}"), None)).map_err(|e| e.to_string())?;
    let mut i = 0;
    let mut send = async |k: u64| -> Result<(), String> {
        let mut acks = Vec::new();
        for _ in 0..k {
            i += 1;
            acks.push(publisher.publish(&channel, json!({"i": i}), None));
        }
        for a in acks {
            a.await.map_err(|e| e.to_string())?;
        }
        Ok(())
    };
    let seen = |got: &Got| {
        got.lock()
            .unwrap()
            .iter()
            .map(|m| m.1.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    send(5).await?;
    until(
        || format!("the first 5 messages (got {})", seen(&got)),
        || got.lock().unwrap().len() >= 5,
        10_000,
    )
    .await?;
    let listed = http(
        &stage.base,
        "GET",
        &format!("/_wsctl/connections?user={}", enc(&user)),
    )
    .await?
    .unwrap_or_default();
    let id = listed["connections"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    http(
        &stage.base,
        "POST",
        &format!("/_wsctl/connections/{}/lose?frames=3", enc(&id)),
    )
    .await?;
    send(5).await?;
    until(
        || {
            format!(
                "messages 6-10 after three deliveries were lost (got {})",
                seen(&got)
            )
        },
        || got.lock().unwrap().len() >= 10,
        10_000,
    )
    .await?;
    let opens = count_opens(&sub);
    cut(stage, &user).await?;
    send(5).await?;
    until(
        || {
            format!(
                "messages 11-15, published while the subscriber was away (got {})",
                seen(&got)
            )
        },
        || got.lock().unwrap().len() >= 15,
        15_000,
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    sub.close().await;
    publisher.close().await;
    check_deliveries("the subscriber", &got.lock().unwrap(), 15)?;
    let opens = *opens.lock().unwrap();
    if opens != 1 {
        return Err(format!(
            "the subscriber reconnected {opens} times, not once"
        ));
    }
    Ok(json!({"messages": 15, "lost_deliveries": 3, "reconnects": opens}))
}
