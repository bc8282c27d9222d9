/**
 * Arguments and the connection, the way etcdctl takes them, so an operator's existing setup works:
 * --endpoints --cacert --cert --key --user [--password] --insecure-transport --dial-timeout
 * --command-timeout, else ETCDCTL_ENDPOINTS, ETCDCTL_CACERT, ETCDCTL_CERT, ETCDCTL_KEY, ETCDCTL_USER (user or
 * user:password), ETCDCTL_PASSWORD, ETCDCTL_INSECURE_TRANSPORT, ETCDCTL_DIAL_TIMEOUT,
 * ETCDCTL_COMMAND_TIMEOUT. A password not given is asked for on a terminal. Durations as Go writes them
 * (5s, 1m30s, 500ms), booleans as pflag takes them (--flag, --flag=false).
 */
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { Etcd3, type IOptions } from "etcd3";

/** Exit codes, documented in docs/cli.md and the help (128 + the signal's number when interrupted). */
export const EXIT = { ok: 0, error: 1, usage: 2, nothingToDo: 3, sigint: 130, sigterm: 143 } as const;

/** A mistake in how the CLI was called: shown with the usage, exit code 2. */
export class UsageError extends Error {}

/** The command was interrupted (SIGINT, SIGTERM, Ctrl-C at a prompt): it ends with `exitCode`, nothing more said. */
export class Interrupted extends Error {
  constructor(readonly exitCode: number) {
    super(`interrupted (exit ${exitCode})`);
  }
}

export const connectionOptions = {
  endpoints: { type: "string" },
  cacert: { type: "string" },
  cert: { type: "string" },
  key: { type: "string" },
  user: { type: "string" },
  password: { type: "string" },
  "insecure-transport": { type: "boolean" },
  "insecure-skip-tls-verify": { type: "boolean" },
  "dial-timeout": { type: "string" },
  "command-timeout": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const satisfies ParseArgsConfig["options"];

/**
 * Parses `args` with the connection flags and `options`; unknown flags are usage errors. A boolean flag
 * also takes `=true` / `=false` (and pflag's other spellings), as etcdctl's do.
 */
export function parse<O extends NonNullable<ParseArgsConfig["options"]>>(
  args: string[],
  options: O,
): ReturnType<typeof parseArgs<{ args: string[]; options: O & typeof connectionOptions; allowPositionals: true }>> {
  const all: NonNullable<ParseArgsConfig["options"]> = { ...connectionOptions, ...options };
  const off: string[] = [];
  const rest = args.indexOf("--");
  const flags = args.flatMap((arg, i) => {
    const m = /^--([^=]+)=(.*)$/.exec(arg);
    if (!m || (rest >= 0 && i > rest) || all[m[1]!]?.type !== "boolean") return [arg];
    if (boolOf(m[2]!, `--${m[1]}`)) return [`--${m[1]}`];
    off.push(m[1]!);
    return [];
  });
  let parsed;
  try {
    parsed = parseArgs({ args: flags, options: all, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  for (const name of off) (parsed.values as Record<string, unknown>)[name] ??= false;
  return parsed as ReturnType<
    typeof parseArgs<{ args: string[]; options: O & typeof connectionOptions; allowPositionals: true }>
  >;
}

/** A boolean as Go's strconv.ParseBool reads it (etcdctl's flags and ETCDCTL_* variables). */
export function boolOf(text: string, what: string): boolean {
  if (/^(1|t|T|TRUE|true|True)$/.test(text)) return true;
  if (/^(0|f|F|FALSE|false|False)$/.test(text)) return false;
  throw new UsageError(`${what}: not a boolean: "${text}" (true or false)`);
}

export interface ConnectionFlags {
  endpoints?: string;
  cacert?: string;
  cert?: string;
  key?: string;
  user?: string;
  password?: string;
  "insecure-transport"?: boolean;
  "insecure-skip-tls-verify"?: boolean;
  "dial-timeout"?: string;
  "command-timeout"?: string;
}

export interface Connection {
  hosts: string[];
  options: IOptions;
  /** Each call's deadline (--command-timeout), and the connection's (--dial-timeout). */
  timeoutMs: number;
  dialMs: number;
}

const readPem = (file: string, what: string): Buffer => {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new UsageError(`cannot read the ${what} ${file}: ${(err as Error).message}`);
  }
};

const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  μs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/**
 * A duration as Go's time.ParseDuration reads it, etcdctl's --dial-timeout and --command-timeout: a
 * sequence of decimal numbers each with a unit (ns, us, ms, s, m, h), e.g. 5s, 1m30s, 500ms, 1.5h. A
 * timeout must be positive, at least 1 ms, and fit a timer.
 */
export function durationMs(text: string, what = "duration"): number {
  const bad = (why: string): UsageError =>
    new UsageError(`${what}: ${why}: "${text}" (a Go duration, e.g. 5s, 1m30s, 500ms)`);
  if (!/^(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+$/.test(text)) throw bad("not a duration");
  let ms = 0;
  for (const m of text.matchAll(/(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/g)) ms += Number(m[1]) * UNIT_MS[m[2]!]!;
  if (!(ms >= 1)) throw bad("too short a timeout");
  if (ms > 2_147_483_647) throw bad("too long a timeout");
  return Math.round(ms);
}

/** Where the password is asked: the abort signal (SIGINT/SIGTERM), and the terminal (stdin, stderr by default). */
export interface Prompt {
  signal?: AbortSignal;
  input?: NodeJS.ReadableStream;
  output?: NodeJS.WritableStream;
}

/**
 * Asks for the password without echoing it. Ctrl-C (read in raw mode) or a SIGINT/SIGTERM (the signal)
 * rejects with Interrupted (130, or the signal's code); end of input (Ctrl-D) is a usage error: no password.
 */
export async function askPassword(user: string, prompt: Prompt = {}): Promise<string> {
  const { signal } = prompt;
  const input = prompt.input ?? process.stdin;
  const output = prompt.output ?? process.stderr;
  if (signal?.aborted) throw signal.reason instanceof Interrupted ? signal.reason : new Interrupted(EXIT.sigint);
  const rl = createInterface({ input, output, terminal: true });
  const out = rl as unknown as { _writeToOutput: (s: string) => void };
  output.write(`Password for ${user}: `);
  out._writeToOutput = () => {};
  let onAbort: (() => void) | undefined;
  try {
    return await new Promise<string>((resolve, reject) => {
      onAbort = () => reject(signal!.reason instanceof Interrupted ? signal!.reason : new Interrupted(EXIT.sigint));
      signal?.addEventListener("abort", onAbort, { once: true });
      rl.on("SIGINT", () => reject(new Interrupted(EXIT.sigint)));
      rl.on("close", () => reject(new UsageError(`--user ${user}: no password given (end of input)`)));
      rl.question("", resolve);
    });
  } finally {
    if (onAbort) signal?.removeEventListener("abort", onAbort);
    rl.close();
    output.write("\n");
  }
}

/** The connection from flags, then ETCDCTL_* (flags win), as etcdctl reads them. */
export async function connection(
  flags: ConnectionFlags,
  env: NodeJS.ProcessEnv = process.env,
  interactive = process.stdin.isTTY === true,
  prompt: Prompt = {},
): Promise<Connection> {
  // An ETCDCTL_* variable set to "" is unset, as etcdctl (and Go's flag defaults) take it.
  const envOf = (name: string): string | undefined => (env[name] === "" ? undefined : env[name]);
  const cacert = flags.cacert ?? envOf("ETCDCTL_CACERT");
  const cert = flags.cert ?? envOf("ETCDCTL_CERT");
  const key = flags.key ?? envOf("ETCDCTL_KEY");
  const flag = (name: "insecure-transport" | "insecure-skip-tls-verify", fallback: boolean): boolean => {
    const envName = `ETCDCTL_${name.toUpperCase().replace(/-/g, "_")}`;
    const value = envOf(envName);
    return flags[name] ?? (value !== undefined ? boolOf(value, envName) : fallback);
  };
  // etcd3 always verifies the server's certificate (it builds the TLS credentials itself, with no way to
  // skip verification): say so rather than connect some other way than asked.
  if (flag("insecure-skip-tls-verify", false))
    throw new UsageError(
      "--insecure-skip-tls-verify is not supported: the etcd3 client always verifies the server; give --cacert with the CA that signed its certificate",
    );
  // etcdctl's --insecure-transport (default true) means plain TCP when no TLS file is given; false asks for
  // TLS anyway, trusting the system's CAs.
  const tls = cacert !== undefined || cert !== undefined || !flag("insecure-transport", true);
  const hosts = (flags.endpoints ?? envOf("ETCDCTL_ENDPOINTS") ?? "127.0.0.1:2379")
    .split(",")
    .map((e) => e.trim())
    .filter(Boolean)
    .map((e) => (/^https?:\/\//.test(e) ? e : `${tls ? "https" : "http"}://${e}`));
  if (hosts.length === 0) throw new UsageError("--endpoints: no endpoint given");
  if ((cert === undefined) !== (key === undefined)) throw new UsageError("--cert and --key go together");
  const timeoutMs = durationMs(
    flags["command-timeout"] ?? envOf("ETCDCTL_COMMAND_TIMEOUT") ?? "5s",
    "--command-timeout",
  );
  const created = Date.now();
  const dialMs = durationMs(flags["dial-timeout"] ?? envOf("ETCDCTL_DIAL_TIMEOUT") ?? "2s", "--dial-timeout");
  const options: IOptions = {
    hosts,
    dialTimeout: dialMs,
    // Each call within the command timeout, as etcdctl's --command-timeout, plus, while the connection may
    // still be dialing, what is left of --dial-timeout (etcd3 has no dial deadline of its own). Streams
    // are bounded by the command.
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Math.max(Date.now(), created + dialMs) + timeoutMs }),
  };
  if (tls && (cacert !== undefined || cert !== undefined)) {
    options.credentials = {
      rootCertificate: cacert === undefined ? undefined! : readPem(cacert, "CA certificate"),
      ...(cert !== undefined && { certChain: readPem(cert, "client certificate") }),
      ...(key !== undefined && { privateKey: readPem(key, "client key") }),
    };
  }
  const userFlag = flags.user ?? envOf("ETCDCTL_USER");
  if (userFlag !== undefined) {
    // As etcdctl: with a password given, the user is taken whole (a colon in it included); else user:password.
    const given = flags.password ?? envOf("ETCDCTL_PASSWORD");
    const colon = given !== undefined ? -1 : userFlag.indexOf(":");
    const username = colon < 0 ? userFlag : userFlag.slice(0, colon);
    let password = colon < 0 ? given : userFlag.slice(colon + 1);
    if (password === undefined) {
      if (!interactive)
        throw new UsageError(`--user ${username}: no password (give user:password or ETCDCTL_PASSWORD)`);
      password = await askPassword(username, prompt);
    }
    options.auth = { username, password };
  }
  return { hosts, options, timeoutMs, dialMs };
}

export const connect = (conn: Connection): Etcd3 => new Etcd3(conn.options);
