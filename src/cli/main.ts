/**
 * `etcd-election`: an operator's view of elections, locks and semaphores in etcd (docs/cli.md).
 * Errors print as one line, `CODE: message`; exit codes: 0 ok, 1 error (etcd refused or failed),
 * 2 usage, 3 nothing to do (resign: nobody holds, the holder changed, or not confirmed).
 */
import { isElectionError } from "../errors.js";
import { history, resign, status, watch, type Io } from "./commands.js";
import { connect, connection, connectionOptions, EXIT, Interrupted, parse, UsageError } from "./connection.js";
import { oneLine } from "./render.js";

export const HELP = `etcd-election: who leads what, who waits, and who led before, in etcd

Usage:
  etcd-election status [prefix] [--json]       every election, mutex, semaphore and read-write lock
                                               under prefix: holders and waiters in order, with value,
                                               token (create revision), lease and its time left
  etcd-election watch [prefix] [--json]        the same, redrawn on every change (plain lines when
                                               stdout is not a terminal); Ctrl-C stops
  etcd-election history <name> [--json] [--svg <file>]
                                               the terms of <name> from etcd's retained history (since
                                               its last compaction): holder, token, revisions it began
                                               and ended at, how it ended; --svg draws them
  etcd-election resign <name> --force [--yes]  deletes the current holder's key (guarded by its token).
                                               The holder's signal aborts when it sees the delete, and
                                               fencing (term.txn(), withFence) refuses its late writes;
                                               an unfenced write it has in flight is not stopped.
                                               Asks first unless --yes.

Connection (as etcdctl; flags win over the environment):
  --endpoints <a,b>    ETCDCTL_ENDPOINTS    default 127.0.0.1:2379
  --cacert <file>      ETCDCTL_CACERT       TLS: trust this CA (https:// then implied)
  --cert <file>        ETCDCTL_CERT         TLS client certificate
  --key <file>         ETCDCTL_KEY          its key
  --user <u[:p]>       ETCDCTL_USER         authentication; the password from user:password,
  --password <p>       ETCDCTL_PASSWORD     --password, ETCDCTL_PASSWORD, or asked on a terminal
  --insecure-transport[=false]  ETCDCTL_INSECURE_TRANSPORT  default true: plain TCP unless a TLS
                       file is given; false: TLS even so, trusting the system's CAs
  --insecure-skip-tls-verify    refused: the etcd3 client always verifies the server
  --dial-timeout <d>   ETCDCTL_DIAL_TIMEOUT     to connect, default 2s
  --command-timeout <d> ETCDCTL_COMMAND_TIMEOUT per call, default 5s (Go durations: 5s, 1m30s, 500ms)

Exit codes: 0 ok; 1 error (printed as one line, CODE: message, e.g. AUTH_FAILED: ...);
2 usage (one line, usage: ...); 3 nothing to do (resign: nobody holds it, the holder changed, or not
confirmed); 130 interrupted (SIGINT, Ctrl-C, also at resign's question: nothing deleted); 143 SIGTERM.
`;

export async function main(argv: string[], io: Omit<Io, "timeoutMs">): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === undefined) throw new UsageError("no command (status, watch, history, resign)");
    if (command === "help" || command === "--help" || command === "-h") {
      io.out(HELP);
      return EXIT.ok;
    }
    const spec = {
      status: { json: { type: "boolean" } },
      watch: { json: { type: "boolean" } },
      history: { json: { type: "boolean" }, svg: { type: "string" } },
      resign: { force: { type: "boolean" }, yes: { type: "boolean", short: "y" } },
    } as const;
    if (!Object.hasOwn(spec, command)) throw new UsageError(`unknown command "${command}"`);
    const { values, positionals } = parse(rest, {
      json: { type: "boolean" },
      svg: { type: "string" },
      force: { type: "boolean" },
      yes: { type: "boolean", short: "y" },
    });
    if (values.help) {
      io.out(HELP);
      return EXIT.ok;
    }
    const allowed = new Set<string>([
      ...Object.keys(spec[command as keyof typeof spec]),
      ...Object.keys(connectionOptions),
    ]);
    const stray = Object.keys(values).find((k) => !allowed.has(k));
    if (stray) throw new UsageError(`${command} takes no --${stray}`);
    const named = command === "history" || command === "resign";
    if (named ? positionals.length !== 1 : positionals.length > 1)
      throw new UsageError(named ? `${command} takes one <name>` : `${command} takes at most one [prefix]`);
    const arg = positionals[0] ?? "";
    if (named && (arg === "" || arg.endsWith("/"))) throw new UsageError(`not a name: "${arg}"`);

    // Usage errors before a password is asked or etcd is dialled.
    if (command === "resign") {
      if (values.force !== true) throw new UsageError("resign deletes the holder's key: say --force");
      if (values.yes !== true && !io.inTty) throw new UsageError("not a terminal to confirm on: add --yes");
    }

    const conn = await connection(values, process.env, process.stdin.isTTY === true, {
      signal: io.signal,
      ...(io.input !== undefined && { input: io.input }),
    });
    const client = connect(conn);
    const cio: Io = { ...io, timeoutMs: conn.timeoutMs };
    if (io.signal.aborted) throw io.signal.reason;
    try {
      switch (command) {
        case "status":
          return await status(client, arg, values.json === true, cio);
        case "watch":
          return await watch(client, arg, values.json === true, cio);
        case "history":
          return await history(
            client,
            arg,
            { json: values.json === true, ...(values.svg !== undefined && { svg: values.svg }) },
            cio,
          );
        default:
          return await resign(client, arg, { force: values.force === true, yes: values.yes === true }, cio);
      }
    } finally {
      client.close();
    }
  } catch (err) {
    if (err instanceof Interrupted) return err.exitCode;
    if (err instanceof UsageError) {
      io.err(`usage: ${oneLine(err.message)} (etcd-election --help)\n`);
      return EXIT.usage;
    }
    if (isElectionError(err)) {
      io.err(`${err.code}: ${oneLine(err.message)}\n`);
      return EXIT.error;
    }
    io.err(`ERROR: ${oneLine(err instanceof Error ? err.message : String(err))}\n`);
    return EXIT.error;
  }
}
