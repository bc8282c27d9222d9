/** Where each implementation keeps a name's candidates, and waiting for them to be there. */
import type { Etcd3 } from "etcd3";
import { waitFor } from "../test/support/wait.js";
import type { Impl } from "./child.js";

/** The prefix under which `impl` keeps the candidates of `name` (etcd3's Election adds "election/"). */
export function keyPrefix(impl: Impl, name: string): string {
  return impl === "ours" ? `${name}/` : `election/${name}/`;
}

/** Waits until at least `count` keys are under `prefix` (a candidate's join is in etcd); setup, not measured. */
export async function waitForKeys(
  client: Etcd3,
  prefix: string,
  count: number,
  options: { intervalMs: number; timeoutMs: number },
): Promise<void> {
  await waitFor(async () => (await client.getAll().prefix(prefix).keys()).length >= count, {
    ...options,
    description: `${count} candidates queued under ${prefix}`,
  });
}
