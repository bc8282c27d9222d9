/**
 * `npm run chaos`: the fault suite on the command line, against any etcd image.
 *
 *   npm run chaos                                   # every fault once, random seed (printed)
 *   npm run chaos -- --duration 10m --seed 42       # soak: faults from the seeded schedule for 10 min
 *   npm run chaos -- --image gcr.io/etcd-development/etcd:v3.5.17 --workers 4 --ttl 3 --out chaos-report
 *   npm run chaos -- --store postgres              # the writes go into PostgreSQL through withFence
 *   npm run chaos -- --sharded                     # three more workers run a ShardedElector of 16 shards
 *   npm run chaos -- --check chaos-report/history.json --out /tmp/again   # re-check a recorded history
 *
 * ETCD_IMAGE works as --image; ETCD_VERSION=3.4 picks the local 3.4.23 image. Exits 1 if the history
 * breaks a rule, after printing the violations and the command that replays the schedule.
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import globalSetup from "../support/global-setup.js";
import { runChaos } from "./chaos.js";
import { check, type Verdict } from "./checker.js";
import type { History } from "./history.js";
import { writeReport } from "./report.js";

/** "10m", "90s", "1h", or plain seconds. */
function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw new Error(`--duration: "${text}" is not a duration (e.g. 90s, 10m)`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? "s") as "ms" | "s" | "m" | "h"];
  return Number(m[1]) * unit;
}

const { values } = parseArgs({
  options: {
    duration: { type: "string" },
    seed: { type: "string" },
    image: { type: "string" },
    workers: { type: "string" },
    ttl: { type: "string" },
    out: { type: "string" },
    check: { type: "string" },
    store: { type: "string" },
    sharded: { type: "boolean" },
  },
});
const out = resolve(values.out ?? "chaos-report");

function printViolations(verdict: Verdict, seed: number, replay: string): void {
  console.error(`\nVIOLATIONS (seed ${seed}):`);
  for (const v of verdict.violations)
    console.error(
      `- ${v.rule}: ${v.message}${v.excerpt ? `\n    ${v.excerpt.map((x) => JSON.stringify(x)).join("\n    ")}` : ""}`,
    );
  console.error(`\nreplay: ${replay}\nreport: ${out}/report.md`);
}

if (values.check) {
  // Re-check a recorded history (after a change to the checker, or to read it again): no etcd needed.
  const history = JSON.parse(readFileSync(values.check, "utf8")) as History;
  const verdict = check(history);
  console.log(writeReport(out, history, verdict));
  if (!verdict.ok) printViolations(verdict, history.seed, history.replay);
  process.exit(verdict.ok ? 0 : 1);
}
if (values.store !== undefined && values.store !== "etcd" && values.store !== "postgres")
  throw new Error(`--store must be etcd or postgres, not ${values.store}`);
const store = values.store;
const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
if (!Number.isInteger(seed) || seed < 0) throw new Error(`--seed must be a non-negative integer, not ${values.seed}`);
if (values.image) process.env.ETCD_IMAGE = values.image;
const replay = [
  // Without an image named, ETCD_VERSION picks the etcd (global-setup.ts sets ETCD_IMAGE from it later).
  !process.env.ETCD_IMAGE && process.env.ETCD_VERSION && `ETCD_VERSION=${process.env.ETCD_VERSION}`,
  "npm run chaos --",
  `--seed ${seed}`,
  values.duration && `--duration ${values.duration}`,
  process.env.ETCD_IMAGE && `--image ${process.env.ETCD_IMAGE}`,
  values.workers && `--workers ${values.workers}`,
  values.ttl && `--ttl ${values.ttl}`,
  store && `--store ${store}`,
  values.sharded && "--sharded",
]
  .filter(Boolean)
  .join(" ");

// The same setup as the test suite: picks (and builds) the etcd image, sweeps leftovers of interrupted
// runs, and removes this run's containers on exit or Ctrl-C.
const teardown = await globalSetup();
let failed = true;
try {
  const { verdict } = await runChaos({
    seed,
    durationMs: values.duration === undefined ? undefined : parseDuration(values.duration),
    workers: values.workers === undefined ? undefined : Number(values.workers),
    ttl: values.ttl === undefined ? undefined : Number(values.ttl),
    out,
    replay,
    store,
    sharded: values.sharded ?? false,
  });
  failed = !verdict.ok;
  if (failed) printViolations(verdict, seed, replay);
} finally {
  await teardown();
}
process.exit(failed ? 1 : 0);
