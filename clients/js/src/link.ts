import type { PublishResult } from "./types";

/** What a channel needs from its client: the current connection, if any. */
export interface Link {
  /** Sends a frame on the open connection; false when there is none (it is sent again on the next). */
  send(frame: Record<string, unknown>): boolean;
  /** Marks a request sent now, so the client's watchdog notices an answer that never comes. */
  sent(): number;
  /** The client's publish, with its ordering and retries. */
  publish(channel: string, data: unknown, id?: string): Promise<PublishResult>;
}

/** A delay the server asked for with `rate_limited`, or a short one for `internal`. */
export function retryDelay(frame: { retry_after_ms?: unknown }): number {
  const ms = Number(frame.retry_after_ms);
  return Number.isFinite(ms) && ms > 0 ? Math.min(ms, 60_000) : 1000;
}

/** Codes after which the same frame is worth sending again. */
export function retryable(code: string): boolean {
  return code === "rate_limited" || code === "internal";
}

/** `token_expired`, `token_revoked`: not acted on, and the server closes the connection; the request belongs on the next one. */
export function endsConnection(code: string): boolean {
  return code === "token_expired" || code === "token_revoked";
}
