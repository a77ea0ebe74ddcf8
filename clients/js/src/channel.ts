import { Emitter } from "./emitter";
import { Link, endsConnection, retryDelay, retryable } from "./link";
import { Presence } from "./presence";
import { Message, PublishResult, WsctlError } from "./types";

export interface HistoryOptions {
  /** Messages after this serial, oldest first, every page of them (up to `limit`). */
  since?: number;
  /** The last N messages (at most 1000), or with `since` the most to return. */
  limit?: number;
}

export interface SubscribeOptions {
  /** Start after this serial instead of now: the messages since are delivered first. */
  since?: number;
}

/**
 * A request on this channel whose answer has no id to match it by: one is in flight at a time,
 * so each `history`, `subscribed` or `unsubscribed` frame answers the one at the head.
 */
type Op =
  | { kind: "subscribe"; since?: number; replayLast?: number; more?: boolean }
  | { kind: "gap"; since: number; mark: number }
  | {
      kind: "history";
      since?: number;
      limit?: number;
      got: Message[];
      resolve: (m: Message[]) => void;
      reject: (e: Error) => void;
    }
  | { kind: "unsubscribe" };

interface ChannelEvents extends Record<string, unknown> {
  message: Message;
  error: WsctlError;
}

type Waiter = { resolve: () => void; reject: (e: Error) => void };

export class Channel extends Emitter<ChannelEvents> {
  readonly name: string;
  readonly presence: Presence;
  private link: Link;
  /** Serial of the last message delivered: where a resume starts. */
  private last: number | null = null;
  /** Messages that arrived ahead of a missing serial, with the order they arrived in. */
  private held = new Map<number, { m: Message; n: number }>();
  private arrivals = 0;
  private ops: Op[] = [];
  private inFlight: { op: Op; at: number } | null = null;
  private wanted = false;
  private subscribed = false;
  private waiters: Waiter[] = [];

  constructor(name: string, link: Link, presenceLeaveDelayMs: number) {
    super();
    this.name = name;
    this.link = link;
    this.presence = new Presence(name, link, presenceLeaveDelayMs);
  }

  /** The serial of the last message delivered, or null before the first. */
  get lastSerial(): number | null {
    return this.last;
  }

  /**
   * Calls `fn` with each message once, in serial order, across any number of reconnects.
   * Resolves when the server confirmed the subscription.
   */
  subscribe(fn?: (m: Message) => void, options: SubscribeOptions = {}): Promise<void> {
    if (fn) this.on("message", fn);
    if (options.since !== undefined && this.last === null) this.last = options.since;
    if (this.wanted && this.subscribed) return Promise.resolve();
    const done = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (!this.wanted) {
      this.wanted = true;
      this.enqueue({ kind: "subscribe" });
    }
    return done;
  }

  /** Publishes on this channel: see `Client.publish`. */
  publish(data: unknown, options: { id?: string } = {}): Promise<PublishResult> {
    return this.link.publish(this.name, data, options.id);
  }

  /** Stops delivery; a later `subscribe` starts from then, not from where this one stopped. */
  unsubscribe(): Promise<void> {
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
  history(options: HistoryOptions = {}): Promise<Message[]> {
    return new Promise((resolve, reject) =>
      this.enqueue({ kind: "history", since: options.since, limit: options.limit, got: [], resolve, reject }),
    );
  }

  // ---- driven by the client ----

  /** A new connection: resubscribe from the last serial delivered, send unanswered requests again. */
  connected(): void {
    this.inFlight = null;
    this.subscribed = false;
    // The resume replays everything after `last`, held messages included.
    this.held.clear();
    this.ops = this.ops.filter((op) => op.kind === "history");
    if (this.wanted) this.ops.unshift({ kind: "subscribe" });
    // A paged history goes on from the page it had reached, with what it already got.
    this.pump();
    this.presence.connected(this.wanted);
  }

  disconnected(): void {
    const op = this.inFlight?.op;
    this.inFlight = null;
    // A history request in flight is asked again on the next connection; the rest is rebuilt there.
    if (op?.kind === "history") this.ops.unshift(op);
    this.subscribed = false;
    this.presence.disconnected();
  }

  /** When the oldest unanswered request was sent, if any. */
  waitingSince(): number | null {
    const p = this.presence.waitingSince();
    const o = this.inFlight?.at ?? null;
    return o === null ? p : p === null ? o : Math.min(o, p);
  }

  /** A server frame for this channel. */
  frame(f: any): void {
    switch (f.type) {
      case "message":
        if (this.wanted && (this.subscribed || this.head()?.kind === "subscribe")) this.take(f as Message);
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
  error(f: any): void {
    if (f.action === "presence") return this.presence.error(f);
    const head = this.head();
    if (!head || f.action !== opAction(head)) return void this.emit("error", new WsctlError(f.code, f.message));
    // Not acted on, and the connection is closing: asked again on the next one.
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
  dropped(): void {
    this.wanted = false;
    this.subscribed = false;
    this.emit("error", new WsctlError("forbidden", "the renewed token does not allow this channel: it was left"));
  }

  // ---- ordering ----

  private take(m: Message): void {
    if (this.last !== null && m.serial <= this.last) return; // already delivered
    if (this.last === null) {
      // A fresh subscription starts at the serial `subscribed` names: hold until then.
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

  private hold(m: Message): void {
    this.held.set(m.serial, { m, n: ++this.arrivals });
  }

  private deliver(m: Message): void {
    this.last = m.serial;
    this.emit("message", {
      channel: this.name,
      serial: m.serial,
      id: m.id,
      from: m.from,
      data: m.data,
      ts: m.ts,
    });
  }

  private drain(): void {
    while (this.last !== null && this.held.has(this.last + 1)) {
      const next = this.held.get(this.last + 1)!.m;
      this.held.delete(next.serial);
      this.deliver(next);
    }
    if (this.last !== null) for (const s of this.held.keys()) if (s <= this.last) this.held.delete(s);
  }

  /** Held messages still wait for a missing serial: fetch it, unless a fetch is coming. */
  private askForGap(): void {
    if (this.last === null || this.held.size === 0) return;
    const fetching = (op: Op) => op.kind === "gap" || op.kind === "subscribe";
    if (this.ops.some(fetching) || (this.inFlight && fetching(this.inFlight.op))) return;
    this.enqueue({ kind: "gap", since: this.last, mark: 0 });
  }

  /** After a fetch answered everything it could: what is still missing is gone (protocol.md). */
  private skipGone(): void {
    while (this.held.size > 0 && this.last !== null) {
      const first = Math.min(...this.held.keys());
      if (first > this.last + 1) this.last = first - 1;
      this.drain();
    }
  }

  /** Messages a fetch (`since` the serial it asked from) answered with. */
  private replay(since: number | undefined, messages: Message[]): void {
    const last = this.last;
    if (since !== undefined && last !== null && since <= last && messages.length && messages[0].serial > since + 1) {
      // The fetch covered everything after `last`: what it skipped below its first message was
      // never stored, or expired.
      this.skipBelow(messages[0].serial);
    }
    for (const m of messages) this.take(m);
  }

  /** Every serial below `bound` that is not held is gone: deliver what is held up to it. */
  private skipBelow(bound: number): void {
    while (this.last !== null && this.last + 1 < bound) {
      const held = this.held.size ? Math.min(...this.held.keys()) : Infinity;
      this.last = held < bound ? Math.max(this.last, held - 1) : bound - 1;
      this.drain();
    }
  }

  private history_(messages: Message[], more: boolean): void {
    const head = this.head();
    if (!head) return;
    const lastInFrame = messages.length ? messages[messages.length - 1].serial : undefined;
    if (head.kind === "subscribe") {
      this.replay(head.since, messages);
      head.replayLast = lastInFrame;
      head.more = more;
    } else if (head.kind === "gap") {
      this.replay(head.since, messages);
      if (more && lastInFrame !== undefined) {
        head.since = lastInFrame;
        this.sendHead();
        return;
      }
      this.done();
      // A message held after this fetch went out may wait for a serial stored after it was
      // read: fetch again for those; what this fetch could have seen and did not is gone.
      if ([...this.held.values()].some((h) => h.n > head.mark)) this.askForGap();
      else this.skipGone();
    } else if (head.kind === "history") {
      head.got.push(...messages);
      const room = head.limit === undefined ? Infinity : head.limit - head.got.length;
      if (head.since !== undefined && more && lastInFrame !== undefined && room > 0) {
        head.since = lastInFrame;
        this.sendHead();
        return;
      }
      head.resolve(head.limit === undefined ? head.got : head.got.slice(0, head.limit));
      this.done();
    }
  }

  private subscribed_(serial: number, more: boolean): void {
    const head = this.head();
    if (head?.kind !== "subscribe") return;
    if (!this.wanted) return this.done();
    this.subscribed = true;
    if (this.last === null) this.last = serial;
    this.settle();
    this.done();
    if (more && head.replayLast !== undefined) {
      // The replay stopped short: page the rest before anything else.
      this.ops.unshift({ kind: "gap", since: head.replayLast, mark: 0 });
      this.pump();
    } else {
      this.drain();
      this.askForGap();
    }
  }

  // ---- requests ----

  private head(): Op | undefined {
    return this.inFlight?.op;
  }

  private enqueue(op: Op): void {
    this.ops.push(op);
    this.pump();
  }

  private pump(): void {
    if (this.inFlight || this.ops.length === 0) return;
    const op = this.ops.shift()!;
    this.inFlight = { op, at: 0 };
    if (!this.sendHead()) {
      // Not connected: it goes out on the next connection.
      this.ops.unshift(op);
      this.inFlight = null;
    }
  }

  private sendHead(): boolean {
    const f = this.inFlight;
    if (!f) return false;
    const op = f.op;
    const frame: Record<string, unknown> = { action: opAction(op), channel: this.name };
    if (op.kind === "subscribe" && this.last !== null) frame.since = this.last;
    if (op.kind === "subscribe") op.since = this.last ?? undefined;
    if (op.kind === "gap") {
      frame.since = op.since;
      op.mark = this.arrivals;
    }
    if (op.kind === "history") {
      if (op.since !== undefined) frame.since = op.since;
      else if (op.limit !== undefined) frame.limit = op.limit;
    }
    if (!this.link.send(frame)) return false;
    f.at = this.link.sent();
    return true;
  }

  private done(): void {
    this.inFlight = null;
    this.pump();
  }

  private settle(err?: Error): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) (err ? w.reject(err) : w.resolve());
  }
}

function opAction(op: Op): string {
  return op.kind === "gap" ? "history" : op.kind;
}
