/**
 * The operator's CLI (src/cli/main.ts) as a child process against real etcd: status (table, JSON),
 * watch, history (table, JSON, SVG, after a compaction), resign, and the connection as etcdctl's (TLS
 * with client certificates, authentication, ETCDCTL_* variables), errors as one typed line.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import type { Etcd3, IRangeRequest, ITxnRequest } from "etcd3";
import { describe, expect, it } from "vitest";
import { resign as resignCommand } from "../../src/cli/commands.js";
import { readNames } from "../../src/cli/read.js";
import { Election, Mutex, RWLock, Semaphore, Session } from "../../src/index.js";
import {
  APP,
  APP_PREFIX,
  aborted,
  faultsUnavailableReason,
  startEtcd,
  TcpProxy,
  useEtcd,
  waitFor,
} from "../support/index.js";
import { watchersInEtcd } from "../support/metrics.js";

const MAIN = join(import.meta.dirname, "../../src/cli/bin.ts");

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Still running after BOUND_MS: killed, so the test fails on it instead of hanging. */
  hung: boolean;
}

/** No command may run longer than this (each call is bounded by its --command-timeout, 5 s by default). */
const BOUND_MS = 30_000;

/** The CLI's environment: none of the caller's ETCDCTL_* settings, plus `env`. */
const cliEnv = (env: Record<string, string>): NodeJS.ProcessEnv => ({
  ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("ETCDCTL_"))),
  ...env,
});

function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return started(args, env).closed;
}

/** The CLI running: its output so far, and its end. */
function started(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, ["--import", "tsx", MAIN, ...args], {
    env: cliEnv(env),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  let hung = false;
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const bound = setTimeout(() => {
    hung = true;
    child.kill("SIGKILL");
  }, BOUND_MS);
  const closed = new Promise<Run>((resolve) =>
    child.on("close", (code) => {
      clearTimeout(bound);
      resolve({ code, stdout, stderr, hung });
    }),
  );
  return { child, closed, stdout: () => stdout, stderr: () => stderr };
}

interface StatusJson {
  revision: string;
  names: { name: string; holders: { key: string; token: string; lease: string }[]; waiters: { token: string }[] }[];
}

/**
 * What changes from run to run, from a status --json read: the prefix, each session's lease (decimal and
 * hex) by its letter, tokens and revisions numbered in the order given, revisions and TTLs.
 */
function replacements(prefix: string, leases: Record<string, string>, tokens: string[]): [RegExp | string, string][] {
  return [
    [prefix, "<p>/"],
    ...Object.entries(leases).flatMap(([id, who]): [RegExp, string][] => [
      [new RegExp(`\\b${id}\\b`, "g"), `<id ${who}>`],
      [new RegExp(`\\b${BigInt(id).toString(16)}\\b`, "g"), `<lease ${who}>`],
    ]),
    ...[...new Set(tokens)].map((t, i): [RegExp, string] => [
      new RegExp(`(?<=^|[ "])${t}(?=$|[ "])`, "gm"),
      `<t${i + 1}>`,
    ]),
    [/"(revision|fromRevision|toRevision)": "\d+"/g, '"$1": "<rev>"'],
    [/"ttl": \d+/g, '"ttl": <ttl>'],
    [/(?<= )\d+s$/gm, "<ttl>"],
  ];
}

function normalise(text: string, rules: [RegExp | string, string][]): string {
  let out = text;
  for (const [from, to] of rules) out = typeof from === "string" ? out.split(from).join(to) : out.replace(from, to);
  return out;
}

/** A table's cells cut at its header's column starts (so a misaligned cell shows), joined with " | ". */
function cells(table: string): string {
  const [header, ...rows] = table.trimEnd().split("\n");
  const starts = [...header!.matchAll(/\S+/g)].map((m) => m.index);
  return [header!, ...rows]
    .map((row) =>
      starts
        .map((s, i) => row.slice(s, starts[i + 1] ?? undefined).trim())
        .join(" | ")
        .trimEnd(),
    )
    .join("\n");
}

describe.skipIf(!!faultsUnavailableReason)("the operator's CLI", () => {
  const fx = useEtcd();
  const at = (): string[] => ["--endpoints", fx.etcd.endpoints.join(",")];
  const sessions = async (n: number): Promise<Session[]> =>
    Promise.all(Array.from({ length: n }, () => fx.newSession({ ttl: 30 })));

  it("status: every kind of name under a prefix, holders and waiters in order, as a table and as JSON", async () => {
    const prefix = fx.etcd.prefix("status");
    const [a, b, c] = await sessions(3);
    const leading = await new Election(a!, `${prefix}jobs/scheduler`).campaign("node-a:8080");
    const campaigning = new Election(b!, `${prefix}jobs/scheduler`).campaign("node-b:8080");
    const lock = await new Mutex(a!, `${prefix}locks/report`).lock();
    const locking = new Mutex(c!, `${prefix}locks/report`).lock();
    const permits = [
      await new Semaphore(a!, `${prefix}pool/gpu`, { limit: 2 }).acquire(),
      await new Semaphore(b!, `${prefix}pool/gpu`, { limit: 2 }).acquire(),
    ];
    const permitting = new Semaphore(c!, `${prefix}pool/gpu`, { limit: 2 }).acquire();
    const reads = [
      await new RWLock(a!, `${prefix}docs/42`).readLock(),
      await new RWLock(b!, `${prefix}docs/42`).readLock(),
    ];
    const writing = new RWLock(c!, `${prefix}docs/42`).writeLock();
    await fx.client.put(`${prefix}config`).value("not a queue key");
    await fx.client.put(`${prefix}jobs/scheduler/not-hex`).value("neither");
    await waitFor(async () => (await fx.client.getAll().prefix(prefix).keys()).length === 12);

    const json = await cli(["status", prefix, "--json", ...at()]);
    expect(json).toMatchObject({ code: 0, stderr: "" });
    const read = JSON.parse(json.stdout) as StatusJson;
    // The same holder as the library reads.
    const leader = await new Election(a!, `${prefix}jobs/scheduler`).leader();
    expect(read.names.find((n) => n.name === `${prefix}jobs/scheduler`)?.holders).toEqual([
      expect.objectContaining({ key: leader!.key, token: leader!.token.toString() }),
    ]);
    const rules = replacements(
      prefix,
      { [a!.leaseId]: "A", [b!.leaseId]: "B", [c!.leaseId]: "C" },
      read.names.flatMap((n) => [...n.holders, ...n.waiters].map((p) => p.token)),
    );
    expect(normalise(json.stdout, rules)).toMatchSnapshot();

    const table = await cli(["status", prefix, ...at()]);
    expect(table).toMatchObject({ code: 0, stderr: "" });
    expect(normalise(cells(table.stdout), rules)).toMatchInlineSnapshot(`
      "NAME | KIND | ROLE | VALUE | TOKEN | LEASE | TTL
      <p>/docs/42 | read-write lock | holder | read | <t1> | <lease A> | <ttl>
       |  | holder | read | <t2> | <lease B> | <ttl>
       |  | waiter 1 | write | <t3> | <lease C> | <ttl>
      <p>/jobs/scheduler | election | holder | node-a:8080 | <t4> | <lease A> | <ttl>
       |  | waiter 1 | node-b:8080 | <t5> | <lease B> | <ttl>
      <p>/locks/report | mutex | holder |  | <t6> | <lease A> | <ttl>
       |  | waiter 1 |  | <t7> | <lease C> | <ttl>
      <p>/pool/gpu | semaphore (limit 2) | holder | {"limit":2} | <t8> | <lease A> | <ttl>
       |  | holder | {"limit":2} | <t9> | <lease B> | <ttl>
       |  | waiter 1 | {"limit":2} | <t10> | <lease C> | <ttl>"
    `);

    await leading.resign();
    await (await campaigning).resign();
    await lock.unlock();
    await (await locking).unlock();
    for (const p of permits) await p.unlock();
    await (await permitting).unlock();
    for (const r of reads) await r.unlock();
    await (await writing).unlock();
  });

  it("status of a prefix with nothing in it says so; --json gives an empty list", async () => {
    const prefix = fx.etcd.prefix("empty");
    expect(await cli(["status", prefix, ...at()])).toMatchObject({
      code: 0,
      stdout: "no election, lock or semaphore here\n",
    });
    const json = await cli(["status", prefix, "--json", ...at()]);
    expect(JSON.parse(json.stdout)).toMatchObject({ names: [] });
  });

  it("history: each term of a name with its holder, token, the revisions it began and ended at and how it ended; JSON, table and SVG", async () => {
    const prefix = fx.etcd.prefix("history");
    const name = `${prefix}jobs/scheduler`;
    // One term after another, none waiting: what this tests is the CLI's reading (a waiter's hand-over is
    // termsOf's, tested in test/unit/cli.test.ts).
    const [a, c] = await sessions(2);
    const b = await Session.create(fx.client, { ttl: 30 });
    const first = await new Election(a!, name).campaign("node-a");
    await first.resign(); // its key deleted while its lease lives
    const secondTerm = await new Election(b, name).campaign("node-b");
    await b.close(); // its lease revoked, its key with it
    const thirdTerm = await new Election(c!, name).campaign("node-c");
    await thirdTerm.proclaim("node-c2");

    const json = await cli(["history", name, "--json", ...at()]);
    expect(json).toMatchObject({ code: 0, stderr: "" });
    const h = JSON.parse(json.stdout) as { terms: { token: string; began: string; ended?: string; how: string }[] };
    expect(h.terms).toEqual([
      expect.objectContaining({ token: first.token.toString(), value: "node-a", how: "deleted" }),
      expect.objectContaining({ token: secondTerm.token.toString(), value: "node-b", how: "unknown" }),
      expect.objectContaining({ token: thirdTerm.token.toString(), value: "node-c2", how: "holding" }),
    ]);
    // Each term begins with its key (nobody was ahead), after the one before ended.
    for (const t of h.terms) expect(t.began).toBe(t.token);
    expect(BigInt(h.terms[1]!.began)).toBeGreaterThan(BigInt(h.terms[0]!.ended!));
    expect(BigInt(h.terms[2]!.began)).toBeGreaterThan(BigInt(h.terms[1]!.ended!));
    expect(h.terms[2]!.ended).toBeUndefined();
    const tokens = h.terms.flatMap((t) => [t.token, t.began, ...(t.ended ? [t.ended] : [])]);
    const rules = replacements(prefix, { [a!.leaseId]: "A", [b.leaseId]: "B", [c!.leaseId]: "C" }, tokens);
    expect(normalise(json.stdout, rules)).toMatchSnapshot();

    const table = await cli(["history", name, ...at()]);
    expect(table).toMatchObject({ code: 0, stderr: "" });
    const [heading, ...rest] = table.stdout.split("\n");
    expect(normalise(heading!, rules)).toMatch(/^<p>\/jobs\/scheduler \(election\): terms from revision 1 to \d+$/);
    expect(normalise(cells(rest.join("\n")), rules)).toMatchInlineSnapshot(`
      "HOLDER | VALUE | TOKEN | BEGAN | ENDED | HOW
      <lease A> | node-a | <t1> | <t1> | <t2> | key deleted, lease alive
      <lease B> | node-b | <t3> | <t3> | <t4> | deleted or lease ended
      <lease C> | node-c2 | <t5> | <t5> | - | holds"
    `);

    const dir = mkdtempSync(join(tmpdir(), "cli-svg-"));
    try {
      const file = join(dir, "terms.svg");
      expect(await cli(["history", name, "--svg", file, ...at()])).toMatchObject({ code: 0 });
      const svg = readFileSync(file, "utf8");
      expect(svg).toMatch(/^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
      for (const [session, term] of [
        [a!, first],
        [b, secondTerm],
        [c!, thirdTerm],
      ] as const) {
        // A bar with the term's token written on it, in its holder's lane.
        expect(svg).toContain(`>${term.token}</text>`);
        expect(svg).toContain(`>${BigInt(session.leaseId).toString(16)} node-`);
      }
      expect(svg.match(/<rect [^>]*height="14"/g)).toHaveLength(3);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    await thirdTerm.resign();
  });

  it("history after a compaction starts at the compact revision: a term already going then is marked as begun before it", async () => {
    const name = `${fx.etcd.prefix("compacted")}lock`;
    const [a, b] = await sessions(2);
    const first = await new Mutex(a!, name).lock();
    const compactedAt = await fx.etcd.compact();
    await first.unlock();
    const second = await new Mutex(b!, name).lock();
    const run = await cli(["history", name, "--json", ...at()]);
    expect(run).toMatchObject({ code: 0, stderr: "" });
    expect(JSON.parse(run.stdout)).toMatchObject({
      name,
      kind: "mutex",
      fromRevision: compactedAt,
      terms: [
        { token: first.token.toString(), began: compactedAt, beganBefore: true, how: "deleted" },
        { token: second.token.toString(), how: "holding" },
      ],
    });
    await second.unlock();
  });

  it("resign --force deletes the holder's key: its signal aborts, its fenced writes are refused, the next candidate leads", async () => {
    const name = `${fx.etcd.prefix("resign")}jobs`;
    const [a, b] = await sessions(2);
    const term = await new Election(a!, name).campaign("stuck");
    const next = new Election(b!, name).campaign("next");
    await waitFor(async () => (await fx.client.getAll().prefix(`${name}/`).keys()).length === 2);

    const refused = await cli(["resign", name, ...at()]);
    expect(refused).toMatchObject({ code: 2, stderr: expect.stringMatching(/^usage: .*--force/) });
    const unconfirmed = await cli(["resign", name, "--force", ...at()]);
    expect(unconfirmed).toMatchObject({ code: 2, stderr: expect.stringMatching(/--yes/) });
    expect(term.signal.aborted).toBe(false);

    const done = await cli(["resign", name, "--force", "--yes", ...at()]);
    expect(done).toMatchObject({
      code: 0,
      stdout: expect.stringContaining(`deleted ${term.key} (token ${term.token}`),
    });
    expect(await aborted(term.signal, 10_000)).toMatchObject({ code: "NOT_LEADER" });
    await expect(
      term
        .txn()
        .then(fx.client.put(`${name}-data`).value("late"))
        .commit(),
    ).rejects.toMatchObject({ code: "NOT_LEADER" });
    expect(await fx.client.get(`${name}-data`).string()).toBeNull();
    const nextTerm = await next;
    await nextTerm.resign();

    expect(await cli(["resign", name, "--force", "--yes", ...at()])).toMatchObject({
      code: 3,
      stderr: `${name}: nobody holds it\n`,
    });
  });

  it("resign refuses a name with several holders (a semaphore): nothing deleted", async () => {
    const name = `${fx.etcd.prefix("resign-sem")}pool`;
    const [a, b] = await sessions(2);
    const permits = [
      await new Semaphore(a!, name, { limit: 2 }).acquire(),
      await new Semaphore(b!, name, { limit: 2 }).acquire(),
    ];
    expect(await cli(["resign", name, "--force", "--yes", ...at()])).toMatchObject({
      code: 2,
      stderr: expect.stringContaining("2 holders"),
    });
    expect(await fx.client.getAll().prefix(`${name}/`).keys()).toHaveLength(2);
    for (const p of permits) await p.unlock();
  });

  it("watch prints the state again on every change, as plain blocks when stdout is no terminal, and stops on SIGINT", async () => {
    const prefix = fx.etcd.prefix("watch");
    const [a] = await sessions(1);
    const watching = started(["watch", prefix, ...at()]);
    try {
      await waitFor(() => watching.stdout().includes("no election, lock or semaphore here"), {
        description: "the first state",
      });
      const term = await new Election(a!, `${prefix}jobs`).campaign("node-a");
      await waitFor(() => watching.stdout().includes("node-a"), { description: "the new leader shown" });
      await term.resign();
      await waitFor(() => watching.stdout().split("--- revision").length === 4, { description: "the resign shown" });
      expect(watching.stdout().split("--- revision").at(-1)).toContain("no election, lock or semaphore here");
    } finally {
      watching.child.kill("SIGINT");
    }
    expect(await watching.closed).toMatchObject({ code: 130, stderr: "", hung: false });
  });

  it("watch whose reader goes away (watch | head) ends quietly with 0, no stack trace", async () => {
    const prefix = fx.etcd.prefix("watch-epipe");
    const watching = started(["watch", prefix, ...at()]);
    await waitFor(() => watching.stdout().includes("no election"), { description: "the first state" });
    watching.child.stdout.destroy();
    const [a] = await sessions(1);
    const term = await new Election(a!, `${prefix}jobs`).campaign("after-the-reader");
    const run = await watching.closed;
    await term.resign();
    expect(run).toMatchObject({ code: 0, stderr: "", hung: false });
  });

  it("watch says when its connection drops, redraws once it is back, and ends on SIGTERM with 143", async () => {
    const prefix = fx.etcd.prefix("watch-drop");
    const proxy = await TcpProxy.start({ targetPort: Number(fx.etcd.endpoints[0]!.split(":")[1]) });
    const watching = started(["watch", prefix, "--endpoints", proxy.url, "--command-timeout", "2s"]);
    try {
      await waitFor(() => watching.stdout().includes("no election"), { description: "the first state" });
      proxy.cut();
      await waitFor(() => /^disconnected \(ETCD_UNAVAILABLE: [^\n]*\), retrying$/m.test(watching.stderr()), {
        description: "the drop said",
        timeoutMs: 20_000,
      });
      const [a] = await sessions(1);
      const term = await new Election(a!, `${prefix}jobs`).campaign("while-away");
      proxy.open();
      await waitFor(() => watching.stdout().includes("while-away"), { description: "redrawn", timeoutMs: 20_000 });
      await term.resign();
    } finally {
      watching.child.kill("SIGTERM");
      await proxy.close();
    }
    const run = await watching.closed;
    expect(run).toMatchObject({ code: 143, hung: false });
    expect(
      run.stderr
        .split("\n")
        .filter(Boolean)
        .every((l) => /^(disconnected \(|reconnected$)/.test(l)),
    ).toBe(true);
  });

  it("watch against an unreachable etcd fails at once with one typed line; SIGINT while it connects ends it with 130", async () => {
    const down = await cli(["watch", "--endpoints", "127.0.0.1:1", "--command-timeout", "1s"]);
    expect(down).toMatchObject({
      code: 1,
      stdout: "",
      hung: false,
      stderr: expect.stringMatching(/^ETCD_UNAVAILABLE: [^\n]+\n$/),
    });
    // A black hole: the connection never completes; Ctrl-C must not wait for it.
    const proxy = await TcpProxy.start({ targetPort: Number(fx.etcd.endpoints[0]!.split(":")[1]) });
    proxy.blackhole();
    try {
      const waiting = started(["watch", "--endpoints", proxy.url, "--command-timeout", "20s"]);
      await waitFor(() => proxy.connectionCount > 0, { description: "the CLI dialing" });
      waiting.child.kill("SIGINT");
      expect(await waiting.closed).toMatchObject({ code: 130, stdout: "", hung: false });
    } finally {
      await proxy.close();
    }
  });

  it("a key on no lease (etcdctl put) at the head of a queue holds, as the library sees it: status shows it, resign --force deletes it and not the waiter", async () => {
    const name = `${fx.etcd.prefix("foreign")}jobs`;
    await fx.client.put(`${name}/abc`).value("etcdctl");
    const [b] = await sessions(1);
    const campaigning = new Election(b!, name).campaign("node-b");
    await waitFor(async () => (await fx.client.getAll().prefix(`${name}/`).keys()).length === 2);
    const leader = await new Election(b!, name).leader();
    expect(leader?.key).toBe(`${name}/abc`);

    const json = await cli(["status", name, "--json", ...at()]);
    const read = JSON.parse(json.stdout) as StatusJson;
    expect(read.names).toEqual([
      expect.objectContaining({
        name,
        holders: [expect.objectContaining({ key: `${name}/abc`, lease: "0" })],
        waiters: [expect.objectContaining({ token: expect.any(String) })],
      }),
    ]);
    const done = await cli(["resign", name, "--force", "--yes", ...at()]);
    expect(done).toMatchObject({ code: 0, stdout: expect.stringContaining(`deleted ${name}/abc (token `) });
    expect(done.stdout).toContain("no lease");
    const term = await campaigning; // the waiter is next: its key untouched
    expect(term.key).toBe(`${name}/${BigInt(b!.leaseId).toString(16)}`);
    await term.resign();
  });

  it("Ctrl-C at resign's question deletes nothing and ends with 130", async () => {
    const name = `${fx.etcd.prefix("resign-ctrl-c")}jobs`;
    const [a] = await sessions(1);
    const term = await new Election(a!, name).campaign("stays");
    const input = Object.assign(new PassThrough(), { isTTY: true });
    let err = "";
    const asking = resignCommand(
      fx.client,
      name,
      { force: true, yes: false },
      {
        out: () => {},
        err: (t) => (err += t),
        outTty: true,
        inTty: true,
        input,
        signal: new AbortController().signal,
        timeoutMs: 5000,
      },
    );
    await waitFor(() => input.listenerCount("keypress") > 0 || input.listenerCount("data") > 0, {
      description: "the question asked",
    });
    input.write("\x03");
    await expect(asking).rejects.toMatchObject({ exitCode: 130 });
    expect(await fx.client.get(term.key).string()).toBe("stays");
    expect(term.signal.aborted).toBe(false);
    expect(err).toBe("");
    await term.resign();
  });

  it("status reads a keyspace whose page of values would pass gRPC's 4 MiB (REQUEST_TOO_LARGE before)", async () => {
    const prefix = fx.etcd.prefix("big");
    const blob = "x".repeat(10_000);
    // 520 keys of 10 kB that are no queue key ("big-N": not a lease's hex): a page of 500 with values is 5 MB.
    for (let i = 0; i < 520; i += 40)
      await Promise.all(
        Array.from({ length: 40 }, (_, j) =>
          fx.client
            .put(`${prefix}cfg/big-${i + j}`)
            .value(blob)
            .exec(),
        ),
      );
    const [a] = await sessions(1);
    const lock = await new Mutex(a!, `${prefix}m`).lock();
    try {
      const run = await cli(["status", prefix, "--json", ...at()]);
      expect(run).toMatchObject({ code: 0, stderr: "", hung: false });
      expect((JSON.parse(run.stdout) as StatusJson).names.map((n) => n.name)).toEqual([`${prefix}m`]);
    } finally {
      await lock.unlock();
      await fx.client.delete().prefix(`${prefix}cfg/`).exec();
    }
  });

  it("status reads a prefix in pages at one revision, and asks each lease's time once", async () => {
    const prefix = fx.etcd.prefix("pages");
    const [a] = await sessions(1);
    const locks = [];
    for (const n of ["a", "b", "c", "d", "e"]) locks.push(await new Mutex(a!, `${prefix}${n}`).lock());
    const ranges: IRangeRequest[] = [];
    const paged: string[] = [];
    const valued: string[] = [];
    let leaseCalls = 0;
    // What readNames calls, counted: each key a page returns, each key whose value is read.
    const spied = {
      kv: {
        range: async (req: IRangeRequest) => {
          ranges.push(req);
          const res = await fx.client.kv.range(req);
          paged.push(...res.kvs.map((kv) => kv.key.toString()));
          return res;
        },
        txn: async (req: ITxnRequest) => {
          valued.push(...(req.success ?? []).map((op) => op.request_range!.key!.toString()));
          return fx.client.kv.txn(req);
        },
      },
      leaseClient: {
        leaseTimeToLive: (req: { ID: string }) => (leaseCalls++, fx.client.leaseClient.leaseTimeToLive(req)),
      },
    } as unknown as Etcd3;
    const { revision, names } = await readNames(spied, prefix, 2);
    expect(names.map((n) => n.name)).toEqual(["a", "b", "c", "d", "e"].map((n) => `${prefix}${n}`));
    expect(ranges).toHaveLength(3);
    expect(ranges.every((r) => r.limit === 2)).toBe(true);
    expect(ranges.slice(1).every((r) => r.revision === revision)).toBe(true);
    expect(ranges.every((r) => r.keys_only === true)).toBe(true);
    // Every key once: a page that starts at the last key read (not after it) reads it twice.
    expect(paged).toHaveLength(5);
    expect(new Set(paged).size).toBe(5);
    expect([...valued].sort()).toEqual([...paged].sort());
    expect(leaseCalls).toBe(1);
    for (const l of locks) await l.unlock();
  });

  it("status, history and watch leave nothing in etcd: no key, no lease, no watch", async () => {
    const name = `${fx.etcd.prefix("traceless")}jobs`;
    const [a] = await sessions(1);
    const term = await new Election(a!, name).campaign("x");
    const member = fx.etcd.members[0]!;
    const before = {
      keys: (await fx.client.getAll().keys()).length,
      leases: (await fx.client.leaseClient.leaseLeases()).leases.length,
      watchers: await watchersInEtcd(member),
    };
    expect(await cli(["status", ...at()])).toMatchObject({ code: 0, hung: false });
    expect(await cli(["history", name, ...at()])).toMatchObject({ code: 0, hung: false });
    const watching = started(["watch", name, ...at()]);
    await waitFor(() => watching.stdout().includes("x"), { description: "watching" });
    watching.child.kill("SIGINT");
    expect(await watching.closed).toMatchObject({ code: 130, hung: false });
    expect((await fx.client.getAll().keys()).length).toBe(before.keys);
    expect((await fx.client.leaseClient.leaseLeases()).leases.length).toBe(before.leases);
    await waitFor(async () => (await watchersInEtcd(member)) <= before.watchers, {
      description: "the CLI's watches gone from etcd",
    });
    await term.resign();
  });

  it("errors are one line, CODE: message, with exit code 1; --help exits 0", async () => {
    const down = await cli(["status", "--endpoints", "127.0.0.1:1", "--command-timeout", "1s"]);
    expect(down).toMatchObject({ code: 1, hung: false, stderr: expect.stringMatching(/^ETCD_UNAVAILABLE: [^\n]+\n$/) });
    expect(await cli(["--help"])).toMatchObject({ code: 0, stdout: expect.stringContaining("Exit codes") });
  });

  /** Each run gives a usage error: exit 2, one line. */
  const usageErrors = async (runs: [string[], Record<string, string>?][]): Promise<void> => {
    for (const [args, env] of runs) {
      const run = await cli([...args, ...at()], env);
      expect(run, args.join(" ")).toMatchObject({ code: 2, stderr: expect.stringMatching(/^usage: [^\n]+\n$/) });
    }
  };

  it("usage mistakes (a command, an argument, a flag) exit 2 with one line", async () => {
    await usageErrors([
      [["frobnicate"]],
      [["history"]],
      [["status", "--svg", "x.svg"]],
      [["status", "--bogus"]],
      [["resign", "a/"]],
    ]);
  });

  it("durations as Go writes them, as etcdctl takes them (flags and ETCDCTL_*); a bad value or flag value exits 2 with one line", async () => {
    expect(
      await cli(["status", "x/"], { ETCDCTL_COMMAND_TIMEOUT: "1m30s", ETCDCTL_ENDPOINTS: at()[1]! }),
    ).toMatchObject({ code: 0 });
    await usageErrors([
      [["status", "--command-timeout", "5"]],
      [["status", "--insecure-transport=perhaps"]],
      [["status", "--insecure-skip-tls-verify"]],
      [["status"], { ETCDCTL_DIAL_TIMEOUT: "2" }],
    ]);
  });
});

describe.skipIf(!!faultsUnavailableReason)("the operator's CLI over TLS with client certificates", () => {
  const fx = useEtcd(() => startEtcd({ tls: true }));

  it("every command with --cacert --cert --key or ETCDCTL_CACERT/CERT/KEY; without a client certificate: AUTH_FAILED", async () => {
    const dir = fx.etcd.security.tls!.dir;
    const flags = [
      "--cacert",
      join(dir, "ca.pem"),
      "--cert",
      join(dir, "client.pem"),
      "--key",
      join(dir, "client.key"),
    ];
    const env = {
      ETCDCTL_ENDPOINTS: fx.etcd.endpoints.join(","),
      ETCDCTL_CACERT: join(dir, "ca.pem"),
      ETCDCTL_CERT: join(dir, "client.pem"),
      ETCDCTL_KEY: join(dir, "client.key"),
    };
    const name = `${fx.etcd.prefix("tls")}jobs`;
    const session = await fx.newSession();
    const term = await new Election(session, name).campaign("over-tls");
    const status = await cli(["status", name, "--json", "--endpoints", fx.etcd.endpoints.join(","), ...flags]);
    expect(status).toMatchObject({ code: 0, stdout: expect.stringContaining('"value": "over-tls"') });
    const history = await cli(["history", name, "--json"], env);
    expect(JSON.parse(history.stdout)).toMatchObject({ terms: [{ token: term.token.toString(), how: "holding" }] });
    expect(await cli(["resign", name, "--force", "--yes"], env)).toMatchObject({ code: 0 });
    await aborted(term.signal, 10_000);

    const noCert = await cli(["status", name, "--cacert", join(dir, "ca.pem"), "--command-timeout", "2s"], {
      ETCDCTL_ENDPOINTS: env.ETCDCTL_ENDPOINTS,
    });
    expect(noCert.code).toBe(1);
    expect(noCert.stderr).toMatch(/^AUTH_FAILED: [^\n]*TLS[^\n]*\n$/);
  });
});

describe.skipIf(!!faultsUnavailableReason)("the operator's CLI against etcd with authentication", () => {
  const fx = useEtcd(() => startEtcd({ auth: true }));

  it("--user user:password, or ETCDCTL_USER with ETCDCTL_PASSWORD; a wrong password is AUTH_FAILED, a missing one a usage error", async () => {
    const name = `${APP_PREFIX}${fx.etcd.prefix("auth")}jobs`;
    const session = await Session.create(fx.etcd.client({ auth: APP }), { ttl: 30 });
    try {
      const term = await new Election(session, name).campaign("as-app");
      const at = ["--endpoints", fx.etcd.endpoints.join(",")];
      const flag = await cli(["status", name, ...at, "--user", `${APP.username}:${APP.password}`]);
      expect(flag).toMatchObject({ code: 0, stdout: expect.stringContaining("as-app") });
      const env = {
        ETCDCTL_ENDPOINTS: fx.etcd.endpoints.join(","),
        ETCDCTL_USER: APP.username,
        ETCDCTL_PASSWORD: APP.password,
      };
      const history = await cli(["history", name, "--json"], env);
      expect(JSON.parse(history.stdout)).toMatchObject({ terms: [{ token: term.token.toString() }] });

      const wrong = await cli(["status", name, ...at, "--user", `${APP.username}:not-the-password`]);
      expect(wrong.code).toBe(1);
      expect(wrong.stderr).toMatch(/^AUTH_FAILED: [^\n]+\n$/);
      const denied = await cli(["status", "elsewhere/", ...at, "--user", `${APP.username}:${APP.password}`]);
      expect(denied.code).toBe(1);
      expect(denied.stderr).toMatch(/^PERMISSION_DENIED: [^\n]+\n$/);
      // watch reads first, as status does: refused credentials end it at once, typed.
      const refused = await cli(["watch", name, ...at, "--user", `${APP.username}:not-the-password`]);
      expect(refused).toMatchObject({
        code: 1,
        stdout: "",
        hung: false,
        stderr: expect.stringMatching(/^AUTH_FAILED: [^\n]+\n$/),
      });
      const missing = await cli(["status", name, ...at, "--user", APP.username]);
      expect(missing).toMatchObject({ code: 2, stderr: expect.stringContaining("ETCDCTL_PASSWORD") });

      expect(await cli(["resign", name, "--force", "--yes"], env)).toMatchObject({ code: 0 });
      await aborted(term.signal, 10_000);
    } finally {
      await session.close();
    }
  });
});
