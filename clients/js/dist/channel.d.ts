import { Emitter } from "./emitter";
import { Link } from "./link";
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
interface ChannelEvents extends Record<string, unknown> {
    message: Message;
    error: WsctlError;
}
export declare class Channel extends Emitter<ChannelEvents> {
    readonly name: string;
    readonly presence: Presence;
    private link;
    /** Serial of the last message delivered: where a resume starts. */
    private last;
    /** Messages that arrived ahead of a missing serial, with the order they arrived in. */
    private held;
    private arrivals;
    private ops;
    private inFlight;
    private wanted;
    private subscribed;
    private waiters;
    constructor(name: string, link: Link, presenceLeaveDelayMs: number);
    /** The serial of the last message delivered, or null before the first. */
    get lastSerial(): number | null;
    /**
     * Calls `fn` with each message once, in serial order, across any number of reconnects.
     * Resolves when the server confirmed the subscription.
     */
    subscribe(fn?: (m: Message) => void, options?: SubscribeOptions): Promise<void>;
    /** Publishes on this channel: see `Client.publish`. */
    publish(data: unknown, options?: {
        id?: string;
    }): Promise<PublishResult>;
    /** Stops delivery; a later `subscribe` starts from then, not from where this one stopped. */
    unsubscribe(): Promise<void>;
    /** The channel's past: `since` a serial (every page), or the last `limit` messages. */
    history(options?: HistoryOptions): Promise<Message[]>;
    /** A new connection: resubscribe from the last serial delivered, send unanswered requests again. */
    connected(): void;
    disconnected(): void;
    /** When the oldest unanswered request was sent, if any. */
    waitingSince(): number | null;
    /** A server frame for this channel. */
    frame(f: any): void;
    /** An `error` frame naming this channel. */
    error(f: any): void;
    /** The server dropped this channel when a renewed token no longer allowed it. */
    dropped(): void;
    private take;
    private hold;
    private deliver;
    private drain;
    /** Held messages still wait for a missing serial: fetch it, unless a fetch is coming. */
    private askForGap;
    /** After a fetch answered everything it could: what is still missing is gone (protocol.md). */
    private skipGone;
    /** Messages a fetch (`since` the serial it asked from) answered with. */
    private replay;
    /** Every serial below `bound` that is not held is gone: deliver what is held up to it. */
    private skipBelow;
    private history_;
    private subscribed_;
    private head;
    private enqueue;
    private pump;
    private sendHead;
    private done;
    private settle;
}
export {};
