import { describe, expect, it } from "vitest";
import { judgeJoin } from "../../src/queue/join.js";
import type { QueueEntry } from "../../src/queue/policies.js";

const entry = (n: number): QueueEntry => ({ key: `q/${n.toString(16)}`, createRevision: BigInt(n) });
const ours = Buffer.from("ours");

describe("what the join transaction means", () => {
  it("a put that happened queues us at the transaction's revision; the lookahead that reached us is complete", () => {
    expect(
      judgeJoin({ succeeded: true, revision: 10n, entries: [entry(10)], rangeCount: 1, lookahead: 1 }, ours),
    ).toEqual({
      kind: "queued",
      createRevision: 10n,
      ahead: [],
      complete: true,
    });
  });

  it("a lookahead full of keys ahead of us is not complete: it may not have seen all of them", () => {
    const outcome = judgeJoin(
      { succeeded: true, revision: 10n, entries: [entry(4)], rangeCount: 1, lookahead: 1 },
      ours,
    );
    expect(outcome).toEqual({ kind: "queued", createRevision: 10n, ahead: [entry(4)], complete: false });
    // ...but a range that came back shorter than its limit saw the whole queue.
    expect(
      judgeJoin({ succeeded: true, revision: 10n, entries: [entry(4)], rangeCount: 1, lookahead: 3 }, ours),
    ).toMatchObject({ complete: true });
  });

  it("a deeper name's key that took a place in the lookahead makes it incomplete (design: Names are exact)", () => {
    expect(judgeJoin({ succeeded: true, revision: 10n, entries: [], rangeCount: 1, lookahead: 1 }, ours)).toMatchObject(
      { complete: false },
    );
  });

  it("our key found with our value is an earlier copy of this very call: ours, at its create revision", () => {
    const outcome = judgeJoin(
      {
        succeeded: false,
        revision: 12n,
        own: { createRevision: 10n, value: ours },
        entries: [entry(4), entry(10)],
        rangeCount: 2,
        lookahead: 0,
      },
      ours,
    );
    expect(outcome).toEqual({ kind: "queued", createRevision: 10n, ahead: [entry(4)], complete: true });
  });

  it("our key found with another value is a leftover to delete, never taken over", () => {
    const outcome = judgeJoin(
      {
        succeeded: false,
        revision: 12n,
        own: { createRevision: 10n, value: Buffer.from("read") },
        entries: [],
        rangeCount: 0,
        lookahead: 0,
      },
      ours,
    );
    expect(outcome).toEqual({ kind: "leftover", createRevision: 10n });
  });

  it("our key found with our value but left behind by an ended hold is a leftover: its token is never handed out again", () => {
    const answer = {
      succeeded: false,
      revision: 12n,
      own: { createRevision: 10n, value: ours },
      entries: [entry(10)],
      rangeCount: 1,
      lookahead: 0,
    };
    expect(judgeJoin(answer, ours, 10n)).toEqual({ kind: "leftover", createRevision: 10n });
    // A key left behind at another revision says nothing of this one.
    expect(judgeJoin(answer, ours, 7n)).toMatchObject({ kind: "queued", createRevision: 10n });
  });

  it("a failed put-if-absent without the key it found is an error with a code", () => {
    expect(() =>
      judgeJoin({ succeeded: false, revision: 12n, entries: [], rangeCount: 0, lookahead: 0 }, ours),
    ).toThrow(expect.objectContaining({ code: "ETCD_ERROR" }));
  });
});
