import { Emitter } from "./emitter";
import { Link, retryDelay, retryable } from "./link";
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
    const users = new Map<string, unknown>();
    for (const m of this.byConnection.values()) users.set(m.user, m.data);
    return users;
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
      const before = this.users();
      if (f.event === "enter") this.byConnection.set(m.connection, m);
      else if (f.event === "leave") this.byConnection.delete(m.connection);
      this.announce(before);
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
      this.listed = true;
      this.announce(before);
      for (const w of l.waiters) w.resolve(l.got);
    }
  }

  error(f: any): void {
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

  /** Per-user events for the difference between `before` and now. */
  private announce(before: Map<string, unknown>): void {
    const now = this.users();
    for (const [user, data] of now) {
      const back = this.leaving.get(user);
      if (back !== undefined) {
        // Left and came back within the delay (a reconnect): no event either way.
        clearTimeout(back);
        this.leaving.delete(user);
      } else if (!before.has(user)) this.emit("enter", { event: "enter", user, data });
      else if (JSON.stringify(before.get(user)) !== JSON.stringify(data))
        this.emit("update", { event: "update", user, data });
    }
    for (const [user, data] of before) {
      if (now.has(user) || this.leaving.has(user)) continue;
      const t = setTimeout(() => {
        this.leaving.delete(user);
        if (!this.users().has(user)) this.emit("leave", { event: "leave", user, data });
      }, this.leaveDelayMs);
      this.leaving.set(user, t);
    }
  }
}
