/** Output for people (aligned tables) and for scripts (JSON, with bigints as strings). */
import type { NameHistory } from "./history.js";
import type { NameState, Participant } from "./model.js";

/** Columns padded to their widest cell; the last one is not padded. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n") + "\n";
}

/** A value as one short line: control characters escaped, long ones cut. */
export function shown(value: string, max = 40): string {
  const text = JSON.stringify(value).slice(1, -1);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

const ttl = (p: Participant): string => (p.ttl === undefined ? "?" : p.ttl < 0 ? "gone" : `${p.ttl}s`);

export function statusTable(names: NameState[]): string {
  if (names.length === 0) return "no election, lock or semaphore here\n";
  const rows: string[][] = [];
  for (const n of names) {
    const kind = n.limit === undefined ? n.kind : `${n.kind} (limit ${n.limit})`;
    const people = [
      ...n.holders.map((p) => ["holder", p] as const),
      ...n.waiters.map((p, i) => [`waiter ${i + 1}`, p] as const),
    ];
    people.forEach(([role, p], i) =>
      rows.push([i === 0 ? n.name : "", i === 0 ? kind : "", role, shown(p.value), p.token, p.leaseHex, ttl(p)]),
    );
  }
  return table(["NAME", "KIND", "ROLE", "VALUE", "TOKEN", "LEASE", "TTL"], rows);
}

export function statusJson(revision: string, names: NameState[]): string {
  return JSON.stringify({ revision, names }, null, 2) + "\n";
}

export function historyTable(h: NameHistory): string {
  const head = `${h.name}${h.kind ? ` (${h.kind})` : ""}: terms from revision ${h.fromRevision} to ${h.toRevision}\n`;
  if (h.terms.length === 0) return `${head}no term in the retained history\n`;
  const rows = h.terms.map((t) => [
    t.holder,
    shown(t.value),
    t.token,
    `${t.beganBefore ? "≤" : ""}${t.began}`,
    t.ended ?? "-",
    t.how === "deleted" ? "key deleted, lease alive" : t.how === "unknown" ? "deleted or lease ended" : "holds",
  ]);
  return head + table(["HOLDER", "VALUE", "TOKEN", "BEGAN", "ENDED", "HOW"], rows);
}

export function historyJson(h: NameHistory): string {
  return JSON.stringify(h, null, 2) + "\n";
}
