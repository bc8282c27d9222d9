/**
 * The operator's CLI, what needs no etcd: kinds told from values, the queue rule (the library's own),
 * terminal-safe tables, XML-safe SVG, etcdctl's flag forms, and history's reading bounds (against a
 * stand-in for etcd's watch that answers as scripted).
 */
import { EventEmitter } from "node:events";
import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { confirm, watch } from "../../src/cli/commands.js";
import { askPassword, boolOf, connection, durationMs, Interrupted, parse } from "../../src/cli/connection.js";
import { main } from "../../src/cli/main.js";
import { readNames } from "../../src/cli/read.js";
import { judgeEndings, readHistory, termsOf, type KeyEvent, type NameHistory } from "../../src/cli/history.js";
import { kindOf, namesOf, type QueueKey } from "../../src/cli/model.js";
import { historySvg, historyTable, statusJson, statusTable } from "../../src/cli/render.js";

const b = (s: string): Buffer => Buffer.from(s);
const qk = (key: string, rev: number, value = "", lease = "7"): QueueKey => ({
  key,
  value: b(value),
  createRevision: BigInt(rev),
  lease,
});

describe("the CLI's kind of a name, from its values", () => {
  it("names a lock kind only when every value says it; a mix, or a value of another shape, is an election", () => {
    expect(kindOf([b(""), b("")])).toEqual({ kind: "mutex" });
    expect(kindOf([b("read"), b("write")])).toEqual({ kind: "read-write lock" });
    expect(kindOf([b('{"limit":2}'), b('{"limit":2}')])).toEqual({ kind: "semaphore", limit: 2 });
    for (const values of [
      ["read", "node-a"],
      ["write", ""],
      ["", "node-a"],
      ['{"limit":2}', "node-a"],
      ['{"limit":2,"owner":"x"}'],
      ['{"limit":0}'],
      ['{"limit":1.5}'],
      ['{"limit":"2"}'],
      ["[2]"],
      ["null"],
      ["read", '{"limit":2}'],
    ]) {
      expect(kindOf(values.map(b)), JSON.stringify(values)).toEqual({ kind: "election" });
    }
  });
});

describe("the CLI's queue rule: the library's own", () => {
  it("a key the library counts in the queue (lease 0, another writer's lease) holds or waits as it does", () => {
    const names = namesOf([
      qk("jobs/a", 5, "foreign", "0"), // etcdctl put, no lease
      qk("jobs/1f", 9, "node-b", "31"), // hex of another lease
      qk("jobs/x/2a", 3, "deeper"), // the queue of jobs/x, not of jobs
      qk("jobs/not-hex", 1, "neither"),
    ]);
    expect(names.map((n) => n.name)).toEqual(["jobs", "jobs/x"]);
    expect(names[0]!.holders.map((p) => p.key)).toEqual(["jobs/a"]);
    expect(names[0]!.waiters.map((p) => p.key)).toEqual(["jobs/1f"]);
    expect(statusTable(names)).toMatch(/^jobs {4}election {2}holder {4}foreign {2}5 {6}0 {6}-$/m);
  });

  it("each key waits by its own value's policy, as each primitive does: a mixed queue's holders are the library's", () => {
    const [mixed] = namesOf([qk("rw/a", 3, "read"), qk("rw/b", 4, "read"), qk("rw/c", 5, "")]);
    expect(mixed!.holders.map((p) => p.key)).toEqual(["rw/a", "rw/b"]);
    expect(mixed!.waiters.map((p) => p.key)).toEqual(["rw/c"]);
    const [permits] = namesOf([qk("s/a", 3, "write"), qk("s/b", 4, '{"limit":2}'), qk("s/c", 5, '{"limit":2}')]);
    expect(permits!.holders.map((p) => p.key)).toEqual(["s/a", "s/b"]);
  });

  it("keys of one transaction (one create revision) are none ahead of another: all of them hold, as in the library", () => {
    const [one] = namesOf([qk("m/a", 7), qk("m/b", 7), qk("m/c", 8)]);
    expect(one!.holders.map((p) => p.key)).toEqual(["m/a", "m/b"]);
    expect(one!.waiters.map((p) => p.key)).toEqual(["m/c"]);
  });
});

describe("the CLI's output of text from etcd", () => {
  it("the table escapes terminal escapes, newlines and other controls in names, keys and values", () => {
    const evil = "\x1b[2J\x1b]0;owned\x07\r\nline\u009b31m\u202eX\\";
    const table = statusTable(namesOf([qk(`n${evil}/a`, 2, evil)]));
    // eslint-disable-next-line no-control-regex
    expect(table).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]/);
    expect(table.trimEnd().split("\n")).toHaveLength(2);
    expect(table).toContain("\\e[2J\\e]0;owned\\x07\\r\\nline\\x9b31m\\u202eX\\\\");
    const history: NameHistory = {
      name: `n${evil}`,
      fromRevision: "1",
      toRevision: "3",
      terms: [{ holder: "a", lease: "10", key: `n${evil}/a`, token: "2", value: evil, began: "2", how: "holding" }],
    };
    // eslint-disable-next-line no-control-regex
    expect(historyTable(history)).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f]/);
  });

  it("the SVG drops what XML forbids (C0 controls but tab, LF, CR; U+FFFE, U+FFFF; lone surrogates) from names and values", () => {
    const bad = "a\u0000b\u0001c\u001fd\ufffee\uffff f\ud800g\udc00h";
    const svg = historySvg({
      name: `jobs${bad}`,
      kind: "election",
      fromRevision: "1",
      toRevision: "9",
      terms: [
        {
          holder: "1f",
          lease: "31",
          key: `jobs${bad}/1f`,
          token: "4",
          value: `v${bad}\t<&>"`,
          began: "4",
          how: "holding",
        },
      ],
    });
    // eslint-disable-next-line no-control-regex
    expect(svg).not.toMatch(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]|[\ud800-\udfff]/);
    expect(svg).toContain("jobsabcde f");
    expect(svg).toContain("vabcde fgh\t&lt;&amp;&gt;&quot;");
    // A surrogate pair (an emoji) is kept.
    expect(historySvg({ name: "jobs 🚀", fromRevision: "1", toRevision: "2", terms: [] })).toContain("jobs 🚀");
  });
});

describe("the CLI's flags, as etcdctl takes them", () => {
  it("durations as Go writes them", () => {
    expect(durationMs("5s")).toBe(5000);
    expect(durationMs("500ms")).toBe(500);
    expect(durationMs("1m30s")).toBe(90_000);
    expect(durationMs("1.5h")).toBe(5_400_000);
    expect(durationMs("2500us")).toBe(3);
    for (const bad of ["5", "", "s", "-1s", "0s", "1x", "5 s", "1m 30s", "100ns", "1e3s", "9999999h"]) {
      expect(() => durationMs(bad, "--command-timeout"), bad).toThrow(/^--command-timeout: /);
    }
  });

  it("--dial-timeout, --command-timeout and their ETCDCTL_ variables; a bad value is a usage error", async () => {
    const conn = await connection({ "dial-timeout": "1m30s" }, { ETCDCTL_COMMAND_TIMEOUT: "250ms" }, false);
    expect(conn).toMatchObject({ dialMs: 90_000, timeoutMs: 250 });
    expect(await connection({}, { ETCDCTL_DIAL_TIMEOUT: "3s" }, false)).toMatchObject({
      dialMs: 3000,
      timeoutMs: 5000,
    });
    await expect(connection({}, { ETCDCTL_DIAL_TIMEOUT: "3" }, false)).rejects.toThrow(
      /^--dial-timeout: not a duration/,
    );
    await expect(connection({ "command-timeout": "soon" }, {}, false)).rejects.toThrow(/^--command-timeout: /);
  });

  it('an ETCDCTL_ variable set to "" is unset, as for etcdctl; with a password given, --user is taken whole', async () => {
    const empty = {
      ETCDCTL_ENDPOINTS: "",
      ETCDCTL_CACERT: "",
      ETCDCTL_CERT: "",
      ETCDCTL_KEY: "",
      ETCDCTL_USER: "",
      ETCDCTL_PASSWORD: "",
      ETCDCTL_INSECURE_TRANSPORT: "",
      ETCDCTL_INSECURE_SKIP_TLS_VERIFY: "",
      ETCDCTL_DIAL_TIMEOUT: "",
      ETCDCTL_COMMAND_TIMEOUT: "",
    };
    const conn = await connection({}, empty, false);
    expect(conn).toMatchObject({ hosts: ["http://127.0.0.1:2379"], dialMs: 2000, timeoutMs: 5000 });
    expect(conn.options.auth).toBeUndefined();
    expect((await connection({ user: "a:b", password: "p" }, {}, false)).options.auth).toEqual({
      username: "a:b",
      password: "p",
    });
    expect((await connection({ user: "a:b" }, { ETCDCTL_PASSWORD: "p" }, false)).options.auth).toEqual({
      username: "a:b",
      password: "p",
    });
    expect((await connection({ user: "a:b" }, {}, false)).options.auth).toEqual({ username: "a", password: "b" });
  });

  it("--insecure-transport=false asks for TLS without a CA file; --insecure-skip-tls-verify is refused (etcd3 always verifies)", async () => {
    const { values } = parse(["status", "--insecure-transport=false", "--json=true"], { json: { type: "boolean" } });
    expect(values).toMatchObject({ "insecure-transport": false, json: true });
    expect((await connection(values, {}, false)).hosts).toEqual(["https://127.0.0.1:2379"]);
    expect((await connection({}, { ETCDCTL_INSECURE_TRANSPORT: "false" }, false)).hosts).toEqual([
      "https://127.0.0.1:2379",
    ]);
    expect((await connection({}, {}, false)).hosts).toEqual(["http://127.0.0.1:2379"]);
    await expect(connection({ "insecure-skip-tls-verify": true }, {}, false)).rejects.toThrow(/not supported/);
    expect(() => parse(["--insecure-transport=maybe"], {})).toThrow(/not a boolean/);
    expect(boolOf("T", "x")).toBe(true);
  });
});

describe("resign's confirmation", () => {
  it("Ctrl-C at the question (a terminal in raw mode) is an interruption, exit 130; end of input is a no", async () => {
    const tty = (): PassThrough => Object.assign(new PassThrough(), { isTTY: true });
    const signal = new AbortController().signal;
    const input = tty();
    const asked = confirm("Delete? [y/N] ", { signal, input }, new PassThrough());
    input.write("\x03");
    await expect(asked).rejects.toMatchObject({ exitCode: 130 });
    const closed = tty();
    const no = confirm("Delete? [y/N] ", { signal, input: closed }, new PassThrough());
    closed.end();
    await expect(no).resolves.toBe(false);
    const yes = tty();
    const confirmed = confirm("Delete? [y/N] ", { signal, input: yes }, new PassThrough());
    yes.write("y\r");
    await expect(confirmed).resolves.toBe(true);
  });
});

/** A stand-in for etcd: a current revision, a history by revision, and a watch that answers as `answer` says. */
function fakeEtcd(answer: (stream: EventEmitter, start: bigint) => void, revision = 20n) {
  return {
    get: () => ({ exec: async () => ({ header: { revision: revision.toString() }, kvs: [] }) }),
    kv: { range: async () => ({ header: { revision: revision.toString() }, kvs: [], more: false }) },
    leaseClient: { leaseTimeToLive: async () => ({ TTL: "-1" }) },
    watchClient: {
      watch: async () => {
        const stream = Object.assign(new EventEmitter(), {
          end: () => {},
          cancel: () => {},
          write: (req: { create_request?: { start_revision: string } }) => {
            if (req.create_request) setImmediate(() => answer(stream, BigInt(req.create_request!.start_revision)));
          },
        });
        return stream;
      },
    },
  } as never;
}

const header = (revision: bigint) => ({ header: { revision: revision.toString() } });
const put = (key: string, rev: bigint) => ({
  type: "Put",
  kv: { key: b(key), value: b(""), create_revision: rev.toString(), mod_revision: rev.toString(), lease: "16" },
});

describe("history's terms", () => {
  it("a waiter's term begins where the one before it ended; a lease's end deletes its keys in one revision", () => {
    const ev = (type: "put" | "delete", revision: number, key: string, created: number, lease: string): KeyEvent => ({
      type,
      revision: BigInt(revision),
      kv: qk(key, created, type === "put" ? key.slice(-1) : "", lease),
    });
    const terms = termsOf("n", [], 1n, [
      ev("put", 2, "n/a", 2, "10"),
      ev("put", 3, "n/b", 3, "11"),
      ev("put", 4, "n/c", 4, "12"),
      ev("delete", 5, "n/a", 2, "10"),
      ev("delete", 6, "n/b", 3, "11"),
    ]);
    expect(terms.map((t) => [t.key, t.began, t.ended])).toEqual([
      ["n/a", "2", "5"],
      ["n/b", "5", "6"],
      ["n/c", "6", undefined],
    ]);
  });
});

describe("history's reading bounds", () => {
  it("fails within one command timeout once etcd stops answering, however long it answered before", async () => {
    let sent = 0;
    const client = fakeEtcd((stream) => {
      stream.emit("data", { ...header(20n), created: true, events: [] });
      // Answers every 40 ms for 400 ms (a long history), then nothing more.
      const more = setInterval(() => {
        if (++sent === 10) clearInterval(more);
        stream.emit("data", { ...header(20n), events: [put("n/10", BigInt(sent))] });
      }, 40);
    });
    const started = Date.now();
    await expect(readHistory(client, "n", 150)).rejects.toMatchObject({ code: "ETCD_UNAVAILABLE" });
    expect(sent).toBe(10); // read on while answers came, past the 150 ms a fixed deadline would have allowed
    expect(Date.now() - started).toBeLessThan(400 + 150 + 1000);
  });

  it("a compaction while reading starts again from the new compact revision; too many, a clear error", async () => {
    const starts: bigint[] = [];
    const compactions = [10n, 15n];
    const client = fakeEtcd((stream, start) => {
      starts.push(start);
      stream.emit("data", { ...header(20n), created: true, events: [] });
      const compacted = compactions.shift();
      if (compacted !== undefined && start <= compacted)
        return stream.emit("data", { ...header(20n), canceled: true, compact_revision: compacted.toString() });
      stream.emit("data", { ...header(20n), events: [put("n/10", 18n)] });
      stream.emit("data", { ...header(20n), events: [] }); // progress: caught up
    });
    const h = await readHistory(client, "n", 1000);
    expect(starts).toEqual([1n, 11n, 16n]);
    expect(h).toMatchObject({ fromRevision: "15", toRevision: "20", terms: [{ token: "18", how: "holding" }] });

    // Compacted again between the watch and the read at its start, twice: three compactions, each counted once.
    let compactedAt = 10n;
    let readsToFail = 2;
    const racing = fakeEtcd((stream, start) => {
      stream.emit("data", { ...header(20n), created: true, events: [] });
      if (start <= compactedAt)
        return stream.emit("data", { ...header(20n), canceled: true, compact_revision: compactedAt.toString() });
      stream.emit("data", { ...header(20n), events: [] });
    }) as unknown as { kv: { range: (req: { revision?: string }) => Promise<unknown> } };
    racing.kv.range = async () => {
      if (readsToFail-- > 0) {
        compactedAt += 4n;
        throw new Error("etcdserver: mvcc: required revision has been compacted");
      }
      return { ...header(20n), kvs: [], more: false };
    };
    await expect(readHistory(racing as never, "n", 1000)).resolves.toMatchObject({ fromRevision: "18" });

    const always = fakeEtcd((stream, start) => {
      stream.emit("data", { ...header(99n), created: true, events: [] });
      stream.emit("data", { ...header(99n), canceled: true, compact_revision: (start + 5n).toString() });
    }, 99n);
    await expect(readHistory(always, "n", 1000)).rejects.toMatchObject({
      code: "ETCD_ERROR",
      message: expect.stringMatching(/compacted its history \d+ times/),
    });
  });
});

describe("the password prompt", () => {
  const tty = (): PassThrough => Object.assign(new PassThrough(), { isTTY: true });
  it("Ctrl-C is an interruption (130), Ctrl-D a usage error, a SIGINT/SIGTERM ends it with its code; Enter answers", async () => {
    const signal = new AbortController().signal;
    const ctrlC = tty();
    const a = askPassword("root", { signal, input: ctrlC, output: new PassThrough() });
    ctrlC.write("\x03");
    await expect(a).rejects.toMatchObject({ exitCode: 130 });
    const ctrlD = tty();
    const d = askPassword("root", { signal, input: ctrlD, output: new PassThrough() });
    ctrlD.write("\x04");
    await expect(d).rejects.toThrow(/no password given/);
    const controller = new AbortController();
    const waiting = askPassword("root", { signal: controller.signal, input: tty(), output: new PassThrough() });
    controller.abort(new Interrupted(143));
    await expect(waiting).rejects.toMatchObject({ exitCode: 143 });
    const typed = tty();
    const answered = askPassword("root", { signal, input: typed, output: new PassThrough() });
    typed.write("s3cret\r");
    await expect(answered).resolves.toBe("s3cret");
  });

  it("an Object.prototype name is no command; no command at all is one usage line, exit 2", async () => {
    for (const argv of [["toString"], ["constructor"], ["__proto__"], []]) {
      const out: string[] = [];
      const err: string[] = [];
      const io = {
        out: (t: string) => void out.push(t),
        err: (t: string) => void err.push(t),
        outTty: false,
        inTty: false,
        signal: new AbortController().signal,
      };
      expect(await main(argv, io), argv.join()).toBe(2);
      expect(out).toEqual([]);
      expect(err).toEqual([expect.stringMatching(/^usage: [^\n]*\n$/)]);
    }
  });

  it("resign's usage errors come before the password is asked", async () => {
    const lines: string[] = [];
    const io = {
      out: () => {},
      err: (t: string) => void lines.push(t),
      outTty: false,
      inTty: false,
      signal: new AbortController().signal,
      input: tty(),
    };
    expect(await main(["resign", "x", "--user", "root"], io)).toBe(2);
    expect(await main(["resign", "x", "--force", "--user", "root"], io)).toBe(2);
    expect(lines).toEqual([expect.stringMatching(/say --force/), expect.stringMatching(/add --yes/)]);
  });
});

describe("status's paged read", () => {
  /** A keyspace read the way rangeAll reads it; `compactOnce` fails the first value read as compacted. */
  function keyspace(keys: string[], compactOnce: boolean) {
    const kv = (k: string, withValue: boolean) => ({
      key: b(k),
      value: withValue ? b(`v:${k}`) : b(""),
      create_revision: String(keys.indexOf(k) + 2),
      mod_revision: "2",
      lease: "7",
    });
    const calls = { ranges: [] as { keys_only?: boolean; revision?: string }[], valueReads: [] as string[] };
    let compact = compactOnce;
    const client = {
      kv: {
        range: async (req: { key: Buffer; limit: number; keys_only?: boolean; revision?: string }) => {
          calls.ranges.push({ keys_only: req.keys_only, revision: req.revision });
          const from = [...keys].sort().filter((k) => Buffer.compare(b(k), req.key) >= 0);
          const page = from.slice(0, req.limit);
          return {
            header: { revision: "50" },
            kvs: page.map((k) => kv(k, !req.keys_only)),
            more: from.length > page.length,
          };
        },
        txn: async (req: { success: { request_range: { key: Buffer; revision: string } }[] }) => {
          if (compact) {
            compact = false;
            throw new Error("etcdserver: mvcc: required revision has been compacted");
          }
          return {
            responses: req.success.map(({ request_range: r }) => {
              calls.valueReads.push(r.key.toString());
              return { response_range: { kvs: [kv(r.key.toString(), true)] } };
            }),
          };
        },
      },
      leaseClient: { leaseTimeToLive: async () => ({ TTL: "9" }) },
    } as never;
    return { client, calls };
  }

  it("pages carry no values; only queue keys' values are read; a compaction while paging starts again", async () => {
    const queue = ["e/a/7", "e/b/7", "m/7", "m/8"];
    const other = ["big/blob/x/y", "config", "e/a/7/deeper"];
    const { client, calls } = keyspace([...queue, ...other], true);
    const { revision, names } = await readNames(client, "", 2);
    expect(revision).toBe("50");
    expect(calls.ranges.every((r) => r.keys_only === true)).toBe(true);
    expect(names.map((n) => [n.name, n.holders.map((h) => h.value), n.waiters.map((w) => w.value)])).toEqual([
      ["e/a", ["v:e/a/7"], []],
      ["e/b", ["v:e/b/7"], []],
      ["m", ["v:m/7"], ["v:m/8"]],
    ]);
    // After the restart, each queue key's value once, no other key's.
    expect(calls.valueReads.sort()).toEqual([...queue].sort());
  });
});

describe("watch", () => {
  /** etcd3's client as watch uses it: ranges at a moving revision, watchers the test drives. */
  function watchable() {
    let revision = 40;
    const ranges: number[] = [];
    const watchers: { from: string; w: EventEmitter & { cancel: () => Promise<void> } }[] = [];
    let release: (() => void) | undefined;
    let hold: Promise<void> | undefined;
    const client = {
      kv: {
        range: async () => {
          ranges.push(revision);
          if (hold) await hold;
          return { header: { revision: String(revision) }, kvs: [], more: false };
        },
        txn: async () => ({ responses: [] }),
      },
      leaseClient: { leaseTimeToLive: async () => ({ TTL: "9" }) },
      watch: () => {
        let from = "";
        const builder = {
          prefix: () => builder,
          startRevision: (r: string) => ((from = r), builder),
          create: async () => {
            const w = Object.assign(new EventEmitter(), { cancel: async () => {} });
            watchers.push({ from, w });
            return w;
          },
        };
        return builder;
      },
    } as never;
    return {
      client,
      ranges,
      watchers,
      setRevision: (r: number) => (revision = r),
      holdReads: () => (hold = new Promise<void>((r) => (release = r))),
      releaseReads: () => ((hold = undefined), release?.()),
    };
  }
  const until = async (cond: () => boolean): Promise<void> => {
    while (!cond()) await new Promise((r) => setImmediate(r));
  };
  const ioOf = (controller: AbortController, out: string[] = []) => ({
    out: (t: string) => void out.push(t),
    err: () => {},
    outTty: false,
    inTty: false,
    signal: controller.signal,
    timeoutMs: 5000,
  });

  it("a watch etcd cancels as compacted is watched again from a fresh read's revision + 1, not an error", async () => {
    const etcd = watchable();
    const controller = new AbortController();
    const done = watch(etcd.client, "", false, ioOf(controller));
    await until(() => etcd.watchers.length === 1);
    expect(etcd.watchers[0]!.from).toBe("41");
    etcd.setRevision(90);
    etcd.watchers[0]!.w.emit("error", new Error("Watcher canceled: "));
    await until(() => etcd.watchers.length === 2);
    expect(etcd.watchers[1]!.from).toBe("91");
    controller.abort(new Interrupted(130));
    await expect(done).rejects.toMatchObject({ exitCode: 130 });
  });

  it("a burst of events is one read in flight and one queued, not a read each", async () => {
    const etcd = watchable();
    const controller = new AbortController();
    const done = watch(etcd.client, "", false, ioOf(controller));
    await until(() => etcd.watchers.length === 1);
    const before = etcd.ranges.length;
    void etcd.holdReads();
    const w = etcd.watchers[0]!.w;
    for (let i = 0; i < 20; i++) w.emit("put", {});
    await until(() => etcd.ranges.length === before + 1);
    etcd.releaseReads();
    await new Promise((r) => setTimeout(r, 0));
    await until(() => etcd.ranges.length === before + 2);
    await new Promise((r) => setImmediate(r));
    expect(etcd.ranges.length).toBe(before + 2);
    controller.abort(new Interrupted(130));
    await expect(done).rejects.toMatchObject({ exitCode: 130 });
  });
});

describe("small things of the output", () => {
  it("--json writes C1 controls, bidi marks and separators as \\u escapes: still valid JSON, the same values", () => {
    const value = "a\u009b31m\u202eb\u2028c\u007f";
    const names = namesOf([qk("n/7", 3, value)]);
    const text = statusJson("9", names);
    expect(text).not.toMatch(/[\u007f-\u009f\u202e\u2028]/);
    expect(JSON.parse(text).names[0].holders[0].value).toBe(value);
  });

  it("a term on no lease (lease 0) ended by a delete, not by a lease", () => {
    const terms = termsOf("n", [], 1n, [
      { type: "put", revision: 5n, kv: { key: "n/0", value: b(""), createRevision: 5n, lease: "0" } },
      { type: "delete", revision: 6n, kv: { key: "n/0", value: b(""), createRevision: 5n, lease: "0" } },
    ] as KeyEvent[]);
    judgeEndings(terms, [], new Map());
    expect(terms[0]!.how).toBe("deleted");
    expect(historyTable({ name: "n", fromRevision: "1", toRevision: "9", terms })).toMatch(/key deleted$/m);
  });

  it("a name in a usage error is escaped once", async () => {
    const err: string[] = [];
    const io = {
      out: () => {},
      err: (t: string) => void err.push(t),
      outTty: false,
      inTty: false,
      signal: new AbortController().signal,
    };
    expect(await main(["history", "a\\b/"], io)).toBe(2);
    expect(err).toEqual(['usage: not a name: "a\\\\b/" (etcd-election --help)\n']);
  });
});
