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

/** Repeats of one failure within this window are folded into a count (design: Every failure is visible). */
const FOLD_WINDOW_MS = 10_000;

/** Fields that count or time the repeats of one failure: two lines differing only in them are a repeat. */
const COUNTERS = new Set(["attempt", "remainingMs", "waitingMs", "ackTimeoutMs", "answerMs"]);

/** What tells one failure from another: every field but the counters; an error by its code and message. */
function foldKey(level: string, fields: object, message: string): string {
  const parts = [level, message];
  for (const [key, value] of Object.entries(fields)) {
    if (COUNTERS.has(key) || value === undefined) continue;
    // grpc's messages carry timings and timestamps ("Deadline exceeded after 5.002s"): not a new failure.
    const text =
      value instanceof Error
        ? `${String((value as { code?: unknown }).code)}: ${value.message.replace(/\d+/g, "#")}`
        : typeof value === "bigint"
          ? value.toString()
          : JSON.stringify(value);
    parts.push(`${key}=${text}`);
  }
  return parts.join("\0");
}

/** Folds still counting, of every folding console: printed when the process exits. */
const counting = new Set<() => void>();
let exitHooked = false;

/** One "exit" listener for the whole process, not one per logger; it keeps nothing alive. */
function flushOnExit(): void {
  if (exitHooked || typeof process?.once !== "function") return;
  exitHooked = true;
  process.once("exit", () => {
    for (const flush of [...counting]) flush();
  });
}

/**
 * Warnings and errors to `out` (the console), one line each (as client-go's klog does); debug and info
 * dropped. A failure that repeats (the same message and fields, an error by its code and message, but
 * attempt counts and timings aside) is printed once, then folded: when the window closes, or the process
 * exits, one line says how many more came. Stacks only at error level, where something ended (a lost
 * session, a callback that threw, `run()` rejecting): a retried call is one line.
 */
export function foldingConsole(out: Pick<Console, "warn" | "error"> = console, windowMs = FOLD_WINDOW_MS): Logger {
  const open = new Map<string, { more: number }>();
  const print = (level: "warn" | "error", fields: object, message: string): void => {
    const key = foldKey(level, fields, message);
    const seen = open.get(key);
    if (seen) {
      seen.more++;
      return;
    }
    const entry = { more: 0 };
    open.set(key, entry);
    out[level](`[etcd-election] ${message}${describe(fields, level === "error")}`);
    const { election, identity } = fields as { election?: unknown; identity?: unknown };
    const who = [
      ...(election === undefined ? [] : [`election=${JSON.stringify(election)}`]),
      ...(identity === undefined ? [] : [`identity=${JSON.stringify(identity)}`]),
    ];
    const flush = (): void => {
      clearTimeout(timer);
      counting.delete(flush);
      if (open.get(key) === entry) open.delete(key);
      if (entry.more > 0)
        out[level](
          `[etcd-election] ${message}${who.length ? ` (${who.join(" ")})` : ""}: ... and ${entry.more} more in the last ${Math.round(windowMs / 1000)} s`,
        );
    };
    // unref'd: a pending count never keeps the process alive (the exit hook prints it instead)
    const timer = setTimeout(flush, windowMs).unref();
    counting.add(flush);
    flushOnExit();
  };
  return {
    debug() {},
    info() {},
    warn: (fields, message) => print("warn", fields, message),
    error: (fields, message) => print("error", fields, message),
  };
}

/** The default of a LeaderElector: warnings and errors on the console, repeats folded. */
export const consoleLogger: Logger = foldingConsole();

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

/** " (k=v ...)", then, with `stack`, the stack of `err` on the lines below. */
function describe(fields: object, stack: boolean): string {
  const parts: string[] = [];
  let trace = "";
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    if (value instanceof Error) {
      const code = (value as { code?: unknown }).code;
      parts.push(`${key}=${typeof code === "string" ? `${code}: ` : ""}${value.message}`);
      if (stack && key === "err" && value.stack) trace = `\n${value.stack}`;
    } else parts.push(`${key}=${typeof value === "bigint" ? value.toString() : JSON.stringify(value)}`);
  }
  return (parts.length ? ` (${parts.join(" ")})` : "") + trace;
}
