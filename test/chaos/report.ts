/**
 * The report of a run, written to a directory: report.md (verdict, figures per fault kind and per
 * fault, violations with the events that show them, the seed to replay), history.json (everything
 * recorded, for re-checking) and timeline.svg.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Verdict } from "./checker.js";
import {
  addWrites,
  decisionLine,
  decisionTotals,
  faultFigures,
  kindFigures,
  spread,
  type WriteCounts,
} from "./figures.js";
import { SHARDS, type History } from "./history.js";
import { timelineSvg } from "./timeline.js";

const writes = (w: WriteCounts): string => `${w.ok} / ${w.stale} / ${w.refused} / ${w.unknown} (${w.unknownCommitted})`;
const ms = (v: number | undefined): string => (v === undefined ? "–" : `${Math.round(v)}`);

function reportMarkdown(history: History, verdict: Verdict): string {
  const perFault = faultFigures(history, verdict);
  const perKind = kindFigures(perFault);
  const pauses = perFault.filter((f) => f.kind === "pause-raft-leader");
  const minutes = ((history.endedAt - history.startedAt) / 60_000).toFixed(1);
  const lines: string[] = [];
  lines.push(
    `# Chaos run, seed ${history.seed}: ${verdict.ok ? "no violation" : `${verdict.violations.length} VIOLATION(S)`}`,
    "",
    `etcd ${history.etcdVersion} (${history.image}), 3 members; ${history.workers} worker processes at a time${history.shardedWorkers ? ` and ${history.shardedWorkers} sharded ones (${SHARDS} shards)` : ""}; session TTL ${history.ttlMs / 1000} s, ` +
      `election timeout ${history.electionTimeoutMs} ms; ${perFault.length} faults in ${minutes} min; ` +
      `writes ${history.store === "postgres" ? "into PostgreSQL through withFence" : "into etcd through txn()"}. ` +
      `Replay the schedule: \`${history.replay}\`.`,
    "",
    `- How waiters decided: ${decisionLine(decisionTotals(history))}.`,
    `- Committed increments: election ${verdict.committed.election}, mutex ${verdict.committed.mutex} (counters: ${history.data.election.counter?.value ?? 0}, ${history.data.mutex.counter?.value ?? 0})` +
      `; shards ${Object.entries(verdict.committed)
        .filter(([k]) => k.startsWith("shard/"))
        .reduce((sum, [, n]) => sum + n, 0)} in all.`,
    `- Writes refused by ${history.store === "postgres" ? "Postgres" : "etcd"} as stale (fencing): ${verdict.ops.filter((o) => o.outcome === "stale").length}; refused by the library's clock before sending: ${verdict.ops.filter((o) => o.outcome === "refused").length}; ` +
      `outcome unknown to the worker: ${verdict.ops.filter((o) => o.outcome === "unknown").length} (${verdict.ops.filter((o) => o.outcome === "unknown" && o.committed).length} of them committed, by the log).`,
    `- etcd #15247: after ${pauses.length} raft-leader pause(s) (${pauses.filter((f) => f.etcdRevokes > 0).length} of them with revokes), etcd ended ${verdict.etcdRevokes.length} holds whose leases were kept alive ` +
      `(holders told ${spread(verdict.etcdRevokes.map((r) => r.afterResumeMs))} after the resume); in ${verdict.etcdBugs.length} of them someone else had already begun ` +
      `(overlap ${spread(verdict.etcdBugs.map((b) => b.overlapMs))}), classified apart: no stale write committed.`,
    "",
    "![timeline](timeline.svg)",
    "",
  );
  if (!verdict.ok) {
    lines.push("## Violations", "");
    for (const v of verdict.violations) {
      lines.push(`- **${v.rule}**: ${v.message}`);
      if (v.excerpt?.length) lines.push("", "  ```json", ...v.excerpt.map((x) => `  ${JSON.stringify(x)}`), "  ```");
    }
    lines.push("");
  }
  if (verdict.etcdRevokes.length) {
    lines.push("## etcd #15247 sightings", "");
    for (const r of verdict.etcdRevokes) {
      lines.push(
        `- ${r.hold.kind}: etcd ended ${r.hold.w}'s hold (token ${r.hold.token}) ${r.afterResumeMs.toFixed(0)} ms after a raft-leader resume: ${r.hold.reason}.`,
      );
    }
    for (const b of verdict.etcdBugs) {
      lines.push(
        `- ${b.kind}: ${b.next.w} began (token ${b.next.token}) ${b.afterResumeMs.toFixed(0)} ms after a raft-leader resume, while ${b.told.w} (token ${b.told.token}) ` +
          `still held for ${b.overlapMs.toFixed(0)} ms, until etcd told it: ${b.told.reason}. No stale write committed.`,
      );
    }
    lines.push("");
  }
  lines.push(
    "## Figures per fault kind",
    "",
    "Median (min–max). Failover: from the fault (SIGKILL, SIGTERM, the cut, SIGSTOP) to the next worker's first believed term. " +
      "Notice: from SIGCONT to the paused leader's term ending. Gap: from a cut-off leader's term ending to the next one beginning. " +
      "Recovery: from the heal to a leader etcd agrees with. Writes: committed / refused by etcd as stale / refused by the library / unknown (of which committed), " +
      "both kinds, whose outcome came from the fault's start to the next fault's.",
    "",
    "| fault | n | failover | notice after resume | gap before next | recovery | writes | #15247 revokes (overlaps) |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  );
  for (const k of perKind) {
    if (k.count === 0) continue;
    lines.push(
      `| ${k.kind} | ${k.count} | ${spread(k.failoverMs)} | ${spread(k.noticeAfterResumeMs)} | ${spread(k.gapBeforeNextMs)} | ${spread(k.recoveryMs)} | ${writes(k.writes)} | ${k.etcdRevokes} (${k.etcdBugs}) |`,
    );
  }
  if (history.shardedWorkers) {
    lines.push(
      "",
      "## The sharded workload per fault kind",
      "",
      "Median (min–max). Taken over: from the fault to the moment every shard its sharded worker held had another worker's term. " +
        "Notice: from SIGCONT to the paused sharded worker's last term ending. Gap: the least time from a cut-off sharded worker's term " +
        "ending to that shard's next term beginning. Balanced: from the heal to every shard held, floor or ceil per worker. Writes: all shards', as above.",
      "",
      "| fault | n | taken over | notice after resume | gap before next | balanced | writes |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    );
    for (const k of perKind) {
      if (k.count === 0) continue;
      const s = k.shards;
      lines.push(
        `| ${k.kind} | ${k.count} | ${spread(s.takenOverMs)} | ${spread(s.noticeAfterResumeMs)} | ${spread(s.gapBeforeNextMs)} | ${spread(s.balancedMs)} | ${writes(s.writes)} |`,
      );
    }
  }
  lines.push(
    "",
    "## Every fault",
    "",
    "| # | fault | detail | at s | healed s | failover ms | notice ms | recovery ms | writes |",
    "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
  );
  const at = (t: number | undefined): string => (t === undefined ? "–" : ((t - history.startedAt) / 1000).toFixed(1));
  for (const f of perFault) {
    lines.push(
      `| ${f.n} | ${f.kind} | ${f.detail} | ${at(f.start)} | ${at(f.heal)} | ${ms(f.failoverMs)} | ${ms(f.noticeAfterResumeMs)} | ${ms(f.recoveryMs)} | ${writes(addWrites(f.writes.election, f.writes.mutex))} |`,
    );
  }
  const checks = history.events.filter((e) => e.e === "check");
  lines.push(
    "",
    `Recovery checks: ${checks.filter((c) => c.e === "check" && c.ok).length} of ${checks.length} passed.`,
    "",
  );
  return lines.join("\n");
}

/** Writes report.md, history.json and timeline.svg into `dir`; returns the report's text. */
export function writeReport(dir: string, history: History, verdict: Verdict): string {
  mkdirSync(dir, { recursive: true });
  const md = reportMarkdown(history, verdict);
  writeFileSync(join(dir, "report.md"), md);
  writeFileSync(join(dir, "timeline.svg"), timelineSvg(history, verdict));
  writeFileSync(join(dir, "history.json"), JSON.stringify(history));
  return md;
}
