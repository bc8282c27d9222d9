/** etcd's flags for one member of a throwaway cluster on loopback: the harness's members and the examples' alike. */
export interface MemberFlags {
  name: string;
  dataDir: string;
  /** Where etcd listens for clients, and the URL it gives them (the harness gives its client proxy's). */
  listenClientUrl: string;
  advertiseClientUrl: string;
  /** Where etcd listens for peers, and the URL it gives them (the harness gives its peer proxy's). */
  listenPeerUrl: string;
  advertisePeerUrl: string;
  /** "m0=http://127.0.0.1:port,m1=…": every member's advertised peer URL. */
  initialCluster: string;
  /** Unique per cluster, so members of another run never join this one. */
  token: string;
}

export function memberFlags(member: MemberFlags): string[] {
  return [
    `--name=${member.name}`,
    `--data-dir=${member.dataDir}`,
    `--listen-client-urls=${member.listenClientUrl}`,
    `--advertise-client-urls=${member.advertiseClientUrl}`,
    `--listen-peer-urls=${member.listenPeerUrl}`,
    `--initial-advertise-peer-urls=${member.advertisePeerUrl}`,
    `--initial-cluster=${member.initialCluster}`,
    "--initial-cluster-state=new",
    `--initial-cluster-token=etcd-election-${member.token}`,
    "--heartbeat-interval=100",
    "--election-timeout=1000",
    // 3.5's default; set for 3.4 too so a healed member does not disrupt the leader.
    "--pre-vote=true",
    // runtime.ts's READY_LOG is zap's line (3.4 logs with capnslog by default).
    "--logger=zap",
    "--log-outputs=stderr",
  ];
}
