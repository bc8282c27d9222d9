/**
 * Properties over arbitrary input (fast-check), against real etcd: values round-trip byte for byte,
 * valid names never interfere (a name and its extensions included), and bad input always fails with an
 * ElectionError before any RPC.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Election, ElectionError, Mutex, Session } from "../../src/index.js";
import { collect } from "../support/observe.js";
import { countCalls } from "../support/internals.js";
import { useEtcd, waitFor } from "../support/index.js";

/** A valid name: 1 to 4 segments of printable characters, no "/", no padding whitespace. */
const segment = fc
  .string({ minLength: 1, maxLength: 12, unit: fc.constantFrom(..."abcxyz019-_.:~é中λ ".split("")) })
  .filter((s) => s.trim() === s && s.length > 0);
const validName = fc.array(segment, { minLength: 1, maxLength: 4 }).map((parts) => parts.join("/"));

/** Something that is not a valid name. */
const badName = fc.oneof(
  fc.constant(""),
  segment.map((s) => ` ${s}`),
  segment.map((s) => `${s}\t`),
  segment.map((s) => `/${s}`),
  segment.map((s) => `${s}/`),
  fc.tuple(segment, segment).map(([a, b]) => `${a}//${b}`),
  fc.tuple(segment, fc.integer({ min: 0, max: 31 })).map(([a, c]) => `${a}${String.fromCharCode(c)}x`),
  fc.constant("x".repeat(1025)),
  fc.oneof(fc.integer(), fc.constant(null), fc.constant(undefined), fc.object()) as fc.Arbitrary<unknown>,
);

describe("properties, against real etcd", () => {
  const fx = useEtcd();
  const runs = { numRuns: 25, interruptAfterTimeLimit: 40_000 };

  it("proclaim, leader() and observe() round-trip arbitrary bytes exactly", async () => {
    const session = await fx.newSession();
    const name = `${fx.etcd.prefix()}bytes`;
    const election = new Election(session, name);
    const term = await election.campaign(Buffer.alloc(0));
    const seen = collect(election.observe());
    try {
      await fc.assert(
        fc.asyncProperty(fc.uint8Array({ maxLength: 4096 }), async (bytes) => {
          await term.proclaim(bytes);
          expect((await election.leader())?.value.equals(Buffer.from(bytes))).toBe(true);
          expect(term.value.equals(Buffer.from(bytes))).toBe(true);
          await waitFor(() => seen.items.at(-1)?.value.equals(Buffer.from(bytes)), { timeoutMs: 5000 });
        }),
        runs,
      );
    } finally {
      await term.resign();
    }
  }, 60_000);

  it("valid names never interfere: a lock on one never blocks or shows under another, extensions included", async () => {
    const a = await fx.newSession();
    const b = await fx.newSession();
    await fc.assert(
      fc.asyncProperty(
        validName,
        fc.oneof(
          validName,
          fc.tuple(validName, validName).map(([x, y]) => `${x}/${y}`),
        ),
        async (first, rest) => {
          const base = `${fx.etcd.prefix()}n/${first}`;
          for (const other of [`${base}/${rest}`, `${fx.etcd.prefix()}n/${rest}`]) {
            if (other === base) continue;
            const held = await new Mutex(a, base).lock();
            try {
              const got = await new Mutex(b, other).tryLock();
              expect(got, `"${other}" blocked by "${base}"`).toBeDefined();
              expect((await new Election(b, other).leader())?.key).toBe(got?.key);
              await got?.unlock();
              expect((await new Election(a, base).leader())?.key).toBe(held.key);
            } finally {
              await held.unlock();
            }
          }
        },
      ),
      runs,
    );
  }, 60_000);

  it("arbitrary bad names, TTLs and timeouts always fail with an ElectionError, and send nothing", async () => {
    const session = await fx.newSession();
    const calls = countCalls(session);
    const badTtl = fc.oneof(
      fc.double({ noInteger: true }),
      fc.integer({ max: 0 }),
      fc.constant(9_000_000_001),
      fc.string(),
    );
    const badTimeout = fc.oneof(
      fc.double({ max: -Number.MIN_VALUE }),
      fc.constant(Number.NaN),
      fc.constant(Number.POSITIVE_INFINITY),
      fc.string(),
    );
    await fc.assert(
      fc.asyncProperty(badName, badTtl, badTimeout, async (name, ttl, timeoutMs) => {
        const failures = await Promise.all([
          Promise.resolve()
            .then(() => new Election(session, name as string))
            .catch((e: unknown) => e),
          Promise.resolve()
            .then(() => new Mutex(session, name as string))
            .catch((e: unknown) => e),
          Session.create(fx.client, { ttl: ttl as number }).catch((e: unknown) => e),
          new Mutex(session, "ok").lock({ timeoutMs: timeoutMs as number }).catch((e: unknown) => e),
        ]);
        for (const f of failures) {
          expect(f).toBeInstanceOf(ElectionError);
          expect((f as ElectionError).code).toBe("INVALID_ARGUMENT");
        }
      }),
      { numRuns: 200 },
    );
    expect(calls()).toEqual([]);
  });
});
