/** Starts members on loopback, each behind a client proxy and a peer proxy, and wraps them in an Env. */
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Env } from "./etcd-env.js";
import { memberFlags } from "./etcd-flags.js";
import { Member } from "./etcd-member.js";
import { freePorts } from "./ports.js";
import { rafthttpSender } from "./rafthttp-sender.js";
import { OWNER_PID } from "./runtime.js";
import { DockerRuntime } from "./runtime-docker.js";
import { ProcessRuntime } from "./runtime-process.js";
import { clientOptions, jwtArgs, tlsArgs, tlsMaterial, type Security } from "./security.js";
import { TcpProxy } from "./tcp-proxy.js";

const RUN_DIR = process.env.ETCD_ELECTION_RUN_DIR ?? join(tmpdir(), `etcd-election-test-${OWNER_PID}`);

export interface MemberPlan {
  name: string;
  clientPort: number;
  peerPort: number;
  clientProxy: TcpProxy;
  peerProxy: TcpProxy;
}

/** How to start the members: secured (TLS with client certificates; authentication), or with more flags. */
export interface LaunchOptions {
  /** Clients reach etcd over TLS and must present a certificate from the test CA (--client-cert-auth). */
  tls?: boolean;
  /** Authentication on: root, and `app` with read-write on `app/` only (see security.ts). */
  auth?: boolean;
  /** Auth tokens are JWTs (with `auth`): a token goes stale when the auth store changes. */
  jwt?: boolean;
  /** More etcd flags, e.g. --auth-token-ttl=2 or --max-request-bytes=65536. */
  extraArgs?: string[];
}

/** Where a member's TLS files are, as etcd sees them: mounted in a container, or on this host. */
const CERTS_IN_CONTAINER = "/certs";

/** A member's etcd flags (exported for test/unit/etcd-versions.test.ts: none that a supported release lacks). */
export function etcdArgs(
  plan: MemberPlan,
  dataDir: string,
  initialCluster: string,
  token: string,
  options: LaunchOptions,
  certDir: string,
): string[] {
  const url = (port: number): string => `http://127.0.0.1:${port}`;
  const clientUrl = (port: number): string => `${options.tls ? "https" : "http"}://127.0.0.1:${port}`;
  return [
    ...memberFlags({
      name: plan.name,
      dataDir,
      listenClientUrl: clientUrl(plan.clientPort),
      // Advertise the proxies, so whatever discovers members goes through the fault switches.
      advertiseClientUrl: clientUrl(plan.clientProxy.listenPort),
      listenPeerUrl: url(plan.peerPort),
      advertisePeerUrl: url(plan.peerProxy.listenPort),
      initialCluster,
      token,
    }),
    ...(options.tls ? tlsArgs(certDir) : []),
    ...(options.jwt ? jwtArgs(certDir) : []),
    ...(options.extraArgs ?? []),
  ];
}

export async function launch(size: number, options: LaunchOptions = {}): Promise<Env> {
  const token = randomBytes(4).toString("hex");
  const security: Security = {
    ...(options.tls ? { tls: tlsMaterial() } : {}),
    ...(options.auth ? { auth: true } : {}),
  };
  const scheme = options.tls ? "https://" : "";
  const keyDir = options.tls || options.jwt ? tlsMaterial().dir : undefined;
  const useDocker = process.env.ETCD_BACKEND !== "process";
  const plans: MemberPlan[] = [];
  try {
    for (let i = 0; i < size; i++) {
      const [clientPort = 0, peerPort = 0] = await freePorts(2);
      const clientProxy = await TcpProxy.start({ targetPort: clientPort });
      const peerProxy = await TcpProxy.start({ targetPort: peerPort, identify: rafthttpSender }).catch(
        async (error) => {
          await clientProxy.close();
          throw error;
        },
      );
      plans.push({ name: `m${i}`, clientPort, peerPort, clientProxy, peerProxy });
    }
  } catch (error) {
    await Promise.allSettled(plans.flatMap((p) => [p.clientProxy.close(), p.peerProxy.close()]));
    throw error;
  }

  const initialCluster = plans.map((p) => `${p.name}=http://127.0.0.1:${p.peerProxy.listenPort}`).join(",");
  const members: Member[] = plans.map((plan) => {
    const memberDir = join(RUN_DIR, token, plan.name);
    const runtime = useDocker
      ? new DockerRuntime(
          `etcd-election-${OWNER_PID}-${token}-${plan.name}`,
          etcdArgs(plan, `/var/lib/etcd/${plan.name}`, initialCluster, token, options, CERTS_IN_CONTAINER),
          keyDir ? [{ source: keyDir, target: CERTS_IN_CONTAINER }] : [],
        )
      : new ProcessRuntime(
          plan.name,
          etcdArgs(plan, join(memberDir, "data"), initialCluster, token, options, keyDir ?? ""),
          memberDir,
        );
    const directUrl = `127.0.0.1:${plan.clientPort}`;
    return new Member(
      plan.name,
      plan.clientProxy,
      plan.peerProxy,
      directUrl,
      runtime,
      () => members,
      scheme,
      clientOptions(security, false),
    );
  });
  const env = new Env(
    members.map((m) => m.clientUrl),
    members,
    async () => {
      if (!useDocker) rmSync(join(RUN_DIR, token), { recursive: true, force: true });
    },
    security,
  );
  try {
    // Concurrently: a member only reports ready once a quorum is up.
    const started = await Promise.allSettled(members.map((m) => m.runtime.start()));
    for (const result of started) if (result.status === "rejected") throw result.reason;
    await Promise.all(members.map((m) => m.memberId()));
    await env.waitHealthy();
    if (options.auth) await env.enableAuth();
    return env;
  } catch (error) {
    await env.close();
    throw error;
  }
}
