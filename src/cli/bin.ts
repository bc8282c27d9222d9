/** The bin: runs the CLI (src/cli/main.ts) on the process's arguments, signals and streams. */
import { EXIT, Interrupted } from "./connection.js";
import { main } from "./main.js";
import { oneLine } from "./render.js";

/** Run as the bin (not when imported by a test). */
export function run(): void {
  const controller = new AbortController();
  // The first signal ends the command (its exit code 130 or 143); a second one, the default: at once.
  process.once("SIGINT", () => controller.abort(new Interrupted(EXIT.sigint)));
  process.once("SIGTERM", () => controller.abort(new Interrupted(EXIT.sigterm)));
  // stdout closed by its reader (`watch | head`): end quietly, exit 0; another write error: one line, exit 1.
  let outClosed = false;
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (outClosed) return;
    outClosed = true;
    if (err.code !== "EPIPE") process.stderr.write(`ERROR: stdout: ${oneLine(err.message)}\n`);
    controller.abort(new Interrupted(err.code === "EPIPE" ? EXIT.ok : EXIT.error));
  });
  void main(process.argv.slice(2), {
    out: (t) => void (outClosed || process.stdout.write(t)),
    err: (t) => process.stderr.write(t),
    outTty: process.stdout.isTTY === true,
    inTty: process.stdin.isTTY === true,
    signal: controller.signal,
  }).then((code) => {
    process.exitCode = code;
    // The client is closed and the watch cancelled; should a library handle still hold the event loop
    // (a gRPC channel closing gracefully), the command is done anyway: never leave the process hanging.
    setTimeout(() => process.exit(code), 1000).unref();
  });
}

run();
