/**
 * Tells apart peer traffic by sender, so a peer proxy can partition one member
 * (TcpProxy's identify option; see Member.isolate()).
 */

// etcd's rafthttp stream and pipeline requests name their sender in this header.
const SERVER_FROM = /\r\nX-Server-From: *([0-9a-f]+)\r\n/i;
export function rafthttpSender(firstChunk: Buffer): string | undefined {
  return SERVER_FROM.exec(firstChunk.toString("latin1"))?.[1]?.toLowerCase();
}
