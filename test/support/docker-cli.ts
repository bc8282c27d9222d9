/** The docker CLI, for what testcontainers does not do: engine checks, image builds and inspection, sweeps. */
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Runs `docker args`; resolves with its trimmed stdout, rejects with its stderr in the message. */
export async function docker(args: string[], timeoutMs: number): Promise<string> {
  try {
    const { stdout } = await run("docker", args, { timeout: timeoutMs, maxBuffer: 16 << 20 });
    return stdout.trim();
  } catch (error) {
    const stderr = String((error as { stderr?: string }).stderr ?? "").trim();
    throw new Error(`docker ${args.join(" ")} failed${stderr ? `: ${stderr}` : ""}`, { cause: error });
  }
}

/** As docker(), but undefined on failure: for probes whose failure is an answer. */
export async function tryDocker(args: string[], timeoutMs: number): Promise<string | undefined> {
  return docker(args, timeoutMs).catch(() => undefined);
}
