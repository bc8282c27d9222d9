/**
 * Which etcd release a run uses. ETCD_VERSION picks a series (3.5 by default, or 3.4); .ci/fetch-etcd
 * pins the exact release of each and caches its binaries, where the harness and the examples find them.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";

export const DEFAULT_SERIES = "3.5";

/**
 * Pinned official images, pulled only where the local image cannot be built: no Debian apt, or a series
 * Debian does not package (3.6, 3.7; README, "Supported etcd versions"). 3.6.6: past 3.6.5's fix of a
 * renew that succeeded on a revoked lease (etcd #20615).
 */
export const OFFICIAL_IMAGES: Record<string, string> = {
  "3.7": "gcr.io/etcd-development/etcd:v3.7.0",
  "3.6": "gcr.io/etcd-development/etcd:v3.6.6",
  "3.5": "gcr.io/etcd-development/etcd:v3.5.17",
  "3.4": "gcr.io/etcd-development/etcd:v3.4.23",
};

/** What ETCD_VERSION asks for: "3.5" (default), "3.4", "3.6", "3.7", or a release such as "3.4.23". */
export function requestedRelease(): string {
  return process.env.ETCD_VERSION?.trim() || DEFAULT_SERIES;
}

/** "3.4.23" -> "3.4". */
export function seriesOf(version: string): string {
  return version.split(".").slice(0, 2).join(".");
}

/** Cache roots .ci/fetch-etcd uses: as root, and as anyone else. */
function cacheRoots(): string[] {
  const xdg = process.env.XDG_CACHE_HOME || join(homedir(), ".cache");
  return ["/var/cache/etcd-election", join(xdg, "etcd-election")];
}

/** The cached binaries of a series, if .ci/fetch-etcd has put them there. */
export function cachedBinaries(series: string): { etcd: string; etcdctl: string } | undefined {
  for (const root of cacheRoots()) {
    const etcd = join(root, `etcd-${series}`, "etcd");
    if (existsSync(etcd)) return { etcd, etcdctl: join(dirname(etcd), "etcdctl") };
  }
  return undefined;
}

/** The version in `etcd --version` ("etcd Version: 3.5.16") or `etcdctl version` ("etcdctl version: 3.5.16"). */
export function parseVersion(output: string): string | undefined {
  return /^etcd(?:ctl)? version: (\S+)$/im.exec(output)?.[1];
}

/** Asks a local binary for its version. */
export function binaryVersion(path: string): string {
  const args = path.endsWith("etcdctl") ? ["version"] : ["--version"];
  const output = execFileSync(path, args, { encoding: "utf8", timeout: 15_000 });
  const version = parseVersion(output);
  if (!version) throw new Error(`${path} ${args.join(" ")} printed no version:\n${output}`);
  return version;
}
