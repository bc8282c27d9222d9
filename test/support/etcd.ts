/**
 * The etcd test harness: single nodes and clusters on loopback, each member
 * behind a client proxy and a peer proxy so tests can inject faults.
 *
 * Backends (chosen by global-setup.ts through ETCD_BACKEND):
 * - docker (default): one container per member, host networking, image from etcdImage();
 * - process: /usr/bin/etcd (or ETCD_BINARY) as child processes.
 * With ETCD_ENDPOINTS set, tests run against that external cluster instead and
 * fault injection is unavailable.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { noop } from "cockatiel";
import { Etcd3, type IOptions, type IStatusResponse } from "etcd3";
import { GenericContainer, Wait, getContainerRuntimeClient } from "testcontainers";
import { ETCD_BINARY_IN_IMAGE, HOST_LABEL, PID_LABEL, TEST_LABEL, etcdImage } from "./etcd-image.js";
import { freePorts } from "./ports.js";
import { TcpProxy } from "./tcp-proxy.js";
import { waitFor } from "./wait.js";

// Normally set by global-setup.ts; defaults for running without it.
process.env.TESTCONTAINERS_RYUK_DISABLED ??= "true";
process.env.TESTCONTAINERS_HOST_OVERRIDE ??= "127.0.0.1";

const EXTERNAL_ENDPOINTS = (process.env.ETCD_ENDPOINTS ?? "")
  .split(",")
  .map((s) => s.trim())
  .filter((s) => s !== "");

export const faultsUnavailableReason: string | undefined =
  EXTERNAL_ENDPOINTS.length > 0
    ? `ETCD_ENDPOINTS is set (${EXTERNAL_ENDPOINTS.join(",")}): fault injection needs members the harness runs itself`
    : undefined;

export interface EtcdMember {
  readonly name: string;
  /** "127.0.0.1:port" through the client proxy; tests use this. */
  readonly clientUrl: string;
  /** "127.0.0.1:port" of etcd itself, bypassing the proxy. */
  readonly directClientUrl: string;
  /** client<->member partition: cut()/blackhole()/delay()/open(). */
  readonly clientProxy: TcpProxy;
  pause(): Promise<void>;
  unpause(): Promise<void>;
  /** SIGKILL. */
  kill(): Promise<void>;
  /** Start again (after kill, or kills first) with the same data dir and ports; resolves once it serves linearizable reads. */
  restart(): Promise<void>;
  /** Partition this member from its peers (both directions). Cluster only. */
  isolate(): Promise<void>;
  heal(): Promise<void>;
  /** Hex member id, as etcdctl prints it. */
  memberId(): Promise<string>;
}

export interface EtcdEnv {
  /** Every member's clientUrl (through the proxies). */
  readonly endpoints: string[];
  /** [] with ETCD_ENDPOINTS. */
  readonly members: EtcdMember[];
  /** A new client (default hosts = endpoints), closed by close(). */
  client(options?: Partial<IOptions>, hosts?: string[]): Etcd3;
  /** A unique key prefix, "t/<random>/<label>/". */
  prefix(label?: string): string;
  /** The current raft leader (waits up to 15 s for one). */
  leader(): Promise<EtcdMember>;
  /** Physically compacts at the current revision and returns that revision. */
  compact(): Promise<string>;
  /** Waits until every member that is neither killed nor paused answers a linearizable get. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** Closes clients and proxies, removes containers / processes and data. */
  close(): Promise<void>;
}

// Logged once etcd serves clients (it needs quorum for that). 3.5 logs both
// messages; 3.4 with --logger=zap only the second.
const READY_LOG = /ready to serve client requests|serving client traffic insecurely/;
const OWNER_PID = process.env.ETCD_ELECTION_TEST_PID ?? String(process.pid);
const RUN_DIR = process.env.ETCD_ELECTION_RUN_DIR ?? join(tmpdir(), `etcd-election-test-${OWNER_PID}`);
const ETCD_BINARY = process.env.ETCD_BINARY ?? "/usr/bin/etcd";
const START_TIMEOUT_MS = 60_000;
const SERVE_TIMEOUT_MS = 30_000;
const PROBE_DEADLINE_MS = 2_000;

// After a fault heals tests want the connection back quickly; grpc-js's
// default reconnect backoff grows to 2 minutes.
const FAST_RECONNECT = { "grpc.initial_reconnect_backoff_ms": 100, "grpc.max_reconnect_backoff_ms": 1_000 };

function deadline(ms: number): { deadline: Date } {
  return { deadline: new Date(Date.now() + ms) };
}

/** Harness-internal client: no retries or circuit breakers, so probes see each failure as it is. */
function probeClient(hosts: string[]): Etcd3 {
  return new Etcd3({ hosts, grpcOptions: FAST_RECONNECT, faultHandling: { host: () => noop, global: noop } });
}

async function servesLinearizableGet(client: Etcd3): Promise<boolean> {
  await client.get("harness/health").options(deadline(PROBE_DEADLINE_MS));
  return true;
}

const hexId = (decimal: string): string => BigInt(decimal).toString(16);

// etcd's rafthttp stream and pipeline requests name their sender in this header.
const SERVER_FROM = /\r\nX-Server-From: *([0-9a-f]+)\r\n/i;
function rafthttpSender(firstChunk: Buffer): string | undefined {
  return SERVER_FROM.exec(firstChunk.toString("latin1"))?.[1]?.toLowerCase();
}

// ---------------------------------------------------------------- runtimes

/** One member's etcd server, as a container or a local process. */
interface Runtime {
  /** First start; resolves once etcd logs that it serves (needs quorum). */
  start(): Promise<void>;
  pause(): Promise<void>;
  unpause(): Promise<void>;
  kill(): Promise<void>;
  /** Start again after kill(); same data and ports. The caller waits until it serves. */
  restart(): Promise<void>;
  remove(): Promise<void>;
}

class DockerRuntime implements Runtime {
  /** The container name doubles as its handle, so remove() works even if start() failed midway. */
  constructor(
    private readonly containerName: string,
    private readonly args: string[],
  ) {}

  async start(): Promise<void> {
    await new GenericContainer(etcdImage())
      .withName(this.containerName)
      .withNetworkMode("host")
      // The official image has a shell entrypoint; call the binary directly.
      .withEntrypoint([ETCD_BINARY_IN_IMAGE])
      .withCommand(this.args)
      .withLabels({ [TEST_LABEL]: "true", [PID_LABEL]: OWNER_PID, [HOST_LABEL]: hostname() })
      .withWaitStrategy(Wait.forLogMessage(READY_LOG))
      .withStartupTimeout(START_TIMEOUT_MS)
      .start();
  }

  private async container() {
    return (await getContainerRuntimeClient()).container.getById(this.containerName);
  }

  async pause(): Promise<void> {
    await (await this.container()).pause();
  }

  async unpause(): Promise<void> {
    await (await this.container()).unpause();
  }

  async kill(): Promise<void> {
    const container = await this.container();
    await container.kill({ signal: "SIGKILL" });
    await container.wait();
  }

  async restart(): Promise<void> {
    // The container keeps its filesystem (data dir) and, with host
    // networking, its ports.
    await (await this.container()).start();
  }

  async remove(): Promise<void> {
    try {
      await (await this.container()).remove({ force: true, v: true });
    } catch {
      // Never created, or already removed.
    }
  }
}

// Children die with this worker even if a test forgot close().
const liveChildren = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of liveChildren) child.kill("SIGKILL");
});

class ProcessRuntime implements Runtime {
  private child: ChildProcess | undefined;
  private readonly logTail: string[] = [];

  /** dir holds the data dir and etcd.pid (global teardown kills leftovers by that pid). */
  constructor(
    private readonly name: string,
    private readonly args: string[],
    private readonly dir: string,
  ) {}

  start(): Promise<void> {
    mkdirSync(this.dir, { recursive: true });
    const child = spawn(ETCD_BINARY, this.args, { stdio: ["ignore", "ignore", "pipe"] });
    this.child = child;
    liveChildren.add(child);
    if (child.pid !== undefined) writeFileSync(join(this.dir, "etcd.pid"), String(child.pid));
    return new Promise((resolve, reject) => {
      const fail = (why: string): void => {
        clearTimeout(timer);
        reject(new Error(`etcd ${this.name} ${why}; last log lines:\n${this.logTail.join("\n")}`));
      };
      const timer = setTimeout(() => fail(`not ready after ${START_TIMEOUT_MS} ms`), START_TIMEOUT_MS);
      let partial = "";
      // Keep reading stderr for the whole life of the process: a full pipe would block etcd.
      child.stderr?.setEncoding("utf8").on("data", (text: string) => {
        const lines = (partial + text).split("\n");
        partial = lines.pop() ?? "";
        for (const line of lines) {
          this.logTail.push(line);
          if (READY_LOG.test(line)) {
            clearTimeout(timer);
            resolve();
          }
        }
        this.logTail.splice(0, Math.max(0, this.logTail.length - 30));
      });
      child.once("error", (error) => fail(`failed to spawn: ${error.message}`));
      child.once("exit", (code, signal) => {
        liveChildren.delete(child);
        fail(`exited (${code ?? signal})`); // no-op once started
      });
    });
  }

  private signal(signal: NodeJS.Signals): void {
    if (!this.child?.kill(signal)) throw new Error(`etcd ${this.name}: could not send ${signal}`);
  }

  async pause(): Promise<void> {
    this.signal("SIGSTOP");
  }

  async unpause(): Promise<void> {
    this.signal("SIGCONT");
  }

  async kill(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, "exit");
    child.kill("SIGKILL");
    await exited;
  }

  restart(): Promise<void> {
    return this.start();
  }

  async remove(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

// ----------------------------------------------------------------- members

type MemberState = "running" | "paused" | "killed";

class Member implements EtcdMember {
  state: MemberState = "running";
  /** Talks to etcd directly, for health and status. */
  readonly admin: Etcd3;
  private id: string | undefined;

  constructor(
    readonly name: string,
    readonly clientProxy: TcpProxy,
    readonly peerProxy: TcpProxy,
    readonly directClientUrl: string,
    readonly runtime: Runtime,
    private readonly cluster: () => Member[],
  ) {
    this.admin = probeClient([directClientUrl]);
  }

  get clientUrl(): string {
    return this.clientProxy.url;
  }

  async pause(): Promise<void> {
    await this.runtime.pause();
    this.state = "paused";
  }

  async unpause(): Promise<void> {
    await this.runtime.unpause();
    this.state = "running";
  }

  async kill(): Promise<void> {
    if (this.state === "killed") return;
    await this.runtime.kill();
    this.state = "killed";
  }

  async restart(): Promise<void> {
    if (this.state === "paused") await this.unpause();
    await this.kill();
    await this.runtime.restart();
    this.state = "running";
    await waitFor(() => servesLinearizableGet(this.admin), {
      timeoutMs: SERVE_TIMEOUT_MS,
      description: `${this.name} serving again after restart`,
    });
  }

  private peers(operation: string): Member[] {
    const peers = this.cluster().filter((m) => m !== this);
    if (peers.length === 0) throw new Error(`${operation}: ${this.name} has no peers; use startCluster()`);
    return peers;
  }

  /**
   * Traffic to this member arrives at its own peer proxy: black-hole all of
   * it. Traffic from it arrives at the other members' peer proxies, told
   * apart by its X-Server-From header: black-hole that. Existing connections
   * are reset so the partition holds at once.
   */
  async isolate(): Promise<void> {
    const peers = this.peers("isolate()");
    const id = await this.memberId();
    this.peerProxy.blackhole();
    this.peerProxy.resetConnections();
    for (const peer of peers) peer.peerProxy.blockSource(id);
  }

  async heal(): Promise<void> {
    const peers = this.peers("heal()");
    const id = await this.memberId();
    for (const peer of peers) peer.peerProxy.unblockSource(id);
    this.peerProxy.open();
  }

  async memberId(): Promise<string> {
    this.id ??= hexId((await this.admin.maintenance.status(deadline(5_000))).header.member_id);
    return this.id;
  }
}

// --------------------------------------------------------------------- env

class Env implements EtcdEnv {
  private readonly clients = new Set<Etcd3>();
  private readonly admin: Etcd3;
  /** External endpoints only: one probe client per endpoint. */
  private readonly externalProbes: Etcd3[];
  private closed = false;

  constructor(
    readonly endpoints: string[],
    readonly members: Member[],
    private readonly onClose: () => Promise<void> = async () => undefined,
  ) {
    this.admin = new Etcd3({ hosts: endpoints, grpcOptions: FAST_RECONNECT });
    this.externalProbes = members.length === 0 ? endpoints.map((e) => probeClient([e])) : [];
  }

  client(options: Partial<IOptions> = {}, hosts?: string[]): Etcd3 {
    const client = new Etcd3({
      ...options,
      hosts: hosts ?? options.hosts ?? this.endpoints,
      grpcOptions: { ...FAST_RECONNECT, ...options.grpcOptions },
    });
    this.clients.add(client);
    return client;
  }

  prefix(label = "k"): string {
    return `t/${randomBytes(6).toString("hex")}/${label}/`;
  }

  async leader(): Promise<EtcdMember> {
    if (this.members.length === 0) throw new Error(`leader(): ${faultsUnavailableReason}`);
    return waitFor(
      async () => {
        const running = this.members.filter((m) => m.state === "running");
        const answers = await Promise.allSettled(running.map((m) => m.admin.maintenance.status(deadline(PROBE_DEADLINE_MS))));
        // A member cut off from the others may still name an old leader; trust the newest term.
        let best: IStatusResponse | undefined;
        for (const answer of answers) {
          if (answer.status !== "fulfilled" || answer.value.leader === "0") continue;
          if (!best || BigInt(answer.value.raftTerm) > BigInt(best.raftTerm)) best = answer.value;
        }
        if (!best) return undefined;
        const leaderId = hexId(best.leader);
        for (const member of this.members) if ((await member.memberId()) === leaderId) return member;
        return undefined;
      },
      { timeoutMs: 15_000, description: "a raft leader" },
    );
  }

  async compact(): Promise<string> {
    const { header } = await this.admin.get("harness/compact").exec();
    await this.admin.kv.compact({ revision: header.revision, physical: true });
    return header.revision;
  }

  async waitHealthy(timeoutMs = SERVE_TIMEOUT_MS): Promise<void> {
    const probes =
      this.members.length === 0
        ? this.externalProbes.map((client, i) => ({ name: this.endpoints[i] ?? "", client }))
        : this.members.filter((m) => m.state === "running").map((m) => ({ name: m.name, client: m.admin }));
    await Promise.all(
      probes.map(({ name, client }) =>
        waitFor(() => servesLinearizableGet(client), { timeoutMs, description: `${name} serving linearizable reads` }),
      ),
    );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const client of [...this.clients, this.admin, ...this.externalProbes, ...this.members.map((m) => m.admin)]) {
      client.close();
    }
    await Promise.allSettled(this.members.map((m) => m.runtime.remove()));
    await Promise.allSettled(this.members.flatMap((m) => [m.clientProxy.close(), m.peerProxy.close()]));
    await this.onClose();
  }
}

// ------------------------------------------------------------------ launch

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

async function launch(size: number): Promise<Env> {
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

/** A single node, or the external cluster when ETCD_ENDPOINTS is set. */
export async function startEtcd(): Promise<EtcdEnv> {
  if (EXTERNAL_ENDPOINTS.length > 0) {
    const env = new Env([...EXTERNAL_ENDPOINTS], []);
    await env.waitHealthy();
    return env;
  }
  return launch(1);
}

/** A cluster of `size` members (default 3); not available with ETCD_ENDPOINTS. */
export async function startCluster(size = 3): Promise<EtcdEnv> {
  if (faultsUnavailableReason) throw new Error(`startCluster(): ${faultsUnavailableReason}`);
  return launch(size);
}
