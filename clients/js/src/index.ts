export { Client, jwtExpiry } from "./client";
export { Channel } from "./channel";
export type { HistoryOptions, SubscribeOptions } from "./channel";
export { Presence } from "./presence";
export { WsctlError } from "./types";
export type {
  ClientOptions,
  Member,
  Message,
  PresenceEvent,
  PublishResult,
  SocketConstructor,
  SocketLike,
  State,
  StateChange,
  TokenGrant,
} from "./types";
