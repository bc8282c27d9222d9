/**
 * Which etcd image the Docker backend runs, and the container labels the
 * harness and its global setup agree on.
 */

/**
 * The etcd binary inside the image. The official image keeps it here and has
 * a shell entrypoint, so the harness replaces the entrypoint with this path;
 * the local images (.ci/build-etcd-image) keep etcd and etcdctl here too.
 */
export const ETCD_BINARY_IN_IMAGE = "/usr/local/bin/etcd";
export const ETCDCTL_IN_IMAGE = "/usr/local/bin/etcdctl";

/** Every harness container carries this label (value "true"). */
export const TEST_LABEL = "etcd-election.test";
/** Pid of the vitest main process that owns the container. */
export const PID_LABEL = "etcd-election.pid";
/** Hostname of that process: a pid only says something on the host (pid namespace) that made it. */
export const HOST_LABEL = "etcd-election.host";

/** The image tests use: global setup (select-etcd.ts) publishes its choice in ETCD_IMAGE. */
export function etcdImage(): string {
  const fromEnv = process.env.ETCD_IMAGE?.trim();
  if (!fromEnv)
    throw new Error(
      "ETCD_IMAGE is not set: run the integration tests through vitest, whose global setup picks the image",
    );
  return fromEnv;
}
