export * from "./errors.js";
export { Session, DRIFT_RATIO, MIN_MARGIN_MS } from "./session.js";
export type { SessionEvents, SessionOptions, SessionState } from "./session.js";
export type { EtcdClient } from "./common/client.js";
