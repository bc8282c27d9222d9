/**
 * The timeline of a run as an SVG, drawn the way Jepsen draws histories: one lane per worker, its
 * believed terms as bars labelled with their fencing tokens (and, thinner, its mutex holds), SIGSTOP
 * windows hatched, kills and stops marked, stale writes etcd refused marked in red, fault windows shaded
 * across all lanes, violations as red lines and etcd bug sightings as purple diamonds. Hand-written SVG:
 * no dependencies. Hover an element for its details.
 */
import { LANE, PALETTE, esc, laneSvg, termBarSvg, title } from "../../src/cli/timeline.js";
import type { Verdict } from "./checker.js";
import { faultSpans, type FaultKind, type History } from "./history.js";

const WIDTH = 1400;
const LEFT = 64;
const RIGHT = 16;
const TOP = 44;
/** Width of a character of the 10 px labels, roughly. */
const CHAR_PX = 5.6;
const FAULT_COLOR: Record<FaultKind, string> = {
  "pause-worker": "#f2a541",
  "kill-worker": "#d1495b",
  "term-worker": "#66a182",
  "cut-worker": "#edae49",
  "pause-raft-leader": "#00798c",
  "restart-member": "#30638e",
  "isolate-member": "#8e7dbe",
  partition: "#6a4c93",
  compaction: "#7f7f7f",
  outage: "#a4243b",
  handover: "#2e86ab",
};

export function timelineSvg(history: History, verdict: Verdict): string {
  const t0 = history.startedAt;
  const span = Math.max(1, history.endedAt - t0);
  const x = (t: number): number =>
    LEFT + ((Math.min(Math.max(t, t0), history.endedAt) - t0) / span) * (WIDTH - LEFT - RIGHT);
  const workers = [...new Set(history.events.flatMap((e) => ("w" in e ? [e.w] : [])))];
  const lane = new Map(workers.map((w, i) => [w, TOP + i * LANE]));
  const bottom = TOP + workers.length * LANE;
  const height = bottom + 80;
  const out: string[] = [];
  const secs = (t: number): string => `${((t - t0) / 1000).toFixed(2)} s`;

  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif" font-size="10">`,
    `<defs><pattern id="hatch" width="5" height="5" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><line x1="0" y1="0" x2="0" y2="5" stroke="#333" stroke-width="2"/></pattern></defs>`,
    `<rect width="100%" height="100%" fill="white"/>`,
  );

  // Fault windows, shaded across every lane, labelled on two alternating rows above: "n kind", or only
  // "n" when faults are dense (the colours are in the legend, each window's details in its tooltip).
  const spans = faultSpans(history);
  const dense = (WIDTH - LEFT - RIGHT) / Math.max(1, spans.length) < 70;
  const rowEnds = [-Infinity, -Infinity];
  spans.forEach(({ fault: f, healedAt }, i) => {
    const healAt = healedAt ?? f.t;
    const x1 = x(f.t);
    const color = FAULT_COLOR[f.kind];
    const label = dense ? `${f.n}` : `${f.n} ${f.kind}`;
    const row = i % 2;
    const fits = x1 >= rowEnds[row]! + 2;
    if (fits) rowEnds[row] = x1 + label.length * CHAR_PX;
    out.push(
      `<g>${title(`fault ${f.n}: ${f.kind} ${f.detail} (${secs(f.t)} – ${secs(healAt)})`)}` +
        `<rect x="${x1}" y="${TOP - 4}" width="${Math.max(2, x(healAt) - x1)}" height="${bottom - TOP + 8}" fill="${color}" opacity="0.18"/>` +
        (fits ? `<text x="${x1 + 1}" y="${row ? 26 : 14}" fill="${color}">${esc(label)}</text>` : "") +
        `</g>`,
    );
  });

  // Lanes.
  for (const w of workers) {
    const y = lane.get(w)!;
    out.push(laneSvg(w, y, LEFT, WIDTH - RIGHT));
  }

  for (const i of verdict.intervals) {
    const y = lane.get(i.w)!;
    const x1 = x(i.start);
    const w = Math.max(1, x(i.end) - x1);
    const tip = `${i.w} ${i.kind} token ${i.token}: ${secs(i.start)} – ${secs(i.end)}; ended by ${i.reason}`;
    if (i.kind === "election") out.push(termBarSvg(x1, w, y, i.token, tip));
    else out.push(`<g>${title(tip)}<rect x="${x1}" y="${y + 20}" width="${w}" height="5" fill="#999"/></g>`);
  }

  // What the runner did to each worker: SIGSTOP windows hatched, SIGKILL as a cross, SIGTERM as a bar.
  const stops = new Map<string, number>();
  for (const e of history.events) {
    if (!("w" in e)) continue;
    const y = lane.get(e.w)!;
    if (e.e === "sigstop") stops.set(e.w, e.t);
    else if ((e.e === "sigcont" || e.e === "sigkill") && stops.has(e.w)) {
      const from = stops.get(e.w)!;
      stops.delete(e.w);
      out.push(
        `<g>${title(`${e.w} SIGSTOPped ${secs(from)} – ${secs(e.t)}`)}<rect x="${x(from)}" y="${y + 1}" width="${Math.max(1, x(e.t) - x(from))}" height="${LANE - 4}" fill="url(#hatch)" opacity="0.5"/></g>`,
      );
    }
    if (e.e === "sigkill") {
      const cx = x(e.t);
      out.push(
        `<g stroke="black" stroke-width="2">${title(`${e.w} SIGKILL at ${secs(e.t)}`)}<line x1="${cx - 5}" y1="${y + 4}" x2="${cx + 5}" y2="${y + 16}"/><line x1="${cx - 5}" y1="${y + 16}" x2="${cx + 5}" y2="${y + 4}"/></g>`,
      );
    } else if (e.e === "sigterm") {
      out.push(
        `<g>${title(`${e.w} SIGTERM at ${secs(e.t)}`)}<rect x="${x(e.t) - 1}" y="${y}" width="3" height="${LANE - 4}" fill="black"/></g>`,
      );
    } else if (e.e === "spawn") {
      out.push(
        `<g>${title(`${e.w} started at ${secs(e.t)}`)}<circle cx="${x(e.t)}" cy="${y + 10}" r="3" fill="none" stroke="black"/></g>`,
      );
    }
  }

  // Writes etcd refused as stale (fencing at work), and writes whose outcome the worker could not learn.
  for (const o of verdict.ops) {
    const y = lane.get(o.w)!;
    const cx = x(o.t);
    if (o.outcome === "stale") {
      // From when it was issued to when etcd's refusal came back: how late it landed.
      const rx = x(o.settledAt ?? o.t);
      out.push(
        `<g>${title(`${o.w} ${o.kind} write ${o.op} (token ${o.token}) issued at ${secs(o.t)}, refused by etcd as stale at ${secs(o.settledAt ?? o.t)}`)}` +
          `<line x1="${cx}" x2="${rx}" y1="${y}" y2="${y}" stroke="#d62728"/><path d="M${rx - 5} ${y - 2} L${rx + 5} ${y - 2} L${rx} ${y + 7} Z" fill="#d62728"/></g>`,
      );
    } else if (o.outcome === "unknown") {
      out.push(
        `<g>${title(`${o.w} ${o.kind} write ${o.op}: outcome unknown to it; ${o.committed ? "committed" : "not committed"} (log)`)}<circle cx="${cx}" cy="${y + 27}" r="2" fill="${o.committed ? "#2ca02c" : "#ff7f0e"}"/></g>`,
      );
    }
  }

  for (const r of verdict.etcdRevokes) {
    const y = lane.get(r.hold.w)!;
    const cx = x(r.hold.end);
    out.push(
      `<g>${title(`etcd #15247: etcd ended ${r.hold.w}'s ${r.hold.kind} hold (token ${r.hold.token}) ${r.afterResumeMs.toFixed(0)} ms after a raft-leader resume: ${r.hold.reason}`)}` +
        `<path d="M${cx} ${y + 1} L${cx + 5} ${y + 9} L${cx} ${y + 17} L${cx - 5} ${y + 9} Z" fill="white" stroke="#9467bd" stroke-width="2"/></g>`,
    );
  }
  for (const b of verdict.etcdBugs) {
    const y = lane.get(b.told.w)!;
    const cx = x(b.next.start);
    out.push(
      `<g>${title(`etcd #15247: ${b.told.w} (token ${b.told.token}) was told by etcd ${b.overlapMs.toFixed(0)} ms after ${b.next.w} (token ${b.next.token}) began, ${b.afterResumeMs.toFixed(0)} ms after a raft-leader resume; fencing held`)}` +
        `<path d="M${cx} ${y - 1} L${cx + 6} ${y + 9} L${cx} ${y + 19} L${cx - 6} ${y + 9} Z" fill="#9467bd" stroke="white"/></g>`,
    );
  }
  for (const v of verdict.violations) {
    if (v.at === undefined) continue;
    out.push(
      `<g>${title(`VIOLATION ${v.rule}: ${v.message}`)}<line x1="${x(v.at)}" x2="${x(v.at)}" y1="${TOP - 6}" y2="${bottom}" stroke="#d62728" stroke-width="2"/></g>`,
    );
  }

  // Time axis.
  const step = [1, 2, 5, 10, 15, 30, 60, 120, 300].find((s) => span / 1000 / s <= 14) ?? 600;
  out.push(`<line x1="${LEFT}" x2="${WIDTH - RIGHT}" y1="${bottom + 4}" y2="${bottom + 4}" stroke="#333"/>`);
  for (let s = 0; s * 1000 <= span; s += step) {
    const tx = x(t0 + s * 1000);
    out.push(
      `<line x1="${tx}" x2="${tx}" y1="${bottom + 4}" y2="${bottom + 9}" stroke="#333"/><text x="${tx}" y="${bottom + 20}" text-anchor="middle">${s} s</text>`,
    );
  }

  // Legend: the marks, then the fault colours; each item placed after the previous one's text.
  const ly = bottom + 34;
  const marks: [string, number, string][] = [
    [`<rect width="24" height="10" fill="${PALETTE[0]}"/>`, 28, "believed leader (token)"],
    [`<rect y="3" width="24" height="5" fill="#999"/>`, 28, "holds the mutex"],
    [`<rect width="24" height="10" fill="url(#hatch)" opacity="0.5"/>`, 28, "SIGSTOPped"],
    [
      `<line x1="0" x2="13" y1="0" y2="0" stroke="#d62728"/><path d="M8 0 L18 0 L13 9 Z" fill="#d62728"/>`,
      22,
      "stale write: issued — refused by etcd",
    ],
    [`<circle cx="4" cy="5" r="3" fill="#ff7f0e"/>`, 12, "unknown outcome, not committed"],
    [`<circle cx="4" cy="5" r="3" fill="#2ca02c"/>`, 12, "committed"],
    [
      `<path d="M5 -1 L10 5 L5 11 L0 5 Z" fill="white" stroke="#9467bd" stroke-width="2"/>`,
      14,
      "etcd #15247 revoke (filled: overlap)",
    ],
    [`<line x1="2" x2="2" y1="-2" y2="12" stroke="#d62728" stroke-width="2"/>`, 8, "violation"],
    ["", 0, "✕ SIGKILL  ▮ SIGTERM  ○ start"],
  ];
  let lx = 0;
  out.push(`<g transform="translate(${LEFT},${ly})">`);
  for (const [mark, markWidth, text] of marks) {
    out.push(`<g transform="translate(${lx},0)">${mark}<text x="${markWidth}" y="9">${esc(text)}</text></g>`);
    lx += markWidth + text.length * CHAR_PX + 10;
  }
  out.push(
    `</g>`,
    `<g transform="translate(${LEFT},${ly + 16})">`,
    ...Object.entries(FAULT_COLOR).map(
      ([kind, color], i) =>
        `<rect x="${i * 128}" width="10" height="10" fill="${color}" opacity="0.5"/><text x="${i * 128 + 14}" y="9">${kind}</text>`,
    ),
    `</g>`,
    `<text x="${LEFT}" y="${height - 6}" fill="#555">seed ${history.seed}, etcd ${esc(history.etcdVersion)}, TTL ${history.ttlMs / 1000} s, ${verdict.ok ? "no violation" : `${verdict.violations.length} violation(s)`}, etcd #15247: ${verdict.etcdRevokes.length} revoke(s), ${verdict.etcdBugs.length} overlap(s); shaded: faults</text>`,
    `</svg>`,
  );
  return out.join("\n");
}
