import type { Etcd3 } from "etcd3";

/** Drains an async iterable in the background, keeping every item; `done` settles when it ends. */
export function collect<T>(iterable: AsyncIterable<T>): { items: T[]; done: Promise<void> } {
  const items: T[] = [];
  const done = (async () => {
    for await (const item of iterable) items.push(item);
  })();
  done.catch(() => {}); // observed by the test through `done`
  return { items, done };
}

/** The keys under `<name>/`, in create order: what a primitive left in etcd. */
export async function keysUnder(client: Etcd3, name: string): Promise<string[]> {
  const res = await client.getAll().prefix(`${name}/`).sort("Create", "Ascend").keys();
  return res;
}
