import { InvalidArgumentError } from "../errors.js";

/**
 * The logger shape we accept: pino's and console-like loggers that take `(fields, message)`.
 * Every state change is logged at debug or info; every error the library handles itself (a retried
 * call, a failed release, a callback that threw) at warn or error, with the error as `err`.
 */
export interface Logger {
  /** Detail of each state change (a grant, a watch, a wake). */
  debug(fields: object, message: string): void;
  /** State changes: elected, resigned, session closing. */
  info(fields: object, message: string): void;
  /** An error the library handled itself (retried, or given up on without harm), as `err`. */
  warn(fields: object, message: string): void;
  /** An error that ended something: a lost session or term, a callback that threw. */
  error(fields: object, message: string): void;
}

const LEVELS = ["debug", "info", "warn", "error"] as const;
type Level = (typeof LEVELS)[number];

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** Warnings and errors to the console (as client-go's klog does), one line each; debug and info dropped. */
export const consoleLogger: Logger = {
  debug() {},
  info() {},
  warn: (fields, message) => console.warn(`[etcd-election] ${message}${describe(fields)}`),
  error: (fields, message) => console.error(`[etcd-election] ${message}${describe(fields)}`),
};

/** The `logger` option: a logger, `false` (silent), or undefined (the given default). */
export function toLogger(option: unknown, fallback: Logger): Logger {
  if (option === undefined) return fallback;
  if (option === false) return silentLogger;
  const l = option as Logger | null;
  if (!l || typeof l !== "object" || LEVELS.some((level) => typeof (l as Partial<Logger>)[level] !== "function")) {
    throw new InvalidArgumentError(
      "logger must have debug, info, warn and error methods taking (fields, message), as pino's do, or be false",
    );
  }
  return withFields(l, {});
}

/** A logger that adds `bindings` to every line's fields (as pino's child does, for any logger). */
export function withFields(logger: Logger, bindings: object): Logger {
  if (logger === silentLogger) return logger;
  const inner = logger;
  const out = {} as Logger;
  for (const level of LEVELS) out[level] = (fields, message) => call(inner, level, { ...bindings, ...fields }, message);
  return out;
}

/** A throwing logger must not break the library: its error is dropped. */
function call(logger: Logger, level: Level, fields: object, message: string): void {
  try {
    logger[level](fields, message);
  } catch {
    // nothing sensible to do with a logger that throws
  }
}

/** " (k=v ...)", then the stack of `err` on the lines below. */
function describe(fields: object): string {
  const parts: string[] = [];
  let stack = "";
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    if (value instanceof Error) {
      const code = (value as { code?: unknown }).code;
      parts.push(`${key}=${typeof code === "string" ? `${code}: ` : ""}${value.message}`);
      if (key === "err" && value.stack) stack = `\n${value.stack}`;
    } else parts.push(`${key}=${typeof value === "bigint" ? value.toString() : JSON.stringify(value)}`);
  }
  return (parts.length ? ` (${parts.join(" ")})` : "") + stack;
}
