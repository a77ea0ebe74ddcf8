import { Emitter } from "./emitter";
import { Link } from "./link";
import { Member, PresenceEvent, WsctlError } from "./types";
interface PresenceEvents extends Record<string, unknown> {
    enter: PresenceEvent;
    leave: PresenceEvent;
    update: PresenceEvent;
    error: WsctlError;
}
/**
 * A channel's presence set. The server announces connections; this collapses them per user, so
 * a user with two tabs, or whose dropped connection lingers until the server notices, enters
 * once and leaves once.
 */
export declare class Presence extends Emitter<PresenceEvents> {
    private channel;
    private link;
    /** What this client entered with, re-entered on every new connection. */
    private mine;
    private byConnection;
    /** Per user: how many of their connections are present, and the latest data seen. */
    private present;
    private listing;
    private listed;
    /** Users whose last connection left, announced only if they do not come back meanwhile. */
    private leaving;
    private leaveDelayMs;
    constructor(channel: string, link: Link, leaveDelayMs: number);
    /** Enters the presence set with `data` (≤ 2 KB), now and after every reconnect. */
    enter(data?: unknown): Promise<void>;
    /** Leaves the presence set. */
    leave(): Promise<void>;
    /** Every member (all pages), one entry per connection. */
    members(): Promise<Member[]>;
    /** The users present as last seen through events and listings, with their latest data. */
    users(): Map<string, unknown>;
    connected(subscribed: boolean): void;
    disconnected(): void;
    waitingSince(): number | null;
    frame(f: any): void;
    error(f: any): void;
    private sendMine;
    private sendListing;
    private add;
    private forget;
    /** The per-user event for `user`, who was present (`had`, with `was`) or not. */
    private announce;
}
export {};
