import type { Etcd3, IOptions } from "etcd3";
import type { EtcdMember } from "./api.js";
import { SERVE_TIMEOUT_MS, deadline, hexId, probeClient, servesLinearizableGet } from "./probe.js";
import type { Runtime } from "./runtime.js";
import type { TcpProxy } from "./tcp-proxy.js";
import { waitFor } from "./wait.js";

type MemberState = "running" | "paused" | "killed";

export class Member implements EtcdMember {
  state: MemberState = "running";
  /** Talks to etcd directly, for health and status. */
  admin: Etcd3;
  private id: string | undefined;

  constructor(
    readonly name: string,
    readonly clientProxy: TcpProxy,
    readonly peerProxy: TcpProxy,
    readonly directClientUrl: string,
    readonly runtime: Runtime,
    private readonly cluster: () => Member[],
    /** "https://" when the member serves clients over TLS, else "". */
    private readonly scheme = "",
    adminOptions: Partial<IOptions> = {},
  ) {
    this.admin = probeClient([this.url(directClientUrl)], adminOptions);
  }

  get clientUrl(): string {
    return this.url(this.clientProxy.url);
  }

  /** Over TLS by host name: grpc-js sends the host as the TLS server name, and Node warns (DEP0123) when that is an IP address. */
  private url(hostPort: string): string {
    return this.scheme ? `${this.scheme}${hostPort.replace(/^127\.0\.0\.1:/, "localhost:")}` : hostPort;
  }

  /** The admin client again, with other options (root's credentials once auth is on). */
  reconnectAdmin(options: Partial<IOptions>): void {
    this.admin.close();
    this.admin = probeClient([this.url(this.directClientUrl)], options);
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
