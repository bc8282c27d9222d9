/**
 * Which etcd image the Docker backend runs, and the container labels the
 * harness and its global setup agree on.
 */

/** Pinned official image; used when it is present locally or can be pulled. */
export const DEFAULT_ETCD_IMAGE = "gcr.io/etcd-development/etcd:v3.5.17";

/** Built by .ci/build-etcd-image from Debian's etcd when no registry is reachable. */
export const LOCAL_ETCD_IMAGE = "etcd-election/etcd:3.4.23-local";

/**
 * The etcd binary inside the image. The official image keeps it here and has
 * a shell entrypoint, so the harness replaces the entrypoint with this path;
 * the local image carries /usr/local/bin/etcd (a link to /usr/bin/etcd) so one
 * path serves both.
 */
export const ETCD_BINARY_IN_IMAGE = "/usr/local/bin/etcd";

/** Every harness container carries this label (value "true"). */
export const TEST_LABEL = "etcd-election.test";
/** Pid of the vitest main process that owns the container. */
export const PID_LABEL = "etcd-election.pid";
/** Hostname of that process: a pid only says something on the host (pid namespace) that made it. */
export const HOST_LABEL = "etcd-election.host";

/** The image tests use: ETCD_IMAGE (global setup publishes its choice there), else the pinned default. */
export function etcdImage(): string {
  const fromEnv = process.env.ETCD_IMAGE?.trim();
  return fromEnv ? fromEnv : DEFAULT_ETCD_IMAGE;
}
