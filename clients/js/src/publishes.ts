import { Link, endsConnection, retryDelay, retryable } from "./link";
import { PublishResult, WsctlError } from "./types";

/** protocol.md's limits of a publish: `data` ≤ 120 KB, `id` 1–128 characters. */
const MAX_DATA = 120 * 1024;
const MAX_ID = 128;

interface Pending {
  channel: string;
  data: unknown;
  id: string;
  /** This connection's `seq` for it, once sent. */
  seq: number | null;
  at: number;
  resolve: (r: PublishResult) => void;
  reject: (e: Error) => void;
}

/**
 * Publishes in the order they were made: numbered per connection (`seq`) so the server stores
 * them in that order, a few in flight at a time, and every unacknowledged one sent again with
 * the same id on the next connection (the server answers a repeat with the first serial).
 */
export class Publishes {
  private link: Link;
  private window: number;
  private queue: Pending[] = [];
  private seq = 0;
  private open = false;
  /** Counts connections, so a resend timer set on one does nothing on the next. */
  private connection = 0;

  constructor(link: Link, window: number) {
    this.link = link;
    this.window = Math.max(1, Math.min(window, 8));
  }

  add(channel: string, data: unknown, id: string): Promise<PublishResult> {
    // Refused here, not by a server that would close the connection over it (a frame over API
    // Gateway's limits) and see it again on every reconnect.
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

  connected(): void {
    this.open = true;
    this.seq = 0;
    this.connection++;
    for (const p of this.queue) p.seq = null;
    this.pump();
  }

  disconnected(): void {
    this.open = false;
  }

  waitingSince(): number | null {
    let oldest: number | null = null;
    for (const p of this.queue) if (p.seq !== null && (oldest === null || p.at < oldest)) oldest = p.at;
    return oldest;
  }

  ack(f: any): void {
    const i = this.queue.findIndex((p) => p.id === f.id && p.channel === f.channel && p.seq !== null);
    if (i < 0) return;
    const [p] = this.queue.splice(i, 1);
    p.resolve({ serial: Number(f.serial), duplicate: f.duplicate === true });
    this.pump();
  }

  error(f: any): void {
    const p = this.queue.find((p) => p.id === f.id && p.seq !== null);
    if (!p) return; // e.g. `internal` after an ack: the message is stored
    if (endsConnection(f.code)) return; // sent again on the next connection
    if (retryable(f.code)) {
      // Same id and seq: the frame had no effect.
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
  fail(err: Error): void {
    const queue = this.queue;
    this.queue = [];
    for (const p of queue) p.reject(err);
  }

  private pump(): void {
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

  private send(p: Pending): void {
    this.link.send({ action: "publish", channel: p.channel, data: p.data, id: p.id, seq: p.seq });
    p.at = this.link.sent();
  }
}
