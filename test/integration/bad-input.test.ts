/**
 * The table of bad inputs in docs/errors.md, case by case: each is rejected before any RPC, with its documented
 * code and a clear message (design: Bad input fails first). RPCs are counted on the session's channels.
 */
import { Etcd3 } from "etcd3";
import { describe, expect, it } from "vitest";
import { Election, LeaderElector, Mutex, RWLock, Semaphore, Session } from "../../src/index.js";
import { DEFAULT_MAX_VALUE_BYTES, MAX_NAME_BYTES, MAX_TTL_SECONDS } from "../../src/common/validate.js";
import { countCalls } from "../support/internals.js";
import { useEtcd } from "../support/index.js";

/** A client pointed at a port nothing listens on: a check that sent anything would fail differently. */
const offline = new Etcd3({ hosts: "127.0.0.1:1" });

interface Case {
  input: string;
  code: string;
  message: RegExp;
  act: (session: Session) => unknown;
}

const names: [string, string, RegExp][] = [
  ["an empty name", "", /non-empty string/],
  ["a blank name", "   ", /whitespace/],
  ["a name padded with whitespace", " jobs ", /whitespace/],
  ["a leading /", "/jobs", /start or end with "\/"/],
  ["a trailing /", "jobs/", /start or end with "\/"/],
  ['"//" inside', "jobs//a", /"\/\/"/],
  [`a name over ${MAX_NAME_BYTES} bytes`, "é".repeat(MAX_NAME_BYTES / 2 + 1), /at most 1024 bytes/],
  ["a NUL byte in a name", "jobs\u0000a", /control characters/],
  ["a newline in a name", "jobs\na", /control characters/],
];

const cases: Case[] = [
  ...names.flatMap(([input, name, message]): Case[] => [
    { input: `Election: ${input}`, code: "INVALID_ARGUMENT", message, act: (s) => new Election(s, name) },
    { input: `Mutex: ${input}`, code: "INVALID_ARGUMENT", message, act: (s) => new Mutex(s, name) },
  ]),
  {
    input: "a name that is not a string",
    code: "INVALID_ARGUMENT",
    message: /non-empty string/,
    act: (s) => new RWLock(s, 42 as never),
  },
  {
    input: "a value over maxValueBytes",
    code: "INVALID_ARGUMENT",
    message: /at most \d+ bytes/,
    act: (s) => new Election(s, "v").campaign(Buffer.alloc(DEFAULT_MAX_VALUE_BYTES + 1)),
  },
  {
    input: "a value that is not bytes",
    code: "INVALID_ARGUMENT",
    message: /string, Buffer or Uint8Array/,
    act: (s) => new Election(s, "v").campaign(42 as never),
  },
  {
    input: "timeoutMs negative",
    code: "INVALID_ARGUMENT",
    message: /timeoutMs must be/,
    act: (s) => new Mutex(s, "t").lock({ timeoutMs: -1 }),
  },
  {
    input: "timeoutMs NaN",
    code: "INVALID_ARGUMENT",
    message: /got NaN/,
    act: (s) => new Mutex(s, "t").lock({ timeoutMs: Number.NaN }),
  },
  {
    input: "a signal that is not an AbortSignal",
    code: "INVALID_ARGUMENT",
    message: /AbortSignal/,
    act: (s) => new Mutex(s, "t").lock({ signal: {} as never }),
  },
  {
    input: "a semaphore limit of 0",
    code: "INVALID_ARGUMENT",
    message: /limit must be/,
    act: (s) => new Semaphore(s, "p", { limit: 0 }),
  },
  {
    input: "a semaphore limit of 2.5",
    code: "INVALID_ARGUMENT",
    message: /limit must be/,
    act: (s) => new Semaphore(s, "p", { limit: 2.5 }),
  },
  {
    input: "a value that is not a Session",
    code: "INVALID_ARGUMENT",
    message: /expected a Session/,
    act: () => new Election({} as never, "x"),
  },
  {
    input: "LeaderElector with both client and session",
    code: "INVALID_ARGUMENT",
    message: /either client or session/,
    act: (s) =>
      new LeaderElector({ client: offline, session: s, name: "e", identity: "a", onStartedLeading: () => {} }),
  },
  {
    input: "LeaderElector identity over the value limit",
    code: "INVALID_ARGUMENT",
    message: /identity must be at most/,
    act: (s) =>
      new LeaderElector({
        session: s,
        name: "e",
        identity: "x".repeat(DEFAULT_MAX_VALUE_BYTES + 1),
        onStartedLeading: () => {},
      }),
  },
];

const sessionCases: [string, string, RegExp, () => Promise<unknown>][] = [
  ...[0, -1, 1.5, Number.NaN, MAX_TTL_SECONDS + 1, "10"].map(
    (ttl): [string, string, RegExp, () => Promise<unknown>] => [
      `ttl ${String(ttl)}`,
      "INVALID_ARGUMENT",
      /ttl must be a whole number/,
      () => Session.create(offline, { ttl: ttl as number }),
    ],
  ),
  [
    "marginMs not below the TTL",
    "INVALID_ARGUMENT",
    /marginMs/,
    () => Session.create(offline, { ttl: 2, marginMs: 2000 }),
  ],
  [
    "callTimeoutMs negative",
    "INVALID_ARGUMENT",
    /callTimeoutMs/,
    () => Session.create(offline, { ttl: 2, callTimeoutMs: -5 }),
  ],
  [
    "maxValueBytes fractional",
    "INVALID_ARGUMENT",
    /maxValueBytes/,
    () => Session.create(offline, { ttl: 2, maxValueBytes: 1.5 }),
  ],
  [
    "a logger without the four levels",
    "INVALID_ARGUMENT",
    /logger must have/,
    () => Session.create(offline, { ttl: 2, logger: { info() {} } as never }),
  ],
  ["not an etcd3 client", "INVALID_CLIENT", /expected an etcd3/, () => Session.create({} as never)],
];

describe("bad input is rejected before any RPC, with its code and a clear message", () => {
  const fx = useEtcd();

  it.each(sessionCases)("Session.create: %s -> %s", async (_input, code, message, create) => {
    const started = Date.now();
    const err = await Promise.resolve()
      .then(create)
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code, message: expect.stringMatching(message) });
    expect(Date.now() - started).toBeLessThan(100); // nothing was sent to the offline client
  });

  it.each(cases.map((c) => [c.input, c.code, c] as const))("%s -> %s", async (_input, code, c) => {
    const session = await fx.newSession();
    const calls = countCalls(session);
    const err = await Promise.resolve()
      .then(() => c.act(session))
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code, message: expect.stringMatching(c.message) });
    expect(calls()).toEqual([]);
  });

  it("an already aborted signal rejects with its own reason, before any RPC", async () => {
    const session = await fx.newSession();
    const calls = countCalls(session);
    const reason = new Error("already stopped");
    await expect(new Election(session, "a").campaign("x", { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    await expect(new Mutex(session, "a2").lock({ signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    await expect(Session.create(offline, { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    expect(calls()).toEqual([]);
  });

  it("unlock and resign twice are idempotent: the second resolves and sends nothing", async () => {
    const session = await fx.newSession();
    const lock = await new Mutex(session, `${fx.etcd.prefix()}twice`).lock();
    await lock.unlock();
    const term = await new Election(session, `${fx.etcd.prefix()}twice-e`).campaign("x");
    await term.resign();
    const calls = countCalls(session);
    await lock.unlock();
    await term.resign();
    expect(calls()).toEqual([]);
  });

  it("a term or lock used after its session closed: NOT_LEADER / LOCK_LOST with SESSION_CLOSED as the cause; a campaign on it: SESSION_CLOSED", async () => {
    const session = await Session.create(fx.client, { ttl: 10 });
    const term = await new Election(session, `${fx.etcd.prefix()}closed-e`).campaign("x");
    const lock = await new Mutex(session, `${fx.etcd.prefix()}closed-m`).lock();
    await session.close();
    const calls = countCalls(session);
    const closedCause = expect.objectContaining({ code: "SESSION_CLOSED" });
    await expect(term.proclaim("y")).rejects.toMatchObject({ code: "NOT_LEADER", cause: closedCause });
    await expect(term.txn().then(fx.client.put("z").value("1")).commit()).rejects.toMatchObject({ code: "NOT_LEADER" });
    expect(() => lock.assertHeld()).toThrow(expect.objectContaining({ code: "LOCK_LOST", cause: closedCause }));
    await expect(new Election(session, "again").campaign("x")).rejects.toMatchObject({ code: "SESSION_CLOSED" });
    await expect(new Mutex(session, "again-m").lock()).rejects.toMatchObject({ code: "SESSION_CLOSED" });
    await lock.unlock(); // idempotent after close too: the lease took the key
    expect(calls()).toEqual([]);
  });
});
