/**
 * Arguments and the connection, the way etcdctl takes them, so an operator's existing setup works:
 * --endpoints --cacert --cert --key --user [--password], else ETCDCTL_ENDPOINTS, ETCDCTL_CACERT,
 * ETCDCTL_CERT, ETCDCTL_KEY, ETCDCTL_USER (user or user:password), ETCDCTL_PASSWORD. A password not given
 * is asked for on a terminal.
 */
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { Etcd3, type IOptions } from "etcd3";

/** Exit codes, documented in docs/cli.md and the help. */
export const EXIT = { ok: 0, error: 1, usage: 2, nothingToDo: 3 } as const;

/** A mistake in how the CLI was called: shown with the usage, exit code 2. */
export class UsageError extends Error {}

export const connectionOptions = {
  endpoints: { type: "string" },
  cacert: { type: "string" },
  cert: { type: "string" },
  key: { type: "string" },
  user: { type: "string" },
  password: { type: "string" },
  "command-timeout": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const satisfies ParseArgsConfig["options"];

/** Parses `args` with the connection flags and `options`; unknown flags are usage errors. */
export function parse<O extends NonNullable<ParseArgsConfig["options"]>>(
  args: string[],
  options: O,
): ReturnType<typeof parseArgs<{ args: string[]; options: O & typeof connectionOptions; allowPositionals: true }>> {
  try {
    return parseArgs({ args, options: { ...connectionOptions, ...options }, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

export interface ConnectionFlags {
  endpoints?: string;
  cacert?: string;
  cert?: string;
  key?: string;
  user?: string;
  password?: string;
  "command-timeout"?: string;
}

export interface Connection {
  hosts: string[];
  options: IOptions;
  timeoutMs: number;
}

const readPem = (file: string, what: string): Buffer => {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new UsageError(`cannot read the ${what} ${file}: ${(err as Error).message}`);
  }
};

/** etcdctl's `--command-timeout` form: 5s, 500ms, 1m. */
export function durationMs(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  if (!m) throw new UsageError(`not a duration: ${JSON.stringify(text)} (e.g. 5s, 500ms)`);
  const n = Number(m[1]);
  return m[2] === "ms" ? n : m[2] === "m" ? n * 60_000 : n * 1000;
}

/** Asks for the password without echoing it. */
async function askPassword(user: string): Promise<string> {
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
  const out = rl as unknown as { _writeToOutput: (s: string) => void; output: NodeJS.WriteStream };
  process.stderr.write(`Password for ${user}: `);
  out._writeToOutput = () => {};
  try {
    return await new Promise<string>((resolve) => rl.question("", resolve));
  } finally {
    rl.close();
    process.stderr.write("\n");
  }
}

/** The connection from flags, then ETCDCTL_* (flags win), as etcdctl reads them. */
export async function connection(
  flags: ConnectionFlags,
  env: NodeJS.ProcessEnv = process.env,
  interactive = process.stdin.isTTY === true,
): Promise<Connection> {
  const cacert = flags.cacert ?? env.ETCDCTL_CACERT;
  const cert = flags.cert ?? env.ETCDCTL_CERT;
  const key = flags.key ?? env.ETCDCTL_KEY;
  const tls = cacert !== undefined || cert !== undefined;
  const hosts = (flags.endpoints ?? env.ETCDCTL_ENDPOINTS ?? "127.0.0.1:2379")
    .split(",")
    .map((e) => e.trim())
    .filter(Boolean)
    .map((e) => (/^https?:\/\//.test(e) ? e : `${tls ? "https" : "http"}://${e}`));
  if (hosts.length === 0) throw new UsageError("--endpoints: no endpoint given");
  if ((cert === undefined) !== (key === undefined)) throw new UsageError("--cert and --key go together");
  const timeoutMs = durationMs(flags["command-timeout"] ?? env.ETCDCTL_COMMAND_TIMEOUT ?? "5s");
  const options: IOptions = {
    hosts,
    dialTimeout: timeoutMs,
    // Each call within the command timeout, as etcdctl's --command-timeout; streams are bounded by the command.
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeoutMs }),
  };
  if (tls) {
    options.credentials = {
      rootCertificate: cacert === undefined ? undefined! : readPem(cacert, "CA certificate"),
      ...(cert !== undefined && { certChain: readPem(cert, "client certificate") }),
      ...(key !== undefined && { privateKey: readPem(key, "client key") }),
    };
  }
  const userFlag = flags.user ?? env.ETCDCTL_USER;
  if (userFlag !== undefined) {
    const colon = userFlag.indexOf(":");
    const username = colon < 0 ? userFlag : userFlag.slice(0, colon);
    let password = colon < 0 ? (flags.password ?? env.ETCDCTL_PASSWORD) : userFlag.slice(colon + 1);
    if (password === undefined) {
      if (!interactive)
        throw new UsageError(`--user ${username}: no password (give user:password or ETCDCTL_PASSWORD)`);
      password = await askPassword(username);
    }
    options.auth = { username, password };
  }
  return { hosts, options, timeoutMs };
}

export const connect = (conn: Connection): Etcd3 => new Etcd3(conn.options);
