import { Channel } from "./channel";
import { Emitter } from "./emitter";
import { ClientOptions, PublishResult, State, StateChange, WsctlError } from "./types";
interface ClientEvents extends Record<string, unknown> {
    state: StateChange;
    /** A refusal no request was waiting for, or a frame the client does not know. */
    error: WsctlError;
    /** The server accepted a renewed token (an `auth` frame): `expires` is its `exp`. */
    token: {
        user: string;
        expires: number;
    };
}
/**
 * One WebSocket to a wsctl stage, kept open: reconnects with backoff, resumes every channel
 * where it stopped, sends unacknowledged publishes again, renews its token.
 */
export declare class Client extends Emitter<ClientEvents> {
    private opts;
    private Socket;
    private ws;
    private current;
    private closed;
    private attempt;
    private token;
    /** The token's expiry, epoch seconds, when known. */
    private expires;
    /** The server refused the token, or it ended: ask `getToken` for another before reconnecting. */
    private stale;
    private channels;
    private publishes;
    private link;
    private timers;
    private lastSent;
    /** When the keep-alive ping that has no `pong` yet went out. */
    private pingAt;
    private openedAt;
    private ids;
    private readonly idPrefix;
    constructor(options: ClientOptions);
    get state(): State;
    /** The channel named `name` (the same object every time). */
    channel(name: string): Channel;
    /**
     * Publishes `data` on `channel`; resolves once, with the serial, after the server stored it,
     * however many reconnects that takes. `id` makes it idempotent (one is made up otherwise).
     */
    publish(channel: string, data: unknown, options?: {
        id?: string;
    }): Promise<PublishResult>;
    /** Closes the connection for good; waiting publishes are rejected. */
    close(): void;
    private shutdown;
    /** The connection is gone: channels and publishes wait for the next one. */
    private detach;
    /** Drops the connection and reconnects now, as after a network drop. */
    reconnect(reason?: string): void;
    private connect;
    private opened;
    /** The socket closed (or never opened): say why and come back. */
    private lost;
    private retry;
    /** Closes the socket on purpose and reconnects after `delay` (null: with backoff). */
    private dropSocket;
    private send;
    private frame;
    private error;
    private freshToken;
    /** `getToken`, given up on after `connectTimeoutMs`, so a hung token service is a failed attempt. */
    private askToken;
    private take;
    /** Renews at 80% of the token's remaining life, with an `auth` frame on the open connection. */
    private renewTimer;
    private scheduleRenewal;
    private renew;
    private renewalRefused;
    /** Once a second: a keep-alive ping when idle; a reconnect when a request goes unanswered. */
    private watch;
    private later;
    private clear;
    private setState;
}
/** The `exp` of a JWT, or null when it has none or is not one. */
export declare function jwtExpiry(token: string): number | null;
export {};
