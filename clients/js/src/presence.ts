import { Emitter } from "./emitter";
import { Link, endsConnection, retryDelay, retryable } from "./link";
import { Member, PresenceEvent, WsctlError } from "./types";

interface PresenceEvents extends Record<string, unknown> {
  enter: PresenceEvent;
  leave: PresenceEvent;
  update: PresenceEvent;
  error: WsctlError;
}

interface Listing {
  after?: string;
  got: Member[];
  at: number;
  waiters: { resolve: (m: Member[]) => void; reject: (e: Error) => void }[];
}

/**
 * A channel's presence set. The server announces connections; this collapses them per user, so
 * a user with two tabs, or whose dropped connection lingers until the server notices, enters
 * once and leaves once.
 */
export class Presence extends Emitter<PresenceEvents> {
  private channel: string;
  private link: Link;
  /** What this client entered with, re-entered on every new connection. */
  private mine: { data: unknown } | null = null;
  private byConnection = new Map<string, Member>();
  /** Per user: how many of their connections are present, and the latest data seen. */
  private present = new Map<string, { connections: number; data: unknown }>();
  private listing: Listing | null = null;
  private listed = false;
  /** Users whose last connection left, announced only if they do not come back meanwhile. */
  private leaving = new Map<string, ReturnType<typeof setTimeout>>();
  private leaveDelayMs: number;

  constructor(channel: string, link: Link, leaveDelayMs: number) {
    super();
    this.channel = channel;
    this.link = link;
    this.leaveDelayMs = leaveDelayMs;
  }

  /** Enters the presence set with `data` (≤ 2 KB), now and after every reconnect. */
  enter(data: unknown = true): Promise<void> {
    this.mine = { data };
    this.sendMine();
    return Promise.resolve();
  }

  /** Leaves the presence set. */
  leave(): Promise<void> {
    this.mine = null;
    this.link.send({ action: "presence", channel: this.channel, leave: true });
    return Promise.resolve();
  }

  /** Every member (all pages), one entry per connection. */
  members(): Promise<Member[]> {
    return new Promise((resolve, reject) => {
      if (!this.listing) {
        this.listing = { got: [], at: 0, waiters: [] };
        this.sendListing();
      }
      this.listing.waiters.push({ resolve, reject });
    });
  }

  /** The users present as last seen through events and listings, with their latest data. */
  users(): Map<string, unknown> {
    return new Map([...this.present].map(([user, p]) => [user, p.data]));
  }

  // ---- driven by the channel ----

  connected(subscribed: boolean): void {
    if (this.mine) this.sendMine();
    if (this.listing) {
      this.listing.after = undefined;
      this.listing.got = [];
      this.sendListing();
    } else if (subscribed && this.listed) {
      // Events were missed while disconnected: list again and announce the difference.
      void this.members().catch(() => undefined);
    }
  }

  disconnected(): void {
    if (this.listing) this.listing.at = 0;
  }

  waitingSince(): number | null {
    return this.listing && this.listing.at > 0 ? this.listing.at : null;
  }

  frame(f: any): void {
    if (f.type === "presence" && f.member) {
      const m = f.member as Member;
      const before = this.present.get(m.user);
      const had = before !== undefined;
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
      l.got.push(...(f.members ?? []));
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
      for (const user of new Set([...before.keys(), ...this.present.keys()])) {
        this.announce(user, before.has(user), before.get(user));
      }
      // A page asked twice (a resend after a refusal) lists its members twice: one each.
      const members = [...this.byConnection.values()];
      for (const w of l.waiters) w.resolve(members);
    }
  }

  error(f: any): void {
    if (endsConnection(f.code)) return; // entered and listed again on the next connection
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

  private sendMine(): void {
    if (this.mine) this.link.send({ action: "presence", channel: this.channel, enter: this.mine.data });
  }

  private sendListing(): void {
    const l = this.listing;
    if (!l) return;
    const frame: Record<string, unknown> = { action: "presence", channel: this.channel };
    if (l.after !== undefined) frame.after = l.after;
    if (this.link.send(frame)) l.at = this.link.sent();
  }

  private add(m: Member): void {
    const p = this.present.get(m.user);
    if (p) {
      p.connections++;
      p.data = m.data;
    } else this.present.set(m.user, { connections: 1, data: m.data });
  }

  private forget(m: Member): void {
    const p = this.present.get(m.user);
    if (p && --p.connections === 0) this.present.delete(m.user);
  }

  /** The per-user event for `user`, who was present (`had`, with `was`) or not. */
  private announce(user: string, had: boolean, was: unknown): void {
    const now = this.present.get(user);
    if (now) {
      const back = this.leaving.get(user);
      if (back !== undefined) {
        // Left and came back within the delay (a reconnect): no event either way.
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
}
