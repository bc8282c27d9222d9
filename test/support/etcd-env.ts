import { randomBytes } from "node:crypto";
import { Etcd3, type IOptions, type IStatusResponse } from "etcd3";
import type { EtcdEnv, EtcdMember } from "./api.js";
import type { Member } from "./etcd-member.js";
import { faultsUnavailableReason } from "./external-endpoints.js";
import {
  FAST_RECONNECT,
  PROBE_DEADLINE_MS,
  SERVE_TIMEOUT_MS,
  deadline,
  hexId,
  probeClient,
  servesLinearizableGet,
} from "./probe.js";
import { clientOptions, enableAuth, type Security } from "./security.js";
import { waitFor } from "./wait.js";

export class Env implements EtcdEnv {
  private readonly clients = new Set<Etcd3>();
  private admin: Etcd3;
  /** External endpoints only: one probe client per endpoint. */
  private readonly externalProbes: Etcd3[];
  private closed = false;

  constructor(
    readonly endpoints: string[],
    readonly members: Member[],
    private readonly onClose: () => Promise<void> = async () => undefined,
    readonly security: Security = {},
  ) {
    this.admin = new Etcd3({ ...clientOptions(security, false), hosts: endpoints, grpcOptions: FAST_RECONNECT });
    this.externalProbes = members.length === 0 ? endpoints.map((e) => probeClient([e])) : [];
  }

  /** Turns authentication on (root, and `app` on `app/`); from then on the harness's clients are root. */
  async enableAuth(): Promise<void> {
    await enableAuth(this.admin);
    this.admin.close();
    this.admin = new Etcd3({ ...clientOptions(this.security), hosts: this.endpoints, grpcOptions: FAST_RECONNECT });
    for (const m of this.members) m.reconnectAdmin(clientOptions(this.security));
  }

  client(options: Partial<IOptions> = {}, hosts?: string[]): Etcd3 {
    const client = new Etcd3({
      ...clientOptions(this.security),
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
        const answers = await Promise.allSettled(
          running.map((m) => m.admin.maintenance.status(deadline(PROBE_DEADLINE_MS))),
        );
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
    // Compacted at that revision already (nothing written since, or etcd3 sent the compaction again
    // when its answer was slow): that is what was asked.
    await this.admin.kv.compact({ revision: header.revision, physical: true }).catch((error: unknown) => {
      if (!/required revision has been compacted/.test(String(error))) throw error;
    });
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
