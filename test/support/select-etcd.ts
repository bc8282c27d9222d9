/**
 * Picks the etcd a run uses (an image, or a local binary), asks it for its version, and finds the
 * etcdctl of the same release for the interop tests: `etcdctl elect` and `lock` are Go's concurrency
 * package of that release. Used by global-setup.ts.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { docker, tryDocker } from "./docker-cli.js";
import { ETCDCTL_IN_IMAGE, ETCD_BINARY_IN_IMAGE } from "./etcd-image.js";
import { OFFICIAL_IMAGES, binaryVersion, parseVersion, requestedRelease, seriesOf } from "./etcd-release.js";

const BUILD_SCRIPT = fileURLToPath(new URL("../../.ci/build-etcd-image", import.meta.url));
const FETCH_SCRIPT = fileURLToPath(new URL("../../.ci/fetch-etcd", import.meta.url));
const FALLBACK_BINARY = "/usr/bin/etcd";

export interface EtcdSelection {
  /** What etcd itself reports, e.g. 3.5.16. */
  version: string;
  /** Where it comes from, for the log: "image ..." or "binary ...". */
  source: string;
  /** Path of the matching etcdctl on this host, and its version. */
  etcdctl: string;
  etcdctlVersion: string;
}

type Log = (message: string) => void;

/** Runs a .ci script; resolves with the last line it printed (its result), its log going to ours. */
function ciScript(script: string, args: string[]): string {
  const out = execFileSync("bash", [script, ...args], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
    timeout: 600_000,
  });
  return out.trim().split("\n").at(-1) ?? "";
}

/** The local image of the requested release, built (and its binaries fetched) if missing; else, outside CI, the official one. */
async function localOrOfficialImage(release: string, log: Log): Promise<string> {
  try {
    const image = ciScript(BUILD_SCRIPT, [release]);
    log(`image ${image} (local, from Debian's etcd: .ci/build-etcd-image ${release})`);
    return image;
  } catch (error) {
    const official = OFFICIAL_IMAGES[seriesOf(release)];
    // CI tests what it says it tests: no silent switch to another build of etcd.
    if (process.env.CI || !official)
      throw new Error(`etcd harness: cannot build the local etcd ${release} image`, { cause: error });
    log(`cannot build the local etcd ${release} image; trying the official ${official} (pull: at most 20 s)`);
    if ((await tryDocker(["image", "inspect", official], 15_000)) === undefined) {
      await docker(["pull", official], 20_000).catch((pullError: unknown) => {
        throw new Error(
          `etcd harness: cannot build the local etcd ${release} image (${(error as Error).message}), nor pull ${official}`,
          {
            cause: pullError,
          },
        );
      });
    }
    return official;
  }
}

/** Copies etcdctl out of the image, so the interop tests run the one that ships with that etcd. */
async function etcdctlFromImage(image: string, scratchDir: string): Promise<string> {
  const dir = join(scratchDir, "etcdctl");
  mkdirSync(dir, { recursive: true });
  const container = await docker(["create", "--network", "none", image], 30_000);
  try {
    // -L: the image may hold a link (older local builds linked /usr/local/bin to /usr/bin).
    await docker(["cp", "-L", `${container}:${ETCDCTL_IN_IMAGE}`, join(dir, "etcdctl")], 30_000);
  } finally {
    await tryDocker(["rm", "--force", container], 30_000);
  }
  return join(dir, "etcdctl");
}

/** etcdctl of the same series as etcd; and, unless the user named the image or binary, the release asked for. */
function checkRelease(selection: EtcdSelection, requested: string | undefined): EtcdSelection {
  if (seriesOf(selection.etcdctlVersion) !== seriesOf(selection.version)) {
    throw new Error(
      `etcd harness: etcdctl ${selection.etcdctlVersion} (${selection.etcdctl}) does not match etcd ${selection.version}`,
    );
  }
  if (requested && !`${selection.version}.`.startsWith(`${requested}.`)) {
    throw new Error(`etcd harness: etcd ${requested} asked for, but ${selection.source} is etcd ${selection.version}`);
  }
  return selection;
}

/** Docker backend: ETCD_IMAGE if set, else the local image of ETCD_VERSION (default 3.5). */
export async function selectImage(scratchDir: string, log: Log): Promise<EtcdSelection & { image: string }> {
  const fromUser = process.env.ETCD_IMAGE?.trim();
  let image: string;
  if (fromUser) {
    image = fromUser;
    log(
      `image ${image} (from ETCD_IMAGE${process.env.ETCD_VERSION ? `, which overrides ETCD_VERSION=${process.env.ETCD_VERSION}` : ""})`,
    );
  } else {
    image = await localOrOfficialImage(requestedRelease(), log);
  }
  const reported = await docker(
    ["run", "--rm", "--network", "none", "--entrypoint", ETCD_BINARY_IN_IMAGE, image, "--version"],
    60_000,
  );
  const version = parseVersion(reported);
  if (!version)
    throw new Error(`etcd harness: ${image} ${ETCD_BINARY_IN_IMAGE} --version printed no version:\n${reported}`);
  const etcdctl = await etcdctlFromImage(image, scratchDir);
  const selection = { version, source: `image ${image}`, etcdctl, etcdctlVersion: binaryVersion(etcdctl) };
  return { image, ...checkRelease(selection, fromUser ? undefined : requestedRelease()) };
}

/** Process backend: ETCD_BINARY if set, else the cached binary of ETCD_VERSION, else /usr/bin/etcd (outside CI). */
export function selectBinary(log: Log): EtcdSelection & { binary: string } {
  let binary = process.env.ETCD_BINARY?.trim();
  let requested: string | undefined;
  if (!binary) {
    const release = requestedRelease();
    requested = release;
    try {
      binary = join(ciScript(FETCH_SCRIPT, [release]), "etcd");
    } catch (error) {
      if (process.env.CI) throw new Error(`etcd harness: cannot fetch etcd ${release}`, { cause: error });
      log(`cannot fetch etcd ${release} (.ci/fetch-etcd); falling back to ${FALLBACK_BINARY}`);
      binary = FALLBACK_BINARY;
      requested = undefined;
    }
  }
  if (!existsSync(binary))
    throw new Error(`etcd harness: ${binary} missing; run .ci/setup (or install Debian's etcd-server)`);
  const sibling = join(dirname(binary), "etcdctl");
  const etcdctl = process.env.ETCDCTL_BINARY?.trim() || (existsSync(sibling) ? sibling : "etcdctl");
  const selection = {
    version: binaryVersion(binary),
    source: `binary ${binary}`,
    etcdctl,
    etcdctlVersion: binaryVersion(etcdctl),
  };
  return { binary, ...checkRelease(selection, requested) };
}
