/**
 * The operator's CLI (src/cli/main.ts) as a child process against real etcd: status (table, JSON),
 * watch, history (table, JSON, SVG, after a compaction), resign, and the connection as etcdctl's (TLS
 * with client certificates, authentication, ETCDCTL_* variables), errors as one typed line.
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Election, Mutex, RWLock, Semaphore, type Session } from "../../src/index.js";
import { faultsUnavailableReason, useEtcd, waitFor } from "../support/index.js";

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
  const child = spawn(process.execPath, ["--import", "tsx", MAIN, ...args], {
    env: cliEnv(env),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })));
}

interface StatusJson {
  revision: string;
  names: { name: string; holders: { key: string; token: string; lease: string }[]; waiters: { token: string }[] }[];
}

/**
 * What changes from run to run, from a status --json read: the prefix, each session's lease (decimal and
 * hex) by its letter, tokens numbered in ascending order, revisions and TTLs.
 */
function replacements(prefix: string, leases: Record<string, string>, tokens: string[]): [RegExp | string, string][] {
  return [
    [prefix, "<p>/"],
    ...Object.entries(leases).flatMap(([id, who]): [RegExp, string][] => [
      [new RegExp(`\\b${id}\\b`, "g"), `<id ${who}>`],
      [new RegExp(`\\b${BigInt(id).toString(16)}\\b`, "g"), `<lease ${who}>`],
    ]),
    ...[...new Set(tokens)]
      .sort((x, y) => (BigInt(x) < BigInt(y) ? -1 : 1))
      .map((t, i): [RegExp, string] => [new RegExp(`(?<=^|[ "])${t}(?=$|[ "])`, "gm"), `<t${i + 1}>`]),
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
      <p>/docs/42 | read-write lock | holder | read | <t8> | <lease A> | <ttl>
       |  | holder | read | <t9> | <lease B> | <ttl>
       |  | waiter 1 | write | <t10> | <lease C> | <ttl>
      <p>/jobs/scheduler | election | holder | node-a:8080 | <t1> | <lease A> | <ttl>
       |  | waiter 1 | node-b:8080 | <t3> | <lease B> | <ttl>
      <p>/locks/report | mutex | holder |  | <t2> | <lease A> | <ttl>
       |  | waiter 1 |  | <t4> | <lease C> | <ttl>
      <p>/pool/gpu | semaphore (limit 2) | holder | {\\"limit\\":2} | <t5> | <lease A> | <ttl>
       |  | holder | {\\"limit\\":2} | <t6> | <lease B> | <ttl>
       |  | waiter 1 | {\\"limit\\":2} | <t7> | <lease C> | <ttl>"
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
});
