// @wsctl/client against servers that misbehave on purpose, on loopback: what the client costs a
// stage that refuses, throttles or stops answering (the same cases as clients/rust/src/tests.rs).
//   node test/hostile.mjs
// Prints one line per case; exits 1 naming the first that failed.
import http from "node:http";
import WebSocket, { WebSocketServer } from "ws";

const module = process.env.WSCTL_CLIENT ?? new URL("../dist/index.js", import.meta.url).href;
const { Client } = await import(module);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function check(cond, what) {
  if (!cond) throw new Error(what);
}

/** A server answering every handshake with `status`; counts the attempts. */
async function refusing(status) {
  const server = http.createServer();
  const seen = { attempts: 0 };
  server.on("upgrade", (req, socket) => {
    seen.attempts++;
    socket.end(`HTTP/1.1 ${status} No\r\ncontent-length: 0\r\n\r\n`);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { url: `ws://127.0.0.1:${server.address().port}/dev`, seen, stop: () => server.close() };
}

/** A server that accepts every connection, records its frames and never answers one. */
async function silent() {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise((r) => wss.on("listening", r));
  const connections = [];
  let open = 0;
  wss.on("connection", (ws) => {
    const frames = [];
    connections.push(frames);
    open++;
    ws.on("message", (data) => frames.push(JSON.parse(String(data))));
    ws.on("close", () => open--);
  });
  const closed = async () => {
    for (let waited = 0; open > 0 && waited < 5000; waited += 20) await sleep(20);
  };
  return { url: `ws://127.0.0.1:${wss.address().port}/dev`, connections, closed, stop: () => wss.close() };
}

/** A server answering each frame of connection `n` with `script(n, frame)` → { answers, close }. */
async function scripted(script) {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise((r) => wss.on("listening", r));
  let n = 0;
  wss.on("connection", (ws) => {
    const conn = n++;
    ws.on("message", (data) => {
      const { answers = [], close = false } = script(conn, JSON.parse(String(data)));
      for (const a of answers) ws.send(JSON.stringify(a));
      if (close) ws.close();
    });
  });
  return { url: `ws://127.0.0.1:${wss.address().port}/dev`, stop: () => wss.close() };
}

const message = (serial) => ({ type: "message", channel: "c", serial, id: `m${serial}`, from: "u", data: serial, ts: 1 });

const cases = {
  async "a refused static token closes after one attempt"() {
    const s = await refusing(403);
    const client = new Client({ url: s.url, token: "forged", WebSocket });
    const states = [];
    client.on("state", (c) => states.push(c));
    await sleep(1000);
    const last = states[states.length - 1];
    check(last?.state === "closed" && /getToken/.test(last.reason), `last state ${JSON.stringify(last)}`);
    const publish = client.channel("c").publish(1).then(() => "resolved", (e) => e.code);
    const refused = await Promise.race([publish, sleep(2000).then(() => "still waiting after 2 s")]);
    check(refused === "closed", `a publish after the refusal: ${refused}`);
    await sleep(500);
    s.stop();
    check(s.seen.attempts === 1, `${s.seen.attempts} attempts with a token that cannot change`);
  },

  async "a throttled handshake backs off"() {
    const s = await refusing(429);
    let asked = 0;
    const client = new Client({ url: s.url, WebSocket, getToken: () => (asked++, "t"), minDelayMs: 100, maxDelayMs: 800 });
    await sleep(3000);
    client.close();
    s.stop();
    // At least 200, 400, 400… ms apart (100 ms × 2^(attempt+2), half jittered, capped at 800).
    check(s.seen.attempts >= 2 && s.seen.attempts <= 9, `${s.seen.attempts} handshakes in 3 s`);
    check(asked === 1, `getToken called ${asked} times for a throttle, not a refused token`);
  },

  async "a refused token is asked for again"() {
    const s = await refusing(401);
    let asked = 0;
    const client = new Client({ url: s.url, WebSocket, getToken: () => (asked++, "t"), minDelayMs: 50, maxDelayMs: 100 });
    await sleep(1000);
    client.close();
    s.stop();
    check(s.seen.attempts >= 3, `${s.seen.attempts} attempts`);
    // The last token asked for may not have reached the server before the close.
    check(asked === s.seen.attempts || asked === s.seen.attempts + 1, `${asked} tokens for ${s.seen.attempts} attempts`);
  },

  async "a flood of publishes is windowed and re-sent after silence"() {
    const s = await silent();
    const client = new Client({ url: s.url, token: "t", WebSocket, minDelayMs: 50, maxDelayMs: 100, connectTimeoutMs: 1500 });
    const acks = Array.from({ length: 1000 }, (_, i) => client.publish("c", i, { id: `p${i}` }).catch((e) => e.code));
    const published = (frames) => JSON.stringify(frames.filter((f) => f.action === "publish").map((f) => [f.id, f.seq]));
    const expected = JSON.stringify(Array.from({ length: 6 }, (_, i) => [`p${i}`, i + 1]));
    // Until the second connection has its window, however slow the machine; then the client's
    // close, and the server's view of every socket once it has seen them all close.
    for (let waited = 0; waited < 15000 && !(s.connections.length >= 2 && published(s.connections[1]) === expected); waited += 50) {
      await sleep(50);
    }
    client.close();
    await s.closed();
    s.stop();
    check(s.connections.length >= 2, `reconnected after silence: ${s.connections.length} connection(s)`);
    s.connections.forEach((frames, n) => {
      const got = published(frames);
      // A connection the client closed before it opened on its side sent nothing: only the last.
      const cut = got === "[]" && n === s.connections.length - 1 && n >= 2;
      check(got === expected || cut, `connection ${n} got ${got}`);
    });
    const codes = new Set(await Promise.all(acks));
    check(codes.size === 1 && codes.has("closed"), `the waiting publishes ended with ${[...codes]}`);
  },
};

Object.assign(cases, {
  // The server stores 43 and 45 to 62 (44 expired) and answers 17 messages a page.
  async "a paged replay with a permanent hole delivers what it holds"() {
    const stored = [43, ...Array.from({ length: 18 }, (_, i) => 45 + i)];
    const page = (since) => {
      const after = stored.filter((s) => s > since);
      return { type: "history", channel: "c", messages: after.slice(0, 17).map(message), more: after.length > 17 };
    };
    const s = await scripted((_, f) => {
      if (f.action === "subscribe") return { answers: [page(f.since), { type: "subscribed", channel: "c", serial: 62, more: page(f.since).more }] };
      if (f.action === "history") return { answers: [page(f.since)] };
      return {};
    });
    const client = new Client({ url: s.url, token: "t", WebSocket });
    const got = [];
    await client.channel("c").subscribe((m) => got.push(m.serial), { since: 42 });
    await sleep(1000);
    client.close();
    s.stop();
    check(JSON.stringify(got) === JSON.stringify(stored), `delivered ${got}`);
  },

  async "a publish refused for an expired token is sent again after reconnecting"() {
    const s = await scripted((conn, f) => {
      if (f.action !== "publish") return {};
      if (conn === 0) return { answers: [{ type: "error", code: "token_expired", action: "publish", id: f.id, message: "the token expired" }], close: true };
      return { answers: [{ type: "ack", id: f.id, channel: f.channel, serial: 7 }] };
    });
    let asked = 0;
    const client = new Client({ url: s.url, WebSocket, getToken: () => (asked++, "t"), minDelayMs: 50, maxDelayMs: 100 });
    const r = await Promise.race([client.channel("c").publish(1), sleep(5000).then(() => null)]);
    client.close();
    s.stop();
    check(r?.serial === 7, `the publish ended with ${JSON.stringify(r)}`);
    check(asked === 2, `${asked} tokens: a fresh one for the new connection`);
  },

  async "an unanswered ping reconnects"() {
    const s = await silent();
    const client = new Client({ url: s.url, token: "t", WebSocket, minDelayMs: 50, maxDelayMs: 100, pingAfterMs: 200, connectTimeoutMs: 500 });
    await sleep(3500);
    client.close();
    s.stop();
    check(s.connections.length >= 2, `${s.connections.length} connection(s)`);
    check(s.connections[0].some((f) => f.action === "ping"), "no ping on the first connection");
  },

  async "a publish over the limits fails at once"() {
    const s = await silent();
    const client = new Client({ url: s.url, token: "t", WebSocket });
    const big = await client.publish("c", "x".repeat(121 * 1024)).then(() => "sent", (e) => e.code);
    const longId = await client.publish("c", 1, { id: "i".repeat(129) }).then(() => "sent", (e) => e.code);
    await sleep(300);
    client.close();
    s.stop();
    check(big === "too_large" && longId === "bad_request", `${big}, ${longId}`);
    check(s.connections.every((c) => c.length === 0), "a refused publish reached the server");
  },

  async "a getToken that never answers is a failed attempt"() {
    const s = await refusing(401);
    let asked = 0;
    const client = new Client({ url: s.url, WebSocket, getToken: () => (asked++, new Promise(() => {})), minDelayMs: 50, maxDelayMs: 100, connectTimeoutMs: 300 });
    const reasons = [];
    client.on("state", (c) => c.reason && reasons.push(c.reason));
    await sleep(1500);
    client.close();
    s.stop();
    check(asked >= 2, `getToken asked ${asked} times`);
    check(reasons.some((r) => /did not answer/.test(r)), `reasons: ${reasons}`);
  },
});

for (const [name, run] of Object.entries(cases)) {
  try {
    await run();
    console.log(`ok: ${name}`);
  } catch (e) {
    console.error(`FAILED: ${name}: ${e.message}`);
    process.exit(1);
  }
}
process.exit(0);
