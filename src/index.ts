export * from "./errors.js";
export { Session, DRIFT_RATIO, MIN_MARGIN_MS } from "./session.js";
export type { SessionEvents, SessionOptions, SessionState } from "./session.js";
export { Election } from "./election.js";
export type { Leader } from "./leader.js";
export { Term } from "./term.js";
export { Holding } from "./holding.js";
export type { EtcdClient } from "./common/client.js";
