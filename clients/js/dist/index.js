// src/emitter.ts
var Emitter = class {
  constructor() {
    this.listeners = /* @__PURE__ */ new Map();
  }
  on(event, fn) {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, set = /* @__PURE__ */ new Set());
    set.add(fn);
    return () => this.off(event, fn);
  }
  off(event, fn) {
    this.listeners.get(event)?.delete(fn);
  }
  emit(event, value) {
    for (const fn of [...this.listeners.get(event) ?? []]) {
      try {
        fn(value);
      } catch (e) {
        setTimeout(() => {
          throw e;
        });
      }
    }
  }
};

// src/link.ts
function retryDelay(frame) {
  const ms = Number(frame.retry_after_ms);
  return Number.isFinite(ms) && ms > 0 ? Math.min(ms, 6e4) : 1e3;
}
function retryable(code) {
  return code === "rate_limited" || code === "internal";
}
function endsConnection(code) {
  return code === "token_expired" || code === "token_revoked";
}

// src/types.ts
var WsctlError = class extends Error {
  constructor(code, message) {
    super(message);
    this.name = "WsctlError";
    this.code = code;
  }
};

// src/presence.ts
var Presence = class extends Emitter {
  constructor(channel, link, leaveDelayMs) {
    super();
    /** What this client entered with, re-entered on every new connection. */
    this.mine = null;
    this.byConnection = /* @__PURE__ */ new Map();
    /** Per user: how many of their connections are present, and the latest data seen. */
    this.present = /* @__PURE__ */ new Map();
    this.listing = null;
    this.listed = false;
    /** Users whose last connection left, announced only if they do not come back meanwhile. */
    this.leaving = /* @__PURE__ */ new Map();
    this.channel = channel;
    this.link = link;
    this.leaveDelayMs = leaveDelayMs;
  }
  /** Enters the presence set with `data` (≤ 2 KB), now and after every reconnect. */
  enter(data = true) {
    this.mine = { data };
    this.sendMine();
    return Promise.resolve();
  }
  /** Leaves the presence set. */
  leave() {
    this.mine = null;
    this.link.send({ action: "presence", channel: this.channel, leave: true });
    return Promise.resolve();
  }
  /** Every member (all pages), one entry per connection. */
  members() {
    return new Promise((resolve, reject) => {
      if (!this.listing) {
        this.listing = { got: [], at: 0, waiters: [] };
        this.sendListing();
      }
      this.listing.waiters.push({ resolve, reject });
    });
  }
  /** The users present as last seen through events and listings, with their latest data. */
  users() {
    return new Map([...this.present].map(([user, p]) => [user, p.data]));
  }
  // ---- driven by the channel ----
  connected(subscribed) {
    if (this.mine) this.sendMine();
    if (this.listing) {
      this.listing.after = void 0;
      this.listing.got = [];
      this.sendListing();
    } else if (subscribed && this.listed) {
      void this.members().catch(() => void 0);
    }
  }
  disconnected() {
    if (this.listing) this.listing.at = 0;
  }
  waitingSince() {
    return this.listing && this.listing.at > 0 ? this.listing.at : null;
  }
  frame(f) {
    if (f.type === "presence" && f.member) {
      const m = f.member;
      const before = this.present.get(m.user);
      const had = before !== void 0;
      const was = before?.data;
      if (f.event === "enter") {
        const old = this.byConnection.get(m.connection);
        if (old) this.forget(old);
        this.byConnection.set(m.connection, m);
        this.add(m);
      } else if (f.event === "leave") {
        const old = this.byConnection.get(m.connection);
        if (old) {
          this.byConnection.delete(m.connection);
          this.forget(old);
        }
      } else return;
      this.announce(m.user, had, was);
    } else if (f.type === "members" && this.listing) {
      const l = this.listing;
      l.got.push(...f.members ?? []);
      if (f.next) {
        l.after = String(f.next);
        this.sendListing();
        return;
      }
      this.listing = null;
      const before = this.users();
      this.byConnection = new Map(l.got.map((m) => [m.connection, m]));
      this.present.clear();
      for (const m of this.byConnection.values()) this.add(m);
      this.listed = true;
      for (const user of /* @__PURE__ */ new Set([...before.keys(), ...this.present.keys()])) {
        this.announce(user, before.has(user), before.get(user));
      }
      const members = [...this.byConnection.values()];
      for (const w of l.waiters) w.resolve(members);
    }
  }
  error(f) {
    if (endsConnection(f.code)) return;
    if (retryable(f.code)) {
      setTimeout(() => {
        if (this.mine) this.sendMine();
        if (this.listing) this.sendListing();
      }, retryDelay(f));
      return;
    }
    const err = new WsctlError(f.code, f.message);
    if (this.listing) {
      const waiters = this.listing.waiters;
      this.listing = null;
      for (const w of waiters) w.reject(err);
    }
    this.emit("error", err);
  }
  sendMine() {
    if (this.mine) this.link.send({ action: "presence", channel: this.channel, enter: this.mine.data });
  }
  sendListing() {
    const l = this.listing;
    if (!l) return;
    const frame = { action: "presence", channel: this.channel };
    if (l.after !== void 0) frame.after = l.after;
    if (this.link.send(frame)) l.at = this.link.sent();
  }
  add(m) {
    const p = this.present.get(m.user);
    if (p) {
      p.connections++;
      p.data = m.data;
    } else this.present.set(m.user, { connections: 1, data: m.data });
  }
  forget(m) {
    const p = this.present.get(m.user);
    if (p && --p.connections === 0) this.present.delete(m.user);
  }
  /** The per-user event for `user`, who was present (`had`, with `was`) or not. */
  announce(user, had, was) {
    const now = this.present.get(user);
    if (now) {
      const back = this.leaving.get(user);
      if (back !== void 0) {
        clearTimeout(back);
        this.leaving.delete(user);
      } else if (!had) this.emit("enter", { event: "enter", user, data: now.data });
      else if (JSON.stringify(was) !== JSON.stringify(now.data)) this.emit("update", { event: "update", user, data: now.data });
    } else if (had && !this.leaving.has(user)) {
      const t = setTimeout(() => {
        this.leaving.delete(user);
        if (!this.present.has(user)) this.emit("leave", { event: "leave", user, data: was });
      }, this.leaveDelayMs);
      this.leaving.set(user, t);
    }
  }
};

// src/channel.ts
var Channel = class extends Emitter {
  constructor(name, link, presenceLeaveDelayMs) {
    super();
    /** Serial of the last message delivered: where a resume starts. */
    this.last = null;
    /** Messages that arrived ahead of a missing serial, with the order they arrived in. */
    this.held = /* @__PURE__ */ new Map();
    this.arrivals = 0;
    this.ops = [];
    this.inFlight = null;
    this.wanted = false;
    this.subscribed = false;
    this.waiters = [];
    this.name = name;
    this.link = link;
    this.presence = new Presence(name, link, presenceLeaveDelayMs);
  }
  /** The serial of the last message delivered, or null before the first. */
  get lastSerial() {
    return this.last;
  }
  /**
   * Calls `fn` with each message once, in serial order, across any number of reconnects.
   * Resolves when the server confirmed the subscription.
   */
  subscribe(fn, options = {}) {
    if (fn) this.on("message", fn);
    if (options.since !== void 0 && this.last === null) this.last = options.since;
    if (this.wanted && this.subscribed) return Promise.resolve();
    const done = new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (!this.wanted) {
      this.wanted = true;
      this.enqueue({ kind: "subscribe" });
    }
    return done;
  }
  /** Publishes on this channel: see `Client.publish`. */
  publish(data, options = {}) {
    return this.link.publish(this.name, data, options.id);
  }
  /** Stops delivery; a later `subscribe` starts from then, not from where this one stopped. */
  unsubscribe() {
    this.wanted = false;
    this.subscribed = false;
    this.last = null;
    this.held.clear();
    this.ops = this.ops.filter((op) => op.kind === "history");
    this.settle(new WsctlError("unsubscribed", "unsubscribed before the subscription was confirmed"));
    this.enqueue({ kind: "unsubscribe" });
    return Promise.resolve();
  }
  /** The channel's past: `since` a serial (every page), or the last `limit` messages. */
  history(options = {}) {
    return new Promise(
      (resolve, reject) => this.enqueue({ kind: "history", since: options.since, limit: options.limit, got: [], resolve, reject })
    );
  }
  // ---- driven by the client ----
  /** A new connection: resubscribe from the last serial delivered, send unanswered requests again. */
  connected() {
    this.inFlight = null;
    this.subscribed = false;
    this.held.clear();
    this.ops = this.ops.filter((op) => op.kind === "history");
    if (this.wanted) this.ops.unshift({ kind: "subscribe" });
    this.pump();
    this.presence.connected(this.wanted);
  }
  disconnected() {
    const op = this.inFlight?.op;
    this.inFlight = null;
    if (op?.kind === "history") this.ops.unshift(op);
    this.subscribed = false;
    this.presence.disconnected();
  }
  /** When the oldest unanswered request was sent, if any. */
  waitingSince() {
    const p = this.presence.waitingSince();
    const o = this.inFlight?.at ?? null;
    return o === null ? p : p === null ? o : Math.min(o, p);
  }
  /** A server frame for this channel. */
  frame(f) {
    switch (f.type) {
      case "message":
        if (this.wanted && (this.subscribed || this.head()?.kind === "subscribe")) this.take(f);
        break;
      case "history":
        this.history_(f.messages ?? [], !!f.more);
        break;
      case "subscribed":
        this.subscribed_(Number(f.serial), !!f.more);
        break;
      case "unsubscribed":
        if (this.head()?.kind === "unsubscribe") this.done();
        break;
      case "presence":
      case "members":
        this.presence.frame(f);
        break;
    }
  }
  /** An `error` frame naming this channel. */
  error(f) {
    if (f.action === "presence") return this.presence.error(f);
    const head = this.head();
    if (!head || f.action !== opAction(head)) return void this.emit("error", new WsctlError(f.code, f.message));
    if (endsConnection(f.code)) return;
    if (retryable(f.code)) {
      setTimeout(() => {
        if (this.inFlight?.op === head) this.sendHead();
      }, retryDelay(f));
      return;
    }
    const err = new WsctlError(f.code, f.message);
    if (head.kind === "subscribe") {
      this.wanted = false;
      this.settle(err);
    } else if (head.kind === "history") {
      head.reject(err);
    }
    this.emit("error", err);
    this.done();
  }
  /** The server dropped this channel when a renewed token no longer allowed it. */
  dropped() {
    this.wanted = false;
    this.subscribed = false;
    this.emit("error", new WsctlError("forbidden", "the renewed token does not allow this channel: it was left"));
  }
  // ---- ordering ----
  take(m) {
    if (this.last !== null && m.serial <= this.last) return;
    if (this.last === null) {
      this.hold(m);
      return;
    }
    if (m.serial === this.last + 1) {
      this.deliver(m);
      this.drain();
      return;
    }
    this.hold(m);
    this.askForGap();
  }
  hold(m) {
    this.held.set(m.serial, { m, n: ++this.arrivals });
  }
  deliver(m) {
    this.last = m.serial;
    this.emit("message", {
      channel: this.name,
      serial: m.serial,
      id: m.id,
      from: m.from,
      data: m.data,
      ts: m.ts
    });
  }
  drain() {
    while (this.last !== null && this.held.has(this.last + 1)) {
      const next = this.held.get(this.last + 1).m;
      this.held.delete(next.serial);
      this.deliver(next);
    }
    if (this.last !== null) {
      for (const s of this.held.keys()) if (s <= this.last) this.held.delete(s);
    }
  }
  /** Held messages still wait for a missing serial: fetch it, unless a fetch is coming. */
  askForGap() {
    if (this.last === null || this.held.size === 0) return;
    const fetching = (op) => op.kind === "gap" || op.kind === "subscribe";
    if (this.ops.some(fetching) || this.inFlight && fetching(this.inFlight.op)) return;
    this.enqueue({ kind: "gap", since: this.last, mark: 0 });
  }
  /** After a fetch answered everything it could: what is still missing is gone (protocol.md). */
  skipGone() {
    while (this.held.size > 0 && this.last !== null) {
      const first = Math.min(...this.held.keys());
      if (first > this.last + 1) this.last = first - 1;
      this.drain();
    }
  }
  /** Messages a fetch (`since` the serial it asked from) answered with. */
  replay(since, messages) {
    const last = this.last;
    if (since !== void 0 && last !== null && since <= last && messages.length && messages[0].serial > since + 1) {
      this.skipBelow(messages[0].serial);
    }
    for (const m of messages) this.take(m);
  }
  /** Every serial below `bound` that is not held is gone: deliver what is held up to it. */
  skipBelow(bound) {
    while (this.last !== null && this.last + 1 < bound) {
      const held = this.held.size ? Math.min(...this.held.keys()) : Infinity;
      this.last = held < bound ? Math.max(this.last, held - 1) : bound - 1;
      this.drain();
    }
  }
  history_(messages, more) {
    const head = this.head();
    if (!head) return;
    const lastInFrame = messages.length ? messages[messages.length - 1].serial : void 0;
    if (head.kind === "subscribe") {
      this.replay(head.since, messages);
      head.replayLast = lastInFrame;
      head.more = more;
    } else if (head.kind === "gap") {
      this.replay(head.since, messages);
      if (more && lastInFrame !== void 0) {
        head.since = lastInFrame;
        this.sendHead();
        return;
      }
      this.done();
      if ([...this.held.values()].some((h) => h.n > head.mark)) this.askForGap();
      else this.skipGone();
    } else if (head.kind === "history") {
      head.got.push(...messages);
      const room = head.limit === void 0 ? Infinity : head.limit - head.got.length;
      if (head.since !== void 0 && more && lastInFrame !== void 0 && room > 0) {
        head.since = lastInFrame;
        this.sendHead();
        return;
      }
      head.resolve(head.limit === void 0 ? head.got : head.got.slice(0, head.limit));
      this.done();
    }
  }
  subscribed_(serial, more) {
    const head = this.head();
    if (head?.kind !== "subscribe") return;
    if (!this.wanted) return this.done();
    this.subscribed = true;
    if (this.last === null) this.last = serial;
    this.settle();
    this.done();
    if (more && head.replayLast !== void 0) {
      this.ops.unshift({ kind: "gap", since: head.replayLast, mark: 0 });
      this.pump();
    } else {
      this.drain();
      this.askForGap();
    }
  }
  // ---- requests ----
  head() {
    return this.inFlight?.op;
  }
  enqueue(op) {
    this.ops.push(op);
    this.pump();
  }
  pump() {
    if (this.inFlight || this.ops.length === 0) return;
    const op = this.ops.shift();
    this.inFlight = { op, at: 0 };
    if (!this.sendHead()) {
      this.ops.unshift(op);
      this.inFlight = null;
    }
  }
  sendHead() {
    const f = this.inFlight;
    if (!f) return false;
    const op = f.op;
    const frame = { action: opAction(op), channel: this.name };
    if (op.kind === "subscribe" && this.last !== null) frame.since = this.last;
    if (op.kind === "subscribe") op.since = this.last ?? void 0;
    if (op.kind === "gap") {
      frame.since = op.since;
      op.mark = this.arrivals;
    }
    if (op.kind === "history") {
      if (op.since !== void 0) frame.since = op.since;
      else if (op.limit !== void 0) frame.limit = op.limit;
    }
    if (!this.link.send(frame)) return false;
    f.at = this.link.sent();
    return true;
  }
  done() {
    this.inFlight = null;
    this.pump();
  }
  settle(err) {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) err ? w.reject(err) : w.resolve();
  }
};
function opAction(op) {
  return op.kind === "gap" ? "history" : op.kind;
}

// src/publishes.ts
var MAX_DATA = 120 * 1024;
var MAX_ID = 128;
var Publishes = class {
  constructor(link, window) {
    this.queue = [];
    this.seq = 0;
    this.open = false;
    /** Counts connections, so a resend timer set on one does nothing on the next. */
    this.connection = 0;
    this.link = link;
    this.window = Math.max(1, Math.min(window, 8));
  }
  add(channel, data, id) {
    const size = new TextEncoder().encode(JSON.stringify(data) ?? "").length;
    if (size > MAX_DATA) {
      return Promise.reject(new WsctlError("too_large", `data is ${size} bytes; a message holds at most ${MAX_DATA}`));
    }
    const chars = [...id].length;
    if (chars === 0 || chars > MAX_ID) {
      return Promise.reject(new WsctlError("bad_request", `id: 1 to ${MAX_ID} characters, not ${chars}`));
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ channel, data, id, seq: null, at: 0, resolve, reject });
      this.pump();
    });
  }
  connected() {
    this.open = true;
    this.seq = 0;
    this.connection++;
    for (const p of this.queue) p.seq = null;
    this.pump();
  }
  disconnected() {
    this.open = false;
  }
  waitingSince() {
    let oldest = null;
    for (const p of this.queue) if (p.seq !== null && (oldest === null || p.at < oldest)) oldest = p.at;
    return oldest;
  }
  ack(f) {
    const i = this.queue.findIndex((p2) => p2.id === f.id && p2.channel === f.channel && p2.seq !== null);
    if (i < 0) return;
    const [p] = this.queue.splice(i, 1);
    p.resolve({ serial: Number(f.serial), duplicate: f.duplicate === true });
    this.pump();
  }
  error(f) {
    const p = this.queue.find((p2) => p2.id === f.id && p2.seq !== null);
    if (!p) return;
    if (endsConnection(f.code)) return;
    if (retryable(f.code)) {
      const seq = p.seq;
      const connection = this.connection;
      setTimeout(() => {
        if (this.open && connection === this.connection && p.seq === seq && this.queue.includes(p)) this.send(p);
      }, retryDelay(f));
      return;
    }
    this.queue.splice(this.queue.indexOf(p), 1);
    p.reject(new WsctlError(f.code, f.message));
    this.pump();
  }
  /** Rejects everything still waiting. */
  fail(err) {
    const queue = this.queue;
    this.queue = [];
    for (const p of queue) p.reject(err);
  }
  pump() {
    if (!this.open) return;
    let inFlight = this.queue.filter((p) => p.seq !== null).length;
    for (const p of this.queue) {
      if (inFlight >= this.window) break;
      if (p.seq !== null) continue;
      p.seq = ++this.seq;
      this.send(p);
      inFlight++;
    }
  }
  send(p) {
    this.link.send({ action: "publish", channel: p.channel, data: p.data, id: p.id, seq: p.seq });
    p.at = this.link.sent();
  }
};

// src/client.ts
var OPEN = 1;
var PING_AFTER_MS = 4 * 6e4;
var MAX_CONNECTION_MS = 110 * 6e4;
var STABLE_MS = 1e3;
var Client = class extends Emitter {
  constructor(options) {
    super();
    this.ws = null;
    this.current = "connecting";
    this.closed = false;
    this.attempt = 0;
    /** The token's expiry, epoch seconds, when known. */
    this.expires = null;
    /** The server refused the token, or it ended: ask `getToken` for another before reconnecting. */
    this.stale = false;
    this.channels = /* @__PURE__ */ new Map();
    this.timers = /* @__PURE__ */ new Set();
    this.lastSent = 0;
    /** When the keep-alive ping that has no `pong` yet went out. */
    this.pingAt = null;
    this.openedAt = 0;
    this.ids = 0;
    this.idPrefix = randomId();
    /** Renews at 80% of the token's remaining life, with an `auth` frame on the open connection. */
    this.renewTimer = null;
    if (!options || typeof options.url !== "string") throw new TypeError("Client: `url` is required");
    if (!options.token && !options.getToken) throw new TypeError("Client: give `token` or `getToken`");
    const Socket = options.WebSocket ?? globalThis.WebSocket;
    if (!Socket) {
      throw new TypeError(
        "Client: there is no WebSocket global here: pass one, e.g. `new Client({ url, token, WebSocket })` with the `ws` package's"
      );
    }
    this.Socket = Socket;
    this.opts = {
      url: options.url,
      getToken: options.getToken,
      minDelayMs: options.minDelayMs ?? 500,
      maxDelayMs: options.maxDelayMs ?? 15e3,
      pingAfterMs: options.pingAfterMs ?? PING_AFTER_MS,
      maxConnectionMs: options.maxConnectionMs ?? MAX_CONNECTION_MS,
      connectTimeoutMs: options.connectTimeoutMs ?? 15e3,
      publishWindow: options.publishWindow ?? 6,
      presenceLeaveDelayMs: options.presenceLeaveDelayMs ?? 2e3
    };
    this.token = options.token ?? null;
    if (this.token) this.expires = jwtExpiry(this.token);
    this.link = {
      send: (frame) => this.send(frame),
      sent: () => Date.now(),
      publish: (channel, data, id) => this.publish(channel, data, { id })
    };
    this.publishes = new Publishes(this.link, this.opts.publishWindow);
    this.later(0, () => this.connect());
    this.watch();
  }
  get state() {
    return this.current;
  }
  /** The channel named `name` (the same object every time). */
  channel(name) {
    let ch = this.channels.get(name);
    if (!ch) {
      ch = new Channel(name, this.link, this.opts.presenceLeaveDelayMs);
      this.channels.set(name, ch);
    }
    return ch;
  }
  /**
   * Publishes `data` on `channel`; resolves once, with the serial, after the server stored it,
   * however many reconnects that takes. `id` makes it idempotent (one is made up otherwise).
   */
  publish(channel, data, options = {}) {
    if (this.closed) return Promise.reject(new WsctlError("closed", "the client was closed"));
    const id = options.id ?? `${this.idPrefix}-${++this.ids}`;
    return this.publishes.add(channel, data, id);
  }
  /** Closes the connection for good; waiting publishes are rejected. */
  close() {
    this.shutdown("closed by the application");
  }
  shutdown(reason) {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1e3, "closed by the application");
    this.detach();
    this.publishes.fail(new WsctlError("closed", reason));
    this.setState({ state: "closed", reason });
  }
  /** The connection is gone: channels and publishes wait for the next one. */
  detach() {
    for (const ch of this.channels.values()) ch.disconnected();
    this.publishes.disconnected();
  }
  /** Drops the connection and reconnects now, as after a network drop. */
  reconnect(reason = "reconnect asked for") {
    if (this.closed || !this.ws) return;
    this.dropSocket(reason, 0);
  }
  // ---- the connection ----
  async connect() {
    if (this.closed) return;
    this.setState({ state: "connecting" });
    let token;
    try {
      token = await this.freshToken();
    } catch (e) {
      return this.retry(`getToken failed: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (this.closed) return;
    const url = this.opts.url + (this.opts.url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
    let ws;
    try {
      ws = new this.Socket(url);
    } catch (e) {
      return this.retry(`cannot open ${this.opts.url}: ${e instanceof Error ? e.message : String(e)}`);
    }
    this.ws = ws;
    let opened = false;
    let failure = "";
    const giveUp = this.later(this.opts.connectTimeoutMs, () => {
      if (!opened && this.ws === ws) this.dropSocket("the handshake timed out", null);
    });
    ws.onopen = () => {
      if (this.ws !== ws) return;
      opened = true;
      this.clear(giveUp);
      this.opened();
    };
    ws.onmessage = (e) => {
      if (this.ws === ws) this.frame(String(e.data));
    };
    ws.onerror = (e) => {
      failure = e?.message || e?.error?.message || failure;
    };
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.clear(giveUp);
      this.ws = null;
      this.lost(opened, e?.code ?? 1006, e?.reason ?? "", failure);
    };
  }
  opened() {
    this.openedAt = Date.now();
    this.lastSent = this.openedAt;
    this.pingAt = null;
    this.setState({ state: "connected" });
    this.publishes.connected();
    for (const ch of this.channels.values()) ch.connected();
    this.scheduleRenewal();
    const ws = this.ws;
    this.later(this.opts.maxConnectionMs, () => {
      if (this.ws === ws) this.dropSocket("planned reconnect before API Gateway's 2-hour limit", 0);
    });
  }
  /** The socket closed (or never opened): say why and come back. */
  lost(opened, code, reason, failure) {
    this.detach();
    if (this.closed) return;
    if (opened && Date.now() - this.openedAt >= STABLE_MS) this.attempt = 0;
    const status = opened ? null : handshakeStatus(failure);
    let why = opened ? `closed (${code}${reason ? ` ${reason}` : ""})` : `the handshake failed${failure ? `: ${failure}` : ""}`;
    let extra = 0;
    if (status === 401 || status === 403) {
      if (!this.opts.getToken) {
        this.shutdown(`the token was refused (${status}); give the client a getToken to renew it`);
        return;
      }
      this.stale = true;
      why = `the token was refused (${status})`;
    } else if (status === 429) {
      extra = 2;
      why = "too many connections (429)";
    } else if (!opened && this.opts.getToken) {
      this.stale = true;
    }
    this.retry(why, extra);
  }
  retry(reason, extra = 0) {
    if (this.closed) return;
    const base = Math.min(this.opts.maxDelayMs, this.opts.minDelayMs * 2 ** (this.attempt + extra));
    const delay = Math.round(base * (0.5 + Math.random() * 0.5));
    this.attempt++;
    this.setState({ state: "disconnected", reason, retryInMs: delay });
    this.later(delay, () => this.connect());
  }
  /** Closes the socket on purpose and reconnects after `delay` (null: with backoff). */
  dropSocket(reason, delay) {
    const ws = this.ws;
    if (!ws) return;
    this.ws = null;
    try {
      ws.close(4e3, "reconnecting");
    } catch {
    }
    this.detach();
    if (delay === null) return this.retry(reason);
    this.setState({ state: "disconnected", reason, retryInMs: delay });
    this.later(delay, () => this.connect());
  }
  send(frame) {
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN || this.current !== "connected") return false;
    ws.send(JSON.stringify(frame));
    this.lastSent = Date.now();
    return true;
  }
  frame(text) {
    let f;
    try {
      f = JSON.parse(text);
    } catch {
      return this.emit("error", new WsctlError("bad_frame", `the server sent a frame that is not JSON: ${text.slice(0, 100)}`));
    }
    if (f === null || typeof f !== "object") return;
    switch (f.type) {
      case "ack":
        return this.publishes.ack(f);
      case "error":
        return this.error(f);
      case "authenticated":
        this.expires = typeof f.expires === "number" ? f.expires : this.expires;
        for (const name of f.dropped ?? []) this.channels.get(name)?.dropped();
        this.emit("token", { user: String(f.user), expires: Number(f.expires) });
        return this.scheduleRenewal();
      case "pong":
        this.pingAt = null;
        return;
      default:
        if (typeof f.channel === "string" && typeof f.type === "string") {
          return this.channels.get(f.channel)?.frame(f);
        }
        this.emit("error", new WsctlError("gateway", String(f.message ?? text.slice(0, 200))));
    }
  }
  error(f) {
    const code = String(f.code);
    if (code === "token_expired" || code === "token_revoked") {
      this.stale = true;
    }
    if (f.action === "publish") return this.publishes.error(f);
    if (f.action === "auth") return this.renewalRefused(f);
    if (typeof f.channel === "string" && this.channels.has(f.channel)) return this.channels.get(f.channel).error(f);
    this.emit("error", new WsctlError(code, String(f.message ?? code)));
  }
  // ---- tokens ----
  async freshToken() {
    const soon = this.expires !== null && this.expires * 1e3 - Date.now() < 1e4;
    if (this.opts.getToken && (this.stale || !this.token || soon)) {
      this.take(await this.askToken());
      this.stale = false;
    }
    if (!this.token) throw new Error("getToken returned no token");
    return this.token;
  }
  /** `getToken`, given up on after `connectTimeoutMs`, so a hung token service is a failed attempt. */
  askToken() {
    const ms = this.opts.connectTimeoutMs;
    let timer;
    const late = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`getToken did not answer in ${ms} ms`)), ms);
    });
    const asked = Promise.resolve().then(() => this.opts.getToken());
    return Promise.race([asked, late]).finally(() => clearTimeout(timer));
  }
  take(grant) {
    const token = typeof grant === "string" ? grant : grant?.token;
    if (typeof token !== "string" || !token) throw new Error("getToken returned no token");
    this.token = token;
    this.expires = typeof grant === "object" && grant.expiresAt || jwtExpiry(token);
  }
  scheduleRenewal() {
    if (this.renewTimer) this.clear(this.renewTimer);
    if (!this.opts.getToken || this.expires === null) return;
    const left = this.expires * 1e3 - Date.now();
    this.renewTimer = this.later(Math.max(1e3, left * 0.8), () => void this.renew());
  }
  async renew() {
    if (this.current !== "connected" || !this.opts.getToken) return;
    try {
      this.take(await this.askToken());
    } catch {
      this.renewTimer = this.later(5e3, () => void this.renew());
      return;
    }
    if (!this.send({ action: "auth", token: this.token })) return;
    this.renewTimer = this.later(1e4, () => void this.renew());
  }
  renewalRefused(f) {
    if (f.code === "internal" || f.code === "rate_limited") {
      this.renewTimer = this.later(Math.max(1e3, Number(f.retry_after_ms) || 0), () => void this.renew());
      return;
    }
    this.emit("error", new WsctlError(String(f.code), String(f.message)));
    this.stale = true;
  }
  // ---- timers ----
  /** Once a second: a keep-alive ping when idle; a reconnect when a request goes unanswered. */
  watch() {
    this.later(1e3, () => {
      this.watch();
      if (this.current !== "connected") return;
      const now = Date.now();
      if (now - this.lastSent >= this.opts.pingAfterMs && this.send({ action: "ping" })) this.pingAt ?? (this.pingAt = now);
      let oldest = this.publishes.waitingSince() ?? this.pingAt;
      if (this.pingAt !== null && oldest !== null && this.pingAt < oldest) oldest = this.pingAt;
      for (const ch of this.channels.values()) {
        const w = ch.waitingSince();
        if (w !== null && (oldest === null || w < oldest)) oldest = w;
      }
      if (oldest !== null && now - oldest > this.opts.connectTimeoutMs) this.dropSocket("a request went unanswered", 0);
    });
  }
  later(ms, fn) {
    ms = Math.min(ms, 2 ** 31 - 1);
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
    return t;
  }
  clear(t) {
    clearTimeout(t);
    this.timers.delete(t);
  }
  setState(change) {
    this.current = change.state;
    this.emit("state", change);
  }
};
function jwtExpiry(token) {
  try {
    const part = token.split(".")[1];
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "="));
    const exp = JSON.parse(json).exp;
    return typeof exp === "number" ? exp : null;
  } catch {
    return null;
  }
}
function handshakeStatus(failure) {
  const m = /Unexpected server response: (\d{3})/.exec(failure);
  return m ? Number(m[1]) : null;
}
function randomId() {
  const c = globalThis.crypto;
  if (c?.randomUUID) return c.randomUUID();
  return Math.random().toString(36).slice(2) + Date.now().toString(36);
}
export {
  Channel,
  Client,
  Presence,
  WsctlError,
  jwtExpiry
};
