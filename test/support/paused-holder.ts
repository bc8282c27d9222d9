import type { Etcd3 } from "etcd3";
import { expect } from "vitest";
import type { Holding } from "../../src/index.js";
import { Worker } from "./child.js";
import type { EtcdEnv } from "./api.js";

/**
 * A holder in a child process is paused (SIGSTOP) past its deadline while we wait for what it holds:
 * etcd expires its lease and we take over with a larger token. Resumed, it must see its hold end with
 * `code`, and its guarded write must be refused with `code` and never land.
 */
export async function pausedHolderIsReplaced(options: {
  etcd: EtcdEnv;
  client: Etcd3;
  name: string;
  role: "campaign" | "lock";
  code: "NOT_LEADER" | "LOCK_LOST";
  takeOver: () => Promise<Holding>;
}): Promise<void> {
  const { etcd, client, name, role, code } = options;
  const worker = Worker.start({ hosts: etcd.endpoints, ttl: 2, role, name, value: "child" });
  try {
    const held = await worker.next("holding");
    const waiting = options.takeOver();
    worker.pause();
    const ours = await waiting; // etcd expired the child's lease
    expect(ours.token).toBeGreaterThan(BigInt(held.token as string));
    worker.resume();
    expect((await worker.next("hold-ended", 5000)).code).toBe(code);
    worker.send({ cmd: "write", key: `${name}-data`, value: "from-the-stale-holder" });
    expect((await worker.next("write")).code).toBe(code);
    expect(await client.get(`${name}-data`).string()).toBeNull();
    await ours.release();
  } finally {
    await worker.kill();
  }
}
