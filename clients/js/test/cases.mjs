// The fault scenarios of @wsctl/client against a running `wsctl dev`, shared by Node
// (scenarios.mjs) and Chromium (the e2e test loads this file into a page). Each case gets
// { Client, WebSocket, url, base, options } and resolves with its figures, or throws saying
// what went wrong. Nothing here may import: a browser loads it from a blob.

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function json(base, path, method = "GET") {
  const r = await fetch(base + path, { method });
  if (!r.ok && r.status !== 410) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
  return r.status === 410 ? null : r.json();
}

const token = (base, user, ttl) => async () => {
  const got = await json(base, `/_wsctl/token?user=${encodeURIComponent(user)}${ttl ? `&ttl=${ttl}` : ""}`);
  return { token: got.token, expiresAt: got.expires_at };
};

/** Cuts every open socket of `user` with the dev server's fault switch ($disconnect never runs). */
async function cut(base, user) {
  const { connections } = await json(base, `/_wsctl/connections?user=${encodeURIComponent(user)}`);
  for (const id of connections) await json(base, `/_wsctl/connections/${encodeURIComponent(id)}/drop`, "POST");
  return connections.length;
}

function percentile(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** Until `count()` reaches `n`, failing only when it stops growing for `stall` ms: a loaded machine is slow, not wrong. */
function progress(what, count, n, stall) {
  return new Promise((resolve, reject) => {
    let last = count();
    let since = Date.now();
    const t = setInterval(() => {
      const now = count();
      if (now >= n) {
        clearInterval(t);
        resolve();
      } else if (now !== last) {
        last = now;
        since = Date.now();
      } else if (Date.now() - since > stall) {
        clearInterval(t);
        reject(new Error(`no progress for ${stall} ms waiting for ${what()}`));
      }
    }, 50);
  });
}

function until(what, pred, ms) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const t = setInterval(() => {
      if (pred()) {
        clearInterval(t);
        resolve();
      } else if (Date.now() - started > ms) {
        clearInterval(t);
        reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
      }
    }, 20);
  });
}

/** Checks one subscriber's deliveries: exactly 1..n, in serial order, none twice. */
function checkDeliveries(name, got, n) {
  const problems = [];
  const seen = new Set();
  for (let k = 0; k < got.length; k++) {
    const m = got[k];
    if (seen.has(m.i)) problems.push(`message ${m.i} delivered twice`);
    seen.add(m.i);
    if (k > 0 && m.serial <= got[k - 1].serial) problems.push(`serial ${m.serial} after ${got[k - 1].serial}`);
  }
  const missing = [];
  for (let i = 1; i <= n; i++) if (!seen.has(i)) missing.push(i);
  if (missing.length) problems.push(`${missing.length} messages missing (first: ${missing.slice(0, 5).join(", ")})`);
  for (let k = 0; k < got.length; k++) {
    if (got[k].i !== k + 1) {
      problems.push(`position ${k + 1} holds message ${got[k].i}: not in publish order`);
      break;
    }
  }
  if (problems.length) throw new Error(`${name}: ${problems.slice(0, 5).join("; ")}`);
}

/**
 * Three subscribers, one publisher; `messages` publishes at `rate` a second while each client's
 * socket is cut every ~2 s. Every subscriber must see every message once, in order; every
 * publish must resolve once, with serials in publish order.
 */
export async function drops({ Client, WebSocket, url, base, options = {} }) {
  const n = options.messages ?? 2000;
  const rate = options.rate ?? 100;
  const every = options.cutEveryMs ?? 2000;
  const tag = `${options.tag ?? "drops"}-${Math.random().toString(36).slice(2, 8)}`;
  const channel = `faults-${tag}`;
  const names = [0, 1, 2].map((k) => `sub${k}-${tag}`);
  const publisherName = `pub-${tag}`;
  const make = (user) => new Client({ url, WebSocket, getToken: token(base, user), minDelayMs: 100, maxDelayMs: 2000 });

  const subscribers = names.map((user) => {
    const client = make(user);
    const s = { user, client, got: [], cutAt: null, resumes: [], reconnects: 0 };
    client.on("state", (c) => {
      if (c.state === "connected") s.reconnects++;
    });
    return s;
  });
  await Promise.all(
    subscribers.map((s) =>
      s.client.channel(channel).subscribe((m) => {
        if (s.cutAt !== null) {
          s.resumes.push(Date.now() - s.cutAt);
          s.cutAt = null;
        }
        s.got.push({ serial: m.serial, i: m.data.i });
      }),
    ),
  );
  const publisher = make(publisherName);
  const resolved = new Array(n + 1).fill(0);
  const serials = new Array(n + 1).fill(null);
  const failures = [];

  let cutting = true;
  let cuts = 0;
  const clients = [...subscribers.map((s) => s.user), publisherName];
  const cutter = (async () => {
    // One client every `every / 4` ms: each one's socket goes every ~`every` ms.
    for (let k = 0; cutting; k++) {
      await sleep(every / clients.length);
      if (!cutting) break;
      const user = clients[k % clients.length];
      const s = subscribers.find((s) => s.user === user);
      const dropped = await cut(base, user);
      if (dropped && s && s.cutAt === null) s.cutAt = Date.now();
      cuts += dropped;
    }
  })();

  const started = Date.now();
  const publishes = [];
  for (let i = 1; i <= n; i++) {
    const due = started + (i * 1000) / rate;
    const wait = due - Date.now();
    if (wait > 0) await sleep(wait);
    publishes.push(
      publisher.publish(channel, { i }, { id: `${tag}-${i}` }).then(
        (r) => {
          resolved[i]++;
          serials[i] = r.serial;
        },
        (e) => failures.push(`publish ${i}: ${e.message}`),
      ),
    );
  }
  const settled = () => resolved.reduce((a, r) => a + r, 0) + failures.length;
  await progress(() => `every publish to resolve (${settled()} of ${n} did)`, settled, n, 60_000).catch((e) => {
    cutting = false;
    const never = resolved.findIndex((r, i) => i > 0 && r === 0);
    throw new Error(`${e.message}; publish ${never} never resolved`);
  });
  cutting = false;
  await cutter;
  await progress(
    () => `every subscriber to get ${n} messages (they have ${subscribers.map((s) => s.got.length).join(", ")})`,
    () => Math.min(...subscribers.map((s) => s.got.length)),
    n,
    60_000,
  );
  await sleep(500); // a late duplicate would show now
  for (const c of [publisher, ...subscribers.map((s) => s.client)]) c.close();

  if (failures.length) throw new Error(failures.slice(0, 5).join("; "));
  const twice = resolved.findIndex((r, i) => i > 0 && r !== 1);
  if (twice > 0) throw new Error(`publish ${twice} resolved ${resolved[twice]} times`);
  for (let i = 2; i <= n; i++) {
    if (!(serials[i] > serials[i - 1])) throw new Error(`publish ${i} got serial ${serials[i]} after ${serials[i - 1]}: not in publish order`);
  }
  for (const s of subscribers) checkDeliveries(s.user, s.got, n);
  const resumes = subscribers.flatMap((s) => s.resumes).sort((a, b) => a - b);
  return {
    messages: n,
    subscribers: subscribers.length,
    cuts,
    reconnects: subscribers.reduce((a, s) => a + s.reconnects - 1, 0),
    seconds: (Date.now() - started) / 1000,
    resume_ms: { count: resumes.length, p50: percentile(resumes, 50), p99: percentile(resumes, 99), max: resumes[resumes.length - 1] ?? null },
  };
}

/**
 * Tokens that live 5 s, renewed through `getToken` with `auth` frames while messages flow:
 * none lost, and the connection never had to be opened again.
 */
export async function renewal({ Client, WebSocket, url, base, options = {} }) {
  const n = options.messages ?? 300;
  const rate = options.rate ?? 20;
  const tag = Math.random().toString(36).slice(2, 8);
  const channel = `renewal-${tag}`;
  let asked = 0;
  const short = token(base, `renew-${tag}`, 5);
  const sub = new Client({ url, WebSocket, getToken: () => (asked++, short()) });
  let opens = 0;
  sub.on("state", (c) => c.state === "connected" && opens++);
  const got = [];
  await sub.channel(channel).subscribe((m) => got.push({ serial: m.serial, i: m.data.i }));
  const publisher = new Client({ url, WebSocket, getToken: token(base, `renew-pub-${tag}`, 5) });
  const started = Date.now();
  const acks = [];
  for (let i = 1; i <= n; i++) {
    const wait = started + (i * 1000) / rate - Date.now();
    if (wait > 0) await sleep(wait);
    acks.push(publisher.publish(channel, { i }));
  }
  await Promise.all(acks);
  await until(`${n} messages (got ${got.length})`, () => got.length >= n, 30_000);
  sub.close();
  publisher.close();
  checkDeliveries("the renewing subscriber", got, n);
  if (asked < 3) throw new Error(`getToken was called ${asked} times in ${n / rate} s of 5 s tokens: no renewal happened`);
  if (opens !== 1) throw new Error(`the subscriber connected ${opens} times: a renewal should keep the connection`);
  return { messages: n, tokens: asked, connections: opens, seconds: (Date.now() - started) / 1000 };
}

/**
 * A member whose socket is cut and who comes back is, to the others, present all along: no
 * `leave` then `enter` for a reconnect.
 */
export async function presence({ Client, WebSocket, url, base, options = {} }) {
  const tag = `${options.tag ?? "p"}-${Math.random().toString(36).slice(2, 8)}`;
  const channel = `presence-${tag}`;
  const watcher = new Client({ url, WebSocket, getToken: token(base, `watch-${tag}`) });
  const events = [];
  const ch = watcher.channel(channel);
  for (const e of ["enter", "leave", "update"]) ch.presence.on(e, (ev) => events.push(`${e} ${ev.user}`));
  await ch.subscribe();
  const member = `member-${tag}`;
  const mover = new Client({ url, WebSocket, getToken: token(base, member), minDelayMs: 100 });
  let opens = 0;
  mover.on("state", (c) => c.state === "connected" && opens++);
  await mover.channel(channel).subscribe();
  await mover.channel(channel).presence.enter({ name: "mover" });
  await until(`the watcher to see ${member} enter (events: ${events.join(", ")})`, () => events.includes(`enter ${member}`), 10_000);
  for (let k = 0; k < 3; k++) {
    const before = opens;
    await cut(base, member);
    await until("the member to reconnect", () => opens > before, 10_000);
    await sleep(1500);
  }
  // Everyone the watcher lists is there, the member once.
  const listed = await ch.presence.members();
  await sleep(3000); // past the leave grace
  mover.close();
  watcher.close();
  const about = events.filter((e) => e.endsWith(` ${member}`));
  if (about.join(",") !== `enter ${member}`) throw new Error(`the watcher saw ${about.join(", ")} for a member that only reconnected`);
  if (!listed.some((m) => m.user === member)) throw new Error(`members() does not list ${member}: ${JSON.stringify(listed)}`);
  return { reconnects: opens - 1, events: about, listed: listed.length };
}

/**
 * Deliveries lost on the way (the dev server's loss switch swallows three posts to the
 * subscriber): the next message shows the gap, and history refills it. Then messages published
 * while the subscriber is away, with nothing after them: only the resume brings them.
 */
export async function gaps({ Client, WebSocket, url, base, options = {} }) {
  const tag = `${options.tag ?? "g"}-${Math.random().toString(36).slice(2, 8)}`;
  const channel = `gaps-${tag}`;
  const user = `gap-${tag}`;
  // A slow comeback, so the second step's messages are all published while it is away.
  const sub = new Client({ url, WebSocket, getToken: token(base, user), minDelayMs: 4000, maxDelayMs: 4000 });
  const got = [];
  await sub.channel(channel).subscribe((m) => got.push({ serial: m.serial, i: m.data.i }));
  const publisher = new Client({ url, WebSocket, getToken: token(base, `gap-pub-${tag}`) });
  let i = 0;
  const send = (k) => Promise.all(Array.from({ length: k }, () => publisher.publish(channel, { i: ++i })));
  await send(5);
  await until(`the first 5 messages (got ${got.length})`, () => got.length >= 5, 10_000);

  const { connections } = await json(base, `/_wsctl/connections?user=${encodeURIComponent(user)}`);
  await json(base, `/_wsctl/connections/${encodeURIComponent(connections[0])}/lose?frames=3`, "POST");
  await send(5);
  await until(`messages 6-10 after three deliveries were lost (got ${got.map((m) => m.i).join(",")})`, () => got.length >= 10, 10_000);

  let opens = 0;
  sub.on("state", (c) => c.state === "connected" && opens++);
  await cut(base, user);
  await send(5);
  await until(`messages 11-15, published while the subscriber was away (got ${got.map((m) => m.i).join(",")})`, () => got.length >= 15, 15_000);
  await sleep(300);
  sub.close();
  publisher.close();
  checkDeliveries("the subscriber", got, 15);
  if (opens !== 1) throw new Error(`the subscriber reconnected ${opens} times, not once`);
  return { messages: 15, lost_deliveries: 3, reconnects: opens };
}
