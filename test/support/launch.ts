/** Starts members on loopback, each behind a client proxy and a peer proxy, and wraps them in an Env. */
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Env } from "./etcd-env.js";
import { Member } from "./etcd-member.js";
import { freePorts } from "./ports.js";
import { rafthttpSender } from "./rafthttp-sender.js";
import { OWNER_PID } from "./runtime.js";
import { DockerRuntime } from "./runtime-docker.js";
import { ProcessRuntime } from "./runtime-process.js";
import { TcpProxy } from "./tcp-proxy.js";

const RUN_DIR = process.env.ETCD_ELECTION_RUN_DIR ?? join(tmpdir(), `etcd-election-test-${OWNER_PID}`);

interface MemberPlan {
  name: string;
  clientPort: number;
  peerPort: number;
  clientProxy: TcpProxy;
  peerProxy: TcpProxy;
}

function etcdArgs(plan: MemberPlan, dataDir: string, initialCluster: string, token: string): string[] {
  const url = (port: number): string => `http://127.0.0.1:${port}`;
  return [
    `--name=${plan.name}`,
    `--data-dir=${dataDir}`,
    `--listen-client-urls=${url(plan.clientPort)}`,
    // Advertise the proxies, so whatever discovers members goes through the fault switches.
    `--advertise-client-urls=${url(plan.clientProxy.listenPort)}`,
    `--listen-peer-urls=${url(plan.peerPort)}`,
    `--initial-advertise-peer-urls=${url(plan.peerProxy.listenPort)}`,
    `--initial-cluster=${initialCluster}`,
    "--initial-cluster-state=new",
    `--initial-cluster-token=etcd-election-${token}`,
    "--heartbeat-interval=100",
    "--election-timeout=1000",
    // 3.5's default; set for 3.4 too so a healed member does not disrupt the leader.
    "--pre-vote=true",
    "--logger=zap",
    "--log-outputs=stderr",
  ];
}

export async function launch(size: number): Promise<Env> {
  const token = randomBytes(4).toString("hex");
  const useDocker = process.env.ETCD_BACKEND !== "process";
  const plans: MemberPlan[] = [];
  try {
    for (let i = 0; i < size; i++) {
      const [clientPort = 0, peerPort = 0] = await freePorts(2);
      const clientProxy = await TcpProxy.start({ targetPort: clientPort });
      const peerProxy = await TcpProxy.start({ targetPort: peerPort, identify: rafthttpSender }).catch(async (error) => {
        await clientProxy.close();
        throw error;
      });
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
          etcdArgs(plan, `/var/lib/etcd/${plan.name}`, initialCluster, token),
        )
      : new ProcessRuntime(plan.name, etcdArgs(plan, join(memberDir, "data"), initialCluster, token), memberDir);
    const directUrl = `127.0.0.1:${plan.clientPort}`;
    return new Member(plan.name, plan.clientProxy, plan.peerProxy, directUrl, runtime, () => members);
  });
  const env = new Env(
    members.map((m) => m.clientUrl),
    members,
    async () => {
      if (!useDocker) rmSync(join(RUN_DIR, token), { recursive: true, force: true });
    },
  );
  try {
    // Concurrently: a member only reports ready once a quorum is up.
    const started = await Promise.allSettled(members.map((m) => m.runtime.start()));
    for (const result of started) if (result.status === "rejected") throw result.reason;
    await Promise.all(members.map((m) => m.memberId()));
    await env.waitHealthy();
    return env;
  } catch (error) {
    await env.close();
    throw error;
  }
}
