import { Channel } from "./channel";
import { Emitter } from "./emitter";
import { Link } from "./link";
import { Publishes } from "./publishes";
import {
  ClientOptions,
  PublishResult,
  SocketConstructor,
  SocketLike,
  State,
  StateChange,
  TokenGrant,
  WsctlError,
} from "./types";

interface ClientEvents extends Record<string, unknown> {
  state: StateChange;
  /** A refusal no request was waiting for, or a frame the client does not know. */
  error: WsctlError;
  /** The server accepted a renewed token (an `auth` frame): `expires` is its `exp`. */
  token: { user: string; expires: number };
}

const OPEN = 1;
/** API Gateway closes a connection idle for 10 minutes; ping well before. */
const PING_AFTER_MS = 4 * 60_000;
/** API Gateway ends every connection at 2 hours; reconnect on purpose before. */
const MAX_CONNECTION_MS = 110 * 60_000;
/** A connection that lived this long was a success: the next reconnect starts from the shortest delay. */
const STABLE_MS = 1000;

/**
 * One WebSocket to a wsctl stage, kept open: reconnects with backoff, resumes every channel
 * where it stopped, sends unacknowledged publishes again, renews its token.
 */
export class Client extends Emitter<ClientEvents> {
  private opts: Required<Omit<ClientOptions, "token" | "getToken" | "WebSocket">> &
    Pick<ClientOptions, "getToken">;
  private Socket: SocketConstructor;
  private ws: SocketLike | null = null;
  private current: State = "connecting";
  private closed = false;
  private attempt = 0;
  private token: string | null;
  /** The token's expiry, epoch seconds, when known. */
  private expires: number | null = null;
  /** The server refused the token, or it ended: ask `getToken` for another before reconnecting. */
  private stale = false;
  private channels = new Map<string, Channel>();
  private publishes: Publishes;
  private link: Link;
  private timers = new Set<ReturnType<typeof setTimeout>>();
  private lastSent = 0;
  /** When the keep-alive ping that has no `pong` yet went out. */
  private pingAt: number | null = null;
  private openedAt = 0;
  private ids = 0;
  private readonly idPrefix = randomId();

  constructor(options: ClientOptions) {
    super();
    if (!options || typeof options.url !== "string") throw new TypeError("Client: `url` is required");
    if (!options.token && !options.getToken) throw new TypeError("Client: give `token` or `getToken`");
    const Socket = options.WebSocket ?? (globalThis as any).WebSocket;
    if (!Socket) {
      throw new TypeError(
        "Client: there is no WebSocket global here: pass one, e.g. `new Client({ url, token, WebSocket })` with the `ws` package's",
      );
    }
    this.Socket = Socket;
    this.opts = {
      url: options.url,
      getToken: options.getToken,
      minDelayMs: options.minDelayMs ?? 500,
      maxDelayMs: options.maxDelayMs ?? 15_000,
      pingAfterMs: options.pingAfterMs ?? PING_AFTER_MS,
      maxConnectionMs: options.maxConnectionMs ?? MAX_CONNECTION_MS,
      connectTimeoutMs: options.connectTimeoutMs ?? 15_000,
      publishWindow: options.publishWindow ?? 6,
      presenceLeaveDelayMs: options.presenceLeaveDelayMs ?? 2000,
    };
    this.token = options.token ?? null;
    if (this.token) this.expires = jwtExpiry(this.token);
    this.link = {
      send: (frame) => this.send(frame),
      sent: () => Date.now(),
      publish: (channel, data, id) => this.publish(channel, data, { id }),
    };
    this.publishes = new Publishes(this.link, this.opts.publishWindow);
    this.later(0, () => this.connect());
    this.watch();
  }

  get state(): State {
    return this.current;
  }

  /** The channel named `name` (the same object every time). */
  channel(name: string): Channel {
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
  publish(channel: string, data: unknown, options: { id?: string } = {}): Promise<PublishResult> {
    if (this.closed) return Promise.reject(new WsctlError("closed", "the client was closed"));
    const id = options.id ?? `${this.idPrefix}-${++this.ids}`;
    return this.publishes.add(channel, data, id);
  }

  /** Closes the connection for good; waiting publishes are rejected. */
  close(): void {
    this.shutdown("closed by the application");
  }

  private shutdown(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000, "closed by the application");
    this.detach();
    this.publishes.fail(new WsctlError("closed", reason));
    this.setState({ state: "closed", reason });
  }

  /** The connection is gone: channels and publishes wait for the next one. */
  private detach(): void {
    for (const ch of this.channels.values()) ch.disconnected();
    this.publishes.disconnected();
  }

  /** Drops the connection and reconnects now, as after a network drop. */
  reconnect(reason = "reconnect asked for"): void {
    if (this.closed || !this.ws) return;
    this.dropSocket(reason, 0);
  }

  // ---- the connection ----

  private async connect(): Promise<void> {
    if (this.closed) return;
    this.setState({ state: "connecting" });
    let token: string;
    try {
      token = await this.freshToken();
    } catch (e) {
      return this.retry(`getToken failed: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (this.closed) return;
    const url = this.opts.url + (this.opts.url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
    let ws: SocketLike;
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
    ws.onmessage = (e: { data: unknown }) => {
      if (this.ws === ws) this.frame(String(e.data));
    };
    ws.onerror = (e: { message?: string; error?: { message?: string } }) => {
      failure = e?.message || e?.error?.message || failure;
    };
    ws.onclose = (e: { code?: number; reason?: string }) => {
      if (this.ws !== ws) return;
      this.clear(giveUp);
      this.ws = null;
      this.lost(opened, e?.code ?? 1006, e?.reason ?? "", failure);
    };
  }

  private opened(): void {
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
  private lost(opened: boolean, code: number, reason: string, failure: string): void {
    this.detach();
    if (this.closed) return;
    if (opened && Date.now() - this.openedAt >= STABLE_MS) this.attempt = 0;
    const status = opened ? null : handshakeStatus(failure);
    let why = opened ? `closed (${code}${reason ? ` ${reason}` : ""})` : `the handshake failed${failure ? `: ${failure}` : ""}`;
    let extra = 0;
    if (status === 401 || status === 403) {
      if (!this.opts.getToken) {
        // The token cannot change: trying again would be refused again.
        this.shutdown(`the token was refused (${status}); give the client a getToken to renew it`);
        return;
      }
      this.stale = true;
      why = `the token was refused (${status})`;
    } else if (status === 429) {
      // Too many connections for this user, or the account's throttle: wait longer.
      extra = 2;
      why = "too many connections (429)";
    } else if (!opened && this.opts.getToken) {
      // A browser does not say why a handshake failed: a fresh token costs little.
      this.stale = true;
    }
    this.retry(why, extra);
  }

  private retry(reason: string, extra = 0): void {
    if (this.closed) return;
    const base = Math.min(this.opts.maxDelayMs, this.opts.minDelayMs * 2 ** (this.attempt + extra));
    const delay = Math.round(base * (0.5 + Math.random() * 0.5));
    this.attempt++;
    this.setState({ state: "disconnected", reason, retryInMs: delay });
    this.later(delay, () => this.connect());
  }

  /** Closes the socket on purpose and reconnects after `delay` (null: with backoff). */
  private dropSocket(reason: string, delay: number | null): void {
    const ws = this.ws;
    if (!ws) return;
    this.ws = null;
    try {
      ws.close(4000, "reconnecting");
    } catch {
      // already closing
    }
    this.detach();
    if (delay === null) return this.retry(reason);
    this.setState({ state: "disconnected", reason, retryInMs: delay });
    this.later(delay, () => this.connect());
  }

  private send(frame: Record<string, unknown>): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN || this.current !== "connected") return false;
    ws.send(JSON.stringify(frame));
    this.lastSent = Date.now();
    return true;
  }

  private frame(text: string): void {
    let f: any;
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
        // API Gateway's own answer when an integration failed ({"message": "Internal server
        // error", ...}) names no request: the watchdog resends whatever goes unanswered.
        this.emit("error", new WsctlError("gateway", String(f.message ?? text.slice(0, 200))));
    }
  }

  private error(f: any): void {
    const code = String(f.code);
    if (code === "token_expired" || code === "token_revoked") {
      // The server closes the connection after this frame; the next one needs a new token.
      this.stale = true;
    }
    if (f.action === "publish") return this.publishes.error(f);
    if (f.action === "auth") return this.renewalRefused(f);
    if (typeof f.channel === "string" && this.channels.has(f.channel)) return this.channels.get(f.channel)!.error(f);
    this.emit("error", new WsctlError(code, String(f.message ?? code)));
  }

  // ---- tokens ----

  private async freshToken(): Promise<string> {
    const soon = this.expires !== null && this.expires * 1000 - Date.now() < 10_000;
    if (this.opts.getToken && (this.stale || !this.token || soon)) {
      this.take(await this.askToken());
      this.stale = false;
    }
    if (!this.token) throw new Error("getToken returned no token");
    return this.token;
  }

  /** `getToken`, given up on after `connectTimeoutMs`, so a hung token service is a failed attempt. */
  private askToken(): Promise<TokenGrant> {
    const ms = this.opts.connectTimeoutMs;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`getToken did not answer in ${ms} ms`)), ms);
    });
    const asked = Promise.resolve().then(() => this.opts.getToken!());
    return Promise.race([asked, late]).finally(() => clearTimeout(timer));
  }

  private take(grant: TokenGrant): void {
    const token = typeof grant === "string" ? grant : grant?.token;
    if (typeof token !== "string" || !token) throw new Error("getToken returned no token");
    this.token = token;
    this.expires = (typeof grant === "object" && grant.expiresAt) || jwtExpiry(token);
  }

  /** Renews at 80% of the token's remaining life, with an `auth` frame on the open connection. */
  private renewTimer: ReturnType<typeof setTimeout> | null = null;
  private scheduleRenewal(): void {
    if (this.renewTimer) this.clear(this.renewTimer);
    if (!this.opts.getToken || this.expires === null) return;
    const left = this.expires * 1000 - Date.now();
    this.renewTimer = this.later(Math.max(1000, left * 0.8), () => void this.renew());
  }

  private async renew(): Promise<void> {
    if (this.current !== "connected" || !this.opts.getToken) return;
    try {
      this.take(await this.askToken());
    } catch {
      this.renewTimer = this.later(5000, () => void this.renew());
      return;
    }
    if (!this.send({ action: "auth", token: this.token })) return;
    this.renewTimer = this.later(10_000, () => void this.renew());
  }

  private renewalRefused(f: any): void {
    if (f.code === "internal" || f.code === "rate_limited") {
      this.renewTimer = this.later(Math.max(1000, Number(f.retry_after_ms) || 0), () => void this.renew());
      return;
    }
    this.emit("error", new WsctlError(String(f.code), String(f.message)));
    this.stale = true;
  }

  // ---- timers ----

  /** Once a second: a keep-alive ping when idle; a reconnect when a request goes unanswered. */
  private watch(): void {
    this.later(1000, () => {
      this.watch();
      if (this.current !== "connected") return;
      const now = Date.now();
      if (now - this.lastSent >= this.opts.pingAfterMs && this.send({ action: "ping" })) this.pingAt ??= now;
      // An unanswered ping too: a half-open socket delivers nothing and says nothing.
      let oldest = this.publishes.waitingSince() ?? this.pingAt;
      if (this.pingAt !== null && oldest !== null && this.pingAt < oldest) oldest = this.pingAt;
      for (const ch of this.channels.values()) {
        const w = ch.waitingSince();
        if (w !== null && (oldest === null || w < oldest)) oldest = w;
      }
      // A frame lost on the way (API Gateway answered an integration failure, a dropped
      // invocation): start over on a new connection, which sends every open request again.
      if (oldest !== null && now - oldest > this.opts.connectTimeoutMs) this.dropSocket("a request went unanswered", 0);
    });
  }

  private later(ms: number, fn: () => void): ReturnType<typeof setTimeout> {
    // setTimeout fires at once for delays over 2^31 - 1 ms (e.g. Infinity to mean "never").
    ms = Math.min(ms, 2 ** 31 - 1);
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
    return t;
  }

  private clear(t: ReturnType<typeof setTimeout>): void {
    clearTimeout(t);
    this.timers.delete(t);
  }

  private setState(change: StateChange): void {
    this.current = change.state;
    this.emit("state", change);
  }
}

/** The `exp` of a JWT, or null when it has none or is not one. */
export function jwtExpiry(token: string): number | null {
  try {
    const part = token.split(".")[1];
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "="));
    const exp = JSON.parse(json).exp;
    return typeof exp === "number" ? exp : null;
  } catch {
    return null;
  }
}

/** The HTTP status of a refused handshake, where the WebSocket implementation tells it (Node's `ws` does). */
function handshakeStatus(failure: string): number | null {
  const m = /Unexpected server response: (\d{3})/.exec(failure);
  return m ? Number(m[1]) : null;
}

function randomId(): string {
  const c = (globalThis as any).crypto;
  if (c?.randomUUID) return c.randomUUID();
  return Math.random().toString(36).slice(2) + Date.now().toString(36);
}
