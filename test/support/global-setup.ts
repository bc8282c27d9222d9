/**
 * Global setup of the "integration" vitest project (runs once, in the main
 * vitest process). It picks the etcd backend and image, publishes the choice
 * to the test workers through process.env (vitest forks its workers after
 * global setup, with the main process's environment), and removes leftovers
 * of this run and of interrupted earlier runs.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { tryDocker } from "./docker-cli.js";
import { HOST_LABEL, PID_LABEL, TEST_LABEL } from "./etcd-image.js";
import { cachedBinaries, seriesOf } from "./etcd-release.js";
import { externalVersion } from "./external-version.js";
import { isAlive } from "./process-alive.js";
import { selectBinary, selectImage, type EtcdSelection } from "./select-etcd.js";

const RUN_DIR_PREFIX = "etcd-election-test-";

function log(message: string): void {
  console.log(`[etcd harness] ${message}`);
}

/** Names the etcd the run tests against (CI checks this line), and publishes it and its etcdctl to the workers. */
function announce(selection: EtcdSelection): void {
  process.env.ETCD_SERVER_VERSION = selection.version;
  process.env.ETCDCTL_BINARY = selection.etcdctl;
  log(`etcd ${selection.version} (${selection.source}); etcdctl ${selection.etcdctlVersion} (${selection.etcdctl})`);
}

/** Synchronous so it can run from a signal handler before vitest exits. */
function removeContainersSync(ids: string[]): void {
  if (ids.length === 0) return;
  try {
    execFileSync("docker", ["rm", "--force", "--volumes", ...ids], { stdio: "ignore", timeout: 30_000 });
  } catch {
    // Already gone, or Docker went away: nothing more we can do.
  }
}

/** Harness containers made from this host (pids elsewhere mean nothing here). */
function listContainersSync(filterPid?: number): { id: string; pid: number }[] {
  const filters = ["--filter", `label=${TEST_LABEL}=true`, "--filter", `label=${HOST_LABEL}=${hostname()}`];
  if (filterPid !== undefined) filters.push("--filter", `label=${PID_LABEL}=${filterPid}`);
  try {
    const out = execFileSync("docker", ["ps", "--all", ...filters, "--format", `{{.ID}} {{.Label "${PID_LABEL}"}}`], {
      encoding: "utf8",
      timeout: 30_000,
      stdio: ["ignore", "pipe", "ignore"],
    });
    return out
      .split("\n")
      .filter((line) => line.trim() !== "")
      .map((line) => {
        const [id = "", pid = ""] = line.trim().split(" ");
        return { id, pid: Number(pid) };
      });
  } catch {
    return [];
  }
}

/**
 * Process backend: each member directory under a run dir holds etcd.pid.
 * Kill those etcd processes (checking the pid still runs etcd from that
 * directory, pids get reused) and delete the run dir.
 */
function removeRunDirSync(runDir: string): void {
  if (!existsSync(runDir)) return;
  for (const member of readdirSync(runDir)) {
    const memberDir = join(runDir, member);
    try {
      const pid = Number(readFileSync(join(memberDir, "etcd.pid"), "utf8"));
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      if (cmdline.includes(memberDir)) process.kill(pid, "SIGKILL");
    } catch {
      // No pid file or the process is gone.
    }
    try {
      // A PostgreSQL of test/support/postgres.ts: its postmaster (SIGKILL: its backends exit with it).
      const pid = Number(readFileSync(join(memberDir, "data", "postmaster.pid"), "utf8").split("\n")[0]);
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      if (cmdline.includes(join(memberDir, "data"))) process.kill(pid, "SIGKILL");
    } catch {
      // Not a PostgreSQL dir, or the server is gone.
    }
  }
  rmSync(runDir, { recursive: true, force: true });
}

function sweepStaleRunDirs(): void {
  for (const entry of readdirSync(tmpdir())) {
    const pid = Number(entry.slice(RUN_DIR_PREFIX.length));
    if (entry.startsWith(RUN_DIR_PREFIX) && pid > 0 && !isAlive(pid)) {
      log(`removing leftover process-backend data of dead run ${pid}`);
      removeRunDirSync(join(tmpdir(), entry));
    }
  }
}

function sweepStaleContainers(): void {
  const stale = listContainersSync().filter((c) => !(c.pid > 0 && isAlive(c.pid)));
  if (stale.length === 0) return;
  log(`removing ${stale.length} leftover container(s) of interrupted runs`);
  removeContainersSync(stale.map((c) => c.id));
}

/** Returns the teardown. */
export default async function setup(): Promise<() => Promise<void>> {
  // Names the runtime the tests, and the workers they spawn (process.execPath), run on: CI checks it.
  console.log(`[runtime] node ${process.versions.node} (${process.execPath})`);
  const pid = process.pid;
  const runDir = join(tmpdir(), `${RUN_DIR_PREFIX}${pid}`);
  process.env.TESTCONTAINERS_RYUK_DISABLED = "true"; // Ryuk's image cannot be pulled here
  // Inside a container testcontainers would report the bridge gateway as the
  // Docker host; our containers use host networking on loopback.
  process.env.TESTCONTAINERS_HOST_OVERRIDE ??= "127.0.0.1";
  process.env.ETCD_ELECTION_TEST_PID = String(pid);
  process.env.ETCD_ELECTION_RUN_DIR = runDir;

  if (process.env.ETCD_ENDPOINTS) {
    // CI runs everything: a skipped fault test there would hide a missing harness.
    if (process.env.CI) throw new Error("ETCD_ENDPOINTS is set in CI: fault tests would be skipped; CI must run them");
    log(
      `using the external cluster ETCD_ENDPOINTS=${process.env.ETCD_ENDPOINTS}; fault tests are skipped: they need members the harness runs itself`,
    );
    const version = await externalVersion(process.env.ETCD_ENDPOINTS);
    process.env.ETCD_SERVER_VERSION = version;
    // etcdctl for the interop tests: the cached one of the cluster's series, if there is one.
    const cached = cachedBinaries(seriesOf(version))?.etcdctl;
    if (cached && !process.env.ETCDCTL_BINARY) process.env.ETCDCTL_BINARY = cached;
    log(`etcd ${version} (the external cluster); etcdctl ${process.env.ETCDCTL_BINARY ?? "from PATH"}`);
    return async () => undefined;
  }

  sweepStaleRunDirs();
  let useDocker = process.env.ETCD_BACKEND !== "process";
  if (useDocker && (await tryDocker(["info", "--format", "{{.ServerVersion}}"], 15_000)) === undefined) {
    if (process.env.CI === "true" || process.env.ETCD_BACKEND === "docker") {
      throw new Error(
        "etcd harness: Docker engine not reachable (`docker info` failed); CI and ETCD_BACKEND=docker require it",
      );
    }
    log("Docker engine not reachable (`docker info` failed): running etcd as local processes instead");
    useDocker = false;
  }

  if (useDocker) {
    sweepStaleContainers();
    process.env.ETCD_BACKEND = "docker";
    const selection = await selectImage(runDir, log);
    process.env.ETCD_IMAGE = selection.image;
    announce(selection);
  } else {
    process.env.ETCD_BACKEND = "process";
    const selection = selectBinary(log);
    process.env.ETCD_BINARY = selection.binary;
    log("backend: local processes");
    announce(selection);
  }

  const sweepThisRun = (): void => {
    if (useDocker) removeContainersSync(listContainersSync(pid).map((c) => c.id));
    removeRunDirSync(runDir);
  };
  // Vitest exits 1 ms after SIGINT/SIGTERM without running teardowns, so sweep
  // synchronously from the signal itself. The timer only matters if nobody
  // else exits the process.
  const onSignal = (signal: NodeJS.Signals): void => {
    sweepThisRun();
    setTimeout(() => process.exit(signal === "SIGINT" ? 130 : 143), 500);
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);

  return async () => {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    sweepThisRun();
  };
}
