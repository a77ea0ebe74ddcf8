import { Link } from "./link";
import { PublishResult } from "./types";
/**
 * Publishes in the order they were made: numbered per connection (`seq`) so the server stores
 * them in that order, a few in flight at a time, and every unacknowledged one sent again with
 * the same id on the next connection (the server answers a repeat with the first serial).
 */
export declare class Publishes {
    private link;
    private window;
    private queue;
    private seq;
    private open;
    /** Counts connections, so a resend timer set on one does nothing on the next. */
    private connection;
    constructor(link: Link, window: number);
    add(channel: string, data: unknown, id: string): Promise<PublishResult>;
    connected(): void;
    disconnected(): void;
    waitingSince(): number | null;
    ack(f: any): void;
    error(f: any): void;
    /** Rejects everything still waiting. */
    fail(err: Error): void;
    private pump;
    private send;
}
