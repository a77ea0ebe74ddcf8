/** A message on a channel, as every subscriber receives it. */
export interface Message {
    channel: string;
    /** Per channel, increasing: every subscriber sees the same order. */
    serial: number;
    /** The publisher's id (idempotency key), or one the server made up. */
    id: string;
    /** The publishing user (`sub` of their token), or `server` for server-side publishes. */
    from: string;
    data: unknown;
    /** When it was stored, epoch milliseconds. */
    ts: number;
}
export type State = "connecting" | "connected" | "disconnected" | "closed";
/** What `client.on("state")` listeners get. */
export interface StateChange {
    state: State;
    /** Why it changed: the close code and reason, a refusal, `client.close()`… */
    reason?: string;
    /** For `disconnected`: how long until the next attempt, in milliseconds. */
    retryInMs?: number;
}
/** The answer to a publish, once the server stored it. */
export interface PublishResult {
    serial: number;
    /** True when this id had been published before: `serial` is the first publish's. */
    duplicate: boolean;
}
export interface Member {
    user: string;
    connection: string;
    data: unknown;
}
/**
 * A presence change, per user: a user with several connections (tabs, a reconnect that left
 * its old connection behind for a moment) enters once and leaves once.
 */
export interface PresenceEvent {
    event: "enter" | "leave" | "update";
    user: string;
    data: unknown;
}
/** A refusal from the server: `code` is protocol.md's error code. */
export declare class WsctlError extends Error {
    readonly code: string;
    constructor(code: string, message: string);
}
/** The part of the WebSocket API the client uses: the browser's, Node's or the `ws` package's. */
export interface SocketLike {
    readonly readyState: number;
    send(data: string): void;
    close(code?: number, reason?: string): void;
    onopen: ((ev: any) => void) | null;
    onclose: ((ev: any) => void) | null;
    onerror: ((ev: any) => void) | null;
    onmessage: ((ev: any) => void) | null;
}
export type SocketConstructor = new (url: string) => SocketLike;
/** A token, or a token with its expiry when it is not a JWT the client can read. */
export type TokenGrant = string | {
    token: string;
    expiresAt?: number;
};
export interface ClientOptions {
    /** The stage URL, `wss://…/STAGE`. */
    url: string;
    /** A token for the whole life of the client. */
    token?: string;
    /**
     * Called at connect, before the token expires (at 80% of its life, then sent in an `auth`
     * frame) and after the server refused one. Return a fresh token.
     */
    getToken?: () => Promise<TokenGrant> | TokenGrant;
    /** A WebSocket constructor where there is no global one (e.g. the `ws` package in Node). */
    WebSocket?: SocketConstructor;
    /** First reconnect delay; doubles on each failure, with jitter, up to `maxDelayMs`. */
    minDelayMs?: number;
    maxDelayMs?: number;
    /** Sends a `ping` after this long without sending anything (API Gateway closes idle connections at 10 minutes). */
    pingAfterMs?: number;
    /** Reconnects on purpose after this long (API Gateway ends connections at 2 hours). */
    maxConnectionMs?: number;
    /** Gives up on a handshake that has not opened after this long. */
    connectTimeoutMs?: number;
    /** Publishes sent and not yet acknowledged at once (the server holds at most 8 numbered ones). */
    publishWindow?: number;
    /**
     * How long a user who left a channel's presence set may take to come back (a reconnect)
     * before the `leave` is announced.
     */
    presenceLeaveDelayMs?: number;
}
