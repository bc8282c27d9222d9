import { describe, expect, it } from "vitest";
import { judgeRead } from "../../src/queue/decide.js";
import {
  READ,
  WRITE,
  predecessorPolicy,
  readerPolicy,
  semaphorePolicy,
  type QueueEntry,
  type QueuePolicy,
} from "../../src/queue/policies.js";
import { prng } from "../support/prng.js";

const entry = (n: number, value?: Buffer): QueueEntry => ({
  key: `q/${n.toString(16)}`,
  createRevision: BigInt(n),
  ...(value ? { value } : {}),
});
const own = { key: "q/a", createRevision: 10n };
const ownEntry = (value?: Buffer): QueueEntry => ({ ...own, ...(value ? { value } : {}) });

describe("what a read after a wait means", () => {
  it("a serializable read with our key and nothing ahead: our turn", () => {
    const verdict = judgeRead(own, [ownEntry()], "serializable");
    expect(verdict).toEqual({ kind: "ours", ahead: [] });
    expect(predecessorPolicy.blocking(verdict.kind === "ours" ? verdict.ahead : [entry(1)])).toBeUndefined();
  });

  it("a serializable read with a key still ahead: wait again, on that key", () => {
    const verdict = judgeRead(own, [entry(7), ownEntry(), entry(3)], "serializable");
    expect(verdict).toEqual({ kind: "ours", ahead: [entry(7), entry(3)] });
    expect(predecessorPolicy.blocking([entry(3), entry(7)])).toEqual({ keys: [entry(7)], needed: 1 });
  });

  it("a serializable read without our key decides nothing: the linearizable read does", () => {
    // The watch's member may not have applied our join yet, or our key went after the event: a snapshot
    // of the past cannot tell which.
    expect(judgeRead(own, [], "serializable")).toEqual({ kind: "undecided" });
    expect(judgeRead(own, [entry(3)], "serializable")).toEqual({ kind: "undecided" });
    expect(judgeRead(own, [], "linearizable")).toEqual({ kind: "vanished" });
  });

  it("our key made again (another create revision) is not ours, in either kind of read", () => {
    const remade = { key: own.key, createRevision: 12n };
    expect(judgeRead(own, [remade], "serializable")).toEqual({ kind: "undecided" });
    expect(judgeRead(own, [remade], "linearizable")).toEqual({ kind: "vanished" });
  });

  it("free at the read's revision stays free for every later state in which our key lives (every policy)", () => {
    // Later states of the queue: keys ahead of us only go (create revisions are never reused), and keys
    // created after the read's revision queue behind us. A policy that found us free at the read's
    // revision must find us free in each of them, or deciding there would be unsafe.
    const policies: [string, QueuePolicy, (random: () => number) => Buffer | undefined][] = [
      ["mutex", predecessorPolicy, () => undefined],
      ["reader", readerPolicy, (random) => (random() < 0.6 ? READ : WRITE)],
      ["writer", predecessorPolicy, (random) => (random() < 0.6 ? READ : WRITE)],
      ...[1, 2, 3].map((limit): [string, QueuePolicy, (random: () => number) => Buffer | undefined] => [
        `semaphore ${limit}`,
        semaphorePolicy(limit, () => {}),
        () => undefined,
      ]),
    ];
    const random = prng(17);
    let freeAtEvent = 0;
    for (const [name, policy, valueOf] of policies) {
      for (let round = 0; round < 300; round++) {
        const ahead = Array.from({ length: Math.floor(random() * 5) }, (_, i) => entry(i + 1, valueOf(random)));
        const snapshot = [...ahead, ownEntry(valueOf(random))];
        const verdict = judgeRead(own, snapshot, "serializable");
        expect(verdict.kind).toBe("ours");
        if (verdict.kind !== "ours" || policy.blocking(verdict.ahead) !== undefined) continue;
        freeAtEvent++;
        // A later state: some keys ahead gone, some new keys behind us.
        const later = [
          ...ahead.filter(() => random() < 0.5),
          ownEntry(),
          ...Array.from({ length: Math.floor(random() * 3) }, (_, i) => entry(11 + i, valueOf(random))),
        ];
        // A linearizable read of that state reads up to our create revision.
        const now = judgeRead(
          own,
          later.filter((e) => e.createRevision <= own.createRevision),
          "linearizable",
        );
        expect(now.kind, name).toBe("ours");
        expect(now.kind === "ours" && policy.blocking(now.ahead), `${name}: free at the event, blocked later`).toBe(
          undefined,
        );
      }
    }
    expect(freeAtEvent).toBeGreaterThan(100); // the property was exercised, not skipped
  });
});
