/**
 * The terms of a name from etcd's retained history: the key events of its queue from the oldest revision
 * etcd still has (a watch from revision 1 is refused after a compaction, naming the compact revision:
 * start from there) up to the revision current when asked. A term is a queue key's time as a holder
 * (by the same policies the primitives wait by), from the revision it became one to the revision its key
 * went. Revisions carry no time.
 */
import type { Etcd3, IWatchResponse } from "etcd3";
import { EtcdError, EtcdUnavailableError } from "../errors.js";
import { isCompacted, toElectionError } from "../etcd/errors.js";
import { kindOf, leaseHex, nameState, queueNameOf, type NameKind, type QueueKey } from "./model.js";
import { leaseTtls, toQueueKey } from "./read.js";

/** How a term ended: its key deleted while its lease lived (by its holder, or `resign --force`); or unknown. */
export type Ending = "holding" | "deleted" | "unknown";

export interface TermRecord {
  /** Lane: the holder's lease, in hex (one session). */
  holder: string;
  lease: string;
  key: string;
  token: string;
  /** The value when it began, and its last one (an election's proclaim changes it). */
  value: string;
  /** Revision it became a holder; with `beganBefore`, it held already at that (the oldest retained) revision. */
  began: string;
  beganBefore?: true;
  /** Revision its key was deleted; undefined while it holds. */
  ended?: string;
  how: Ending;
}

export interface NameHistory {
  name: string;
  kind?: NameKind;
  /** The oldest revision read (etcd's compact revision, or 1), and the revision current when read. */
  fromRevision: string;
  toRevision: string;
  terms: TermRecord[];
}

export interface KeyEvent {
  type: "put" | "delete";
  revision: bigint;
  kv: QueueKey;
}

/**
 * Terms from the queue at `from` (keys present then) and the events after it, in revision order. Events of
 * one revision are applied together (a lease's end deletes all its keys at once).
 */
export function termsOf(name: string, initial: QueueKey[], from: bigint, events: KeyEvent[]): TermRecord[] {
  const queue = new Map<string, QueueKey>(initial.map((k) => [k.key, k]));
  const open = new Map<string, TermRecord>(); // by key
  const terms: TermRecord[] = [];
  const settle = (revision: bigint, first: boolean): void => {
    const holders = new Set(nameState(name, [...queue.values()]).holders.map((h) => h.key));
    for (const key of holders) {
      const k = queue.get(key)!;
      const term = open.get(key);
      if (term) {
        term.value = k.value.toString();
        continue;
      }
      const record: TermRecord = {
        holder: leaseHex(k.lease),
        lease: k.lease,
        key,
        token: k.createRevision.toString(),
        value: k.value.toString(),
        began: revision.toString(),
        ...(first && { beganBefore: true as const }),
        how: "holding",
      };
      open.set(key, record);
      terms.push(record);
    }
  };
  settle(from, true);
  for (let i = 0; i < events.length;) {
    const revision = events[i]!.revision;
    for (; i < events.length && events[i]!.revision === revision; i++) {
      const e = events[i]!;
      if (e.type === "put") {
        queue.set(e.kv.key, e.kv);
      } else {
        queue.delete(e.kv.key);
        const term = open.get(e.kv.key);
        if (term) {
          term.ended = revision.toString();
          term.how = "unknown";
          open.delete(e.kv.key);
        }
      }
    }
    settle(revision, false);
  }
  return terms;
}

/** Whether a term's key went while its lease lived: the lease is alive now, or put a key after the delete. */
export function judgeEndings(terms: TermRecord[], events: KeyEvent[], ttls: Map<string, number>): void {
  for (const t of terms) {
    if (t.ended === undefined) continue;
    const ended = BigInt(t.ended);
    const usedLater = events.some((e) => e.type === "put" && e.kv.lease === t.lease && e.revision > ended);
    // A key on no lease (lease 0) has no lease to end: it was deleted.
    t.how = t.lease === "0" || (ttls.get(t.lease) ?? -1) > 0 || usedLater ? "deleted" : "unknown";
  }
}

/** Compactions met while reading, at most, before giving up (each restarts from the new compact revision). */
export const COMPACTION_RETRIES = 3;

/**
 * Reads the name's history from etcd. Every call and the watch are bounded: the watch fails after one
 * command timeout (`timeoutMs`) without an answer from etcd, however long the history. A compaction
 * while reading restarts from the new compact revision (COMPACTION_RETRIES times at most).
 */
export async function readHistory(client: Etcd3, name: string, timeoutMs: number): Promise<NameHistory> {
  const what = `history of ${name}`;
  const key = Buffer.from(`${name}/`);
  const rangeEnd = Buffer.from(`${name}0`); // '0' follows '/'
  const current = async (): Promise<bigint> => {
    try {
      return BigInt((await client.get(`${name}/`).exec()).header.revision);
    } catch (err) {
      throw toElectionError(err, what);
    }
  };
  let toRevision = await current();
  let from = 1n;
  for (let compactions = 0; ;) {
    // The first compaction found sets where to begin; each one after it (while reading) restarts it.
    const compacted = (revision: bigint): void => {
      if (++compactions > COMPACTION_RETRIES + 1)
        throw new EtcdError(
          `${what}: etcd compacted its history ${compactions - 1} times while it was read; try again`,
        );
      from = revision;
    };
    // Compacted past the revision we meant to read to: read to the current one instead.
    if (from >= toRevision) toRevision = await current();
    const stream = await watchFrom(client, key, rangeEnd, from === 1n ? 1n : from + 1n, toRevision, timeoutMs, what);
    if (stream.compactRevision !== undefined) {
      compacted(stream.compactRevision);
      continue;
    }
    let initial: QueueKey[] = [];
    if (from > 1n) {
      try {
        const res = await client.kv.range({ key, range_end: rangeEnd, revision: from.toString() });
        initial = res.kvs.map(toQueueKey).filter((k) => queueNameOf(k.key) === name);
      } catch (err) {
        // Compacted again between the watch and this read: the next watch names the new compact revision.
        if (isCompacted(err)) {
          from = 1n; // counted once, when the next watch names the new compact revision
          continue;
        }
        throw toElectionError(err, what);
      }
    }
    const terms = termsOf(name, initial, from, stream.events);
    const ttls = await leaseTtls(
      client,
      terms.filter((t) => t.ended !== undefined).map((t) => t.lease),
    );
    judgeEndings(terms, stream.events, ttls);
    const seen = [...initial, ...stream.events.filter((e) => e.type === "put").map((e) => e.kv)];
    const kind = seen.length ? kindOf(seen.map((k) => k.value)).kind : undefined;
    return {
      name,
      ...(kind && { kind }),
      fromRevision: from.toString(),
      toRevision: toRevision.toString(),
      terms,
    };
  }
}

/**
 * The queue's events from `start` up to `until`; or the compact revision if etcd refused `start`. A
 * progress request tells when everything up to `until` arrived (etcd sends it after the events before it).
 * Bounded: it fails once etcd has sent nothing for `timeoutMs` (the timer restarts on every answer, so a
 * long history read in many answers is not cut short), from the moment the stream is asked for.
 */
async function watchFrom(
  client: Etcd3,
  key: Buffer,
  rangeEnd: Buffer,
  start: bigint,
  until: bigint,
  timeoutMs: number,
  what: string,
): Promise<{ events: KeyEvent[]; compactRevision?: bigint }> {
  const name = key.subarray(0, -1).toString();
  return new Promise((resolve, reject) => {
    const events: KeyEvent[] = [];
    let settled = false;
    let stream: Awaited<ReturnType<Etcd3["watchClient"]["watch"]>> | undefined;
    let progress: ReturnType<typeof setInterval> | undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const close = (): void => {
      if (!stream) return;
      stream.end();
      // Ending our side leaves the call open until etcd answers: cancel it, so nothing keeps the process up.
      (stream as unknown as { cancel?: () => void }).cancel?.();
    };
    const finish = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearInterval(progress);
      close();
      fn();
    };
    const idle = (): void => {
      clearTimeout(timer);
      timer = setTimeout(
        () =>
          finish(() =>
            reject(new EtcdUnavailableError(`${what}: etcd sent nothing for ${timeoutMs} ms (--command-timeout)`)),
          ),
        timeoutMs,
      );
    };
    idle();
    const onData = (res: IWatchResponse): void => {
      idle();
      if (res.canceled) {
        if (res.compact_revision !== "0" && BigInt(res.compact_revision) > 0n)
          return finish(() => resolve({ events, compactRevision: BigInt(res.compact_revision) }));
        return finish(() => reject(toElectionError(new Error(res.cancel_reason || "watch canceled"), what)));
      }
      for (const e of res.events ?? []) {
        const kv = e.kv;
        const revision = BigInt(kv.mod_revision);
        if (revision > until) continue;
        const k = toQueueKey(kv);
        if (queueNameOf(k.key) !== name) continue;
        // A delete carries only the key: its lease and create revision are the put's, before it.
        if (e.type === "Delete") {
          const prior = e.prev_kv ? toQueueKey(e.prev_kv) : events.findLast((p) => p.kv.key === k.key)?.kv;
          const lease = prior?.lease ?? leaseFromKey(k.key);
          events.push({ type: "delete", revision, kv: { ...k, lease, createRevision: prior?.createRevision ?? 0n } });
        } else {
          events.push({ type: "put", revision, kv: k });
        }
      }
      // Every event up to `until` is here once one at or past it came (etcd never splits a revision), or
      // etcd's progress notice, which it sends only after the events before it, is at or past it.
      const last = res.events?.at(-1);
      if (last && BigInt(last.kv.mod_revision) >= until) return finish(() => resolve({ events }));
      if (res.created) progress ??= setInterval(() => stream?.write({ progress_request: {} }), 100);
      else if (!res.events?.length && BigInt(res.header.revision) >= until) finish(() => resolve({ events }));
    };
    client.watchClient.watch().then(
      (s) => {
        stream = s;
        if (settled) return close(); // timed out while the stream was being opened
        s.on("error", (err) => finish(() => reject(toElectionError(err, what))));
        s.on("end", () => finish(() => reject(new EtcdUnavailableError(`${what}: the watch stream ended early`))));
        s.on("data", onData);
        s.write({ create_request: { key, range_end: rangeEnd, start_revision: start.toString(), prev_kv: true } });
      },
      (err: unknown) => finish(() => reject(toElectionError(err, what))),
    );
  });
}

/** The lease a queue key names (its last segment, hex), as a decimal string. */
const leaseFromKey = (key: string): string => {
  try {
    return BigInt(`0x${key.slice(key.lastIndexOf("/") + 1)}`).toString();
  } catch {
    return "0";
  }
};
