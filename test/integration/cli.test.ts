/**
 * The operator's CLI (src/cli/main.ts) as a child process against real etcd: status (table, JSON),
 * watch, history (table, JSON, SVG, after a compaction), resign, and the connection as etcdctl's (TLS
 * with client certificates, authentication, ETCDCTL_* variables), errors as one typed line.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Election, Mutex, RWLock, Semaphore, Session } from "../../src/index.js";
import { APP, APP_PREFIX, aborted, faultsUnavailableReason, startEtcd, useEtcd, waitFor } from "../support/index.js";

const MAIN = join(import.meta.dirname, "../../src/cli/main.ts");

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

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
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const closed = new Promise<Run>((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })));
  return { child, closed, stdout: () => stdout };
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
      <p>/pool/gpu | semaphore (limit 2) | holder | {\\"limit\\":2} | <t8> | <lease A> | <ttl>
       |  | holder | {\\"limit\\":2} | <t9> | <lease B> | <ttl>
       |  | waiter 1 | {\\"limit\\":2} | <t10> | <lease C> | <ttl>"
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
    const [a, c] = await sessions(2);
    const b = await Session.create(fx.client, { ttl: 30 });
    const first = await new Election(a!, name).campaign("node-a");
    const second = new Election(b, name).campaign("node-b");
    const third = new Election(c!, name).campaign("node-c");
    await waitFor(async () => (await fx.client.getAll().prefix(`${name}/`).keys()).length === 3);
    await first.resign(); // its key deleted while its lease lives
    const secondTerm = await second;
    await b.close(); // its lease revoked, its key with it
    const thirdTerm = await third;
    await thirdTerm.proclaim("node-c2");

    const json = await cli(["history", name, "--json", ...at()]);
    expect(json).toMatchObject({ code: 0, stderr: "" });
    const h = JSON.parse(json.stdout) as { terms: { token: string; began: string; ended?: string; how: string }[] };
    expect(h.terms).toEqual([
      expect.objectContaining({ token: first.token.toString(), value: "node-a", how: "deleted" }),
      expect.objectContaining({ token: secondTerm.token.toString(), value: "node-b", how: "unknown" }),
      expect.objectContaining({ token: thirdTerm.token.toString(), value: "node-c2", how: "holding" }),
    ]);
    // Each term begins where the one before ended.
    expect(h.terms[1]!.began).toBe(h.terms[0]!.ended);
    expect(h.terms[2]!.began).toBe(h.terms[1]!.ended);
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
      <lease B> | node-b | <t3> | <t2> | <t4> | deleted or lease ended
      <lease C> | node-c2 | <t5> | <t4> | - | holds"
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
    const waiting = new Mutex(b!, name).lock();
    await waitFor(async () => (await fx.client.getAll().prefix(`${name}/`).keys()).length === 2);
    await first.unlock();
    const second = await waiting;
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
    expect(await watching.closed).toMatchObject({ code: 0, stderr: "" });
  });

  it("errors are one line, CODE: message, with exit code 1; usage mistakes exit 2", async () => {
    const down = await cli(["status", "--endpoints", "127.0.0.1:1", "--command-timeout", "1s"]);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/^ETCD_UNAVAILABLE: [^\n]+\n$/);
    for (const args of [
      ["frobnicate"],
      ["history"],
      ["status", "--svg", "x.svg"],
      ["status", "--bogus"],
      ["resign", "a/"],
    ]) {
      const run = await cli([...args, ...at()]);
      expect(run, args.join(" ")).toMatchObject({ code: 2, stderr: expect.stringMatching(/^usage: /) });
    }
    expect(await cli(["--help"])).toMatchObject({ code: 0, stdout: expect.stringContaining("Exit codes") });
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
      const missing = await cli(["status", name, ...at, "--user", APP.username]);
      expect(missing).toMatchObject({ code: 2, stderr: expect.stringContaining("ETCDCTL_PASSWORD") });

      expect(await cli(["resign", name, "--force", "--yes"], env)).toMatchObject({ code: 0 });
      await aborted(term.signal, 10_000);
    } finally {
      await session.close();
    }
  });
});
