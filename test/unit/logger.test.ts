import { spawn } from "node:child_process";
import { createServer, type AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { Etcd3 } from "etcd3";
import { describe, expect, it, vi } from "vitest";
import {
  consoleLogger,
  foldingConsole,
  silentLogger,
  toLogger,
  withFields,
  type Logger,
} from "../../src/common/logger.js";
import { LeaderElector } from "../../src/index.js";

describe("the logger option", () => {
  it("undefined takes the default, false silences, anything else must have the four levels", () => {
    expect(toLogger(undefined, consoleLogger)).toBe(consoleLogger);
    expect(toLogger(false, consoleLogger)).toBe(silentLogger);
    expect(() => toLogger({ info() {} }, silentLogger)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
  });

  it("fields bound once come with every line; a logger that throws does not break the caller", () => {
    const lines: [string, object, string][] = [];
    const base: Logger = {
      debug: (f, m) => void lines.push(["debug", f, m]),
      info: (f, m) => void lines.push(["info", f, m]),
      warn: () => {
        throw new Error("broken logger");
      },
      error: (f, m) => void lines.push(["error", f, m]),
    };
    const log = withFields(toLogger(base, silentLogger), { lease: "abc" });
    log.info({ key: "k" }, "hello");
    expect(() => log.warn({}, "nope")).not.toThrow();
    expect(lines).toEqual([["info", { lease: "abc", key: "k" }, "hello"]]);
  });

  it("the console default prints warnings and errors on one line each, with an error's code and message; a stack only at error level", () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    const error = vi.spyOn(console, "error").mockImplementation(() => {});
    try {
      consoleLogger.info({}, "not printed");
      consoleLogger.warn({ attempt: 2 }, "retrying");
      consoleLogger.warn({ err: Object.assign(new Error("down"), { code: "ETCD_UNAVAILABLE" }) }, "call failed");
      consoleLogger.error({ err: Object.assign(new Error("boom"), { code: "ETCD_ERROR" }) }, "failed");
      expect(warn.mock.calls).toEqual([
        ["[etcd-election] retrying (attempt=2)"],
        ["[etcd-election] call failed (err=ETCD_UNAVAILABLE: down)"],
      ]);
      expect(String(error.mock.calls[0]?.[0])).toMatch(
        /^\[etcd-election\] failed \(err=ETCD_ERROR: boom\)\nError: boom/,
      );
    } finally {
      warn.mockRestore();
      error.mockRestore();
    }
  });
});

describe("the console default folds repeats", () => {
  it("the first of a repeated failure is printed, the rest counted and told when the window closes; other failures apart", () => {
    vi.useFakeTimers();
    const lines: string[] = [];
    const out = { warn: (l: string) => void lines.push(l), error: (l: string) => void lines.push(l) };
    const log = foldingConsole(out, 10_000);
    const down = (): Error => Object.assign(new Error("down"), { code: "ETCD_UNAVAILABLE" });
    try {
      for (let i = 0; i < 42; i++) log.warn({ election: "jobs", err: down(), attempt: i + 1 }, "campaign failed");
      log.warn({ election: "other", err: down() }, "campaign failed");
      log.error({ err: down() }, "session lost");
      expect(lines).toHaveLength(3);
      expect(lines[0]).toBe('[etcd-election] campaign failed (election="jobs" err=ETCD_UNAVAILABLE: down attempt=1)');
      expect(lines[1]).toBe('[etcd-election] campaign failed (election="other" err=ETCD_UNAVAILABLE: down)');
      expect(lines[2]).toMatch(/^\[etcd-election\] session lost \(err=ETCD_UNAVAILABLE: down\)\nError: down\n\s+at /);
      vi.advanceTimersByTime(10_000);
      expect(lines.slice(3)).toEqual([
        '[etcd-election] campaign failed (election="jobs"): ... and 41 more in the last 10 s',
      ]);
      log.warn({ election: "jobs", err: down() }, "campaign failed"); // a new window: printed again
      expect(lines).toHaveLength(5);
    } finally {
      vi.useRealTimers();
    }
  });

  it("folds only true repeats: another identity, another error message or another reason is printed; counters and timings in a message still fold", () => {
    vi.useFakeTimers();
    const lines: string[] = [];
    const out = { warn: (l: string) => void lines.push(l), error: (l: string) => void lines.push(l) };
    const log = foldingConsole(out, 10_000);
    const err = (message: string): Error => Object.assign(new Error(message), { code: "SESSION_LOST" });
    try {
      // Two electors of one name in one process.
      log.warn({ election: "jobs", identity: "a", err: err("down") }, "leader election failed; trying again");
      log.warn({ election: "jobs", identity: "b", err: err("down") }, "leader election failed; trying again");
      // A second loss for another reason.
      log.error({ err: err("session lost: etcd reports the lease expired or revoked") }, "session lost");
      log.error({ err: err("session lost: its etcd3 client was closed; the lease is left to expire") }, "session lost");
      // etcd's reason is a field, not an error.
      log.warn({ reason: "etcdserver: mvcc: required revision has been compacted" }, "etcd canceled a watch");
      log.warn({ reason: "etcdserver: no leader" }, "etcd canceled a watch");
      expect(lines).toHaveLength(6);
      // Repeats whose only difference is an attempt count or a time in grpc's message fold.
      const late = (s: string): Error =>
        Object.assign(new Error(`call: etcd unavailable (4 DEADLINE_EXCEEDED: Deadline exceeded after ${s}s)`), {
          code: "ETCD_UNAVAILABLE",
        });
      log.warn({ election: "jobs", identity: "a", err: late("5.002"), attempt: 1 }, "read failed; retrying");
      log.warn({ election: "jobs", identity: "a", err: late("5.013"), attempt: 2 }, "read failed; retrying");
      expect(lines).toHaveLength(7);
      vi.advanceTimersByTime(10_000);
      expect(lines.slice(7)).toEqual([
        '[etcd-election] read failed; retrying (election="jobs" identity="a"): ... and 1 more in the last 10 s',
      ]);
    } finally {
      vi.useRealTimers();
    }
  });

  it("counts still folded when the process exits are printed on the way out", async () => {
    const script = [
      `import { foldingConsole } from ${JSON.stringify(fileURLToPath(new URL("../../src/common/logger.ts", import.meta.url)))};`,
      "const log = foldingConsole();",
      'for (let i = 0; i < 3; i++) log.warn({ election: "jobs", attempt: i }, "campaign failed");',
    ].join("\n");
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let err = "";
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    expect(code).toBe(0);
    expect(err.trim().split("\n")).toEqual([
      '[etcd-election] campaign failed (election="jobs" attempt=0)',
      '[etcd-election] campaign failed (election="jobs"): ... and 2 more in the last 10 s',
    ]);
  }, 20_000);

  it("a LeaderElector with the default logger against an unreachable etcd: each failure once, on one line", async () => {
    const lines: string[] = [];
    const warn = vi.spyOn(console, "warn").mockImplementation((l: string) => void lines.push(l));
    const error = vi.spyOn(console, "error").mockImplementation((l: string) => void lines.push(l));
    const port = await closedPort();
    const client = new Etcd3({ hosts: `127.0.0.1:${port}` });
    try {
      const elector = new LeaderElector({
        client,
        name: "jobs",
        identity: "a",
        callTimeoutMs: 300,
        onStartedLeading() {},
      });
      const stop = new AbortController();
      let failures = 0;
      elector.on("failure", () => ++failures >= 4 && stop.abort());
      await elector.run({ signal: stop.signal });
      expect(failures).toBeGreaterThanOrEqual(4);
      expect(lines.length).toBeGreaterThan(0);
      expect(lines.filter((l) => l.includes("\n"))).toEqual([]);
      // A repeat is the same message, fields and error (code and message), timings aside (docs/operating.md):
      // each is printed once. Two different errors under one message (connection refused, or a call that
      // timed out first on a loaded machine) are two failures, each shown.
      const printed = lines.map((l) => l.replace(/\d+/g, "N"));
      expect(new Set(printed).size).toBe(printed.length);
    } finally {
      client.close();
      warn.mockRestore();
      error.mockRestore();
    }
  }, 20_000);
});

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
