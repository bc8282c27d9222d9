/** Output for people (aligned tables) and for scripts (JSON, with bigints as strings). */
import type { NameHistory } from "./history.js";
import type { NameState, Participant } from "./model.js";
import { timelineSvg } from "./timeline.js";

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

/**
 * What a terminal could act on, escaped: C0 and C1 controls (ESC, CSI U+009B, newlines), DEL, the
 * backslash (so an escape reads back unambiguously), bidirectional overrides and isolates, line and
 * paragraph separators, and lone surrogates.
 */
const UNSAFE =
  // eslint-disable-next-line no-control-regex
  /[\u0000-\u001f\u007f-\u009f\\\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
const ESCAPES: Record<string, string> = { "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\e" };

/** Text from etcd (a name, key or value) made safe to print: see UNSAFE; `\xNN` / `\uNNNN` otherwise. */
export function escaped(text: string): string {
  return text.replace(UNSAFE, (c) => {
    const code = c.charCodeAt(0);
    return (
      ESCAPES[c] ??
      (code < 0x100 ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16).padStart(4, "0")}`)
    );
  });
}

/** A value as one short line: escaped, long ones cut. */
export function shown(value: string, max = 40): string {
  const text = escaped(value);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

const ttl = (p: Participant): string =>
  p.lease === "0" ? "-" : p.ttl === undefined ? "?" : p.ttl < 0 ? "gone" : `${p.ttl}s`;

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
      rows.push([
        i === 0 ? escaped(n.name) : "",
        i === 0 ? kind : "",
        role,
        shown(p.value),
        p.token,
        p.leaseHex,
        ttl(p),
      ]),
    );
  }
  return table(["NAME", "KIND", "ROLE", "VALUE", "TOKEN", "LEASE", "TTL"], rows);
}

/**
 * JSON whose strings carry no character a terminal would act on: JSON.stringify escapes C0 controls and
 * lone surrogates; DEL, C1 controls, bidirectional marks and line/paragraph separators are written as
 * \uNNNN too (still valid JSON, the same values once parsed).
 */
export function safeJson(value: unknown, indent?: number): string {
  return JSON.stringify(value, null, indent).replace(
    /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

export function statusJson(revision: string, names: NameState[]): string {
  return safeJson({ revision, names }, 2) + "\n";
}

export function historyTable(h: NameHistory): string {
  const head = `${escaped(h.name)}${h.kind ? ` (${h.kind})` : ""}: terms from revision ${h.fromRevision} to ${h.toRevision}\n`;
  if (h.terms.length === 0) return `${head}no term in the retained history\n`;
  const rows = h.terms.map((t) => [
    t.holder,
    shown(t.value),
    t.token,
    `${t.beganBefore ? "≤" : ""}${t.began}`,
    t.ended ?? "-",
    t.how === "deleted"
      ? t.lease === "0"
        ? "key deleted"
        : "key deleted, lease alive"
      : t.how === "unknown"
        ? "deleted or lease ended"
        : "holds",
  ]);
  return head + table(["HOLDER", "VALUE", "TOKEN", "BEGAN", "ENDED", "HOW"], rows);
}

export function historyJson(h: NameHistory): string {
  return safeJson(h, 2) + "\n";
}

/** A message as one line (gRPC's span lines, TLS alerts), what a terminal would act on escaped. */
export const oneLine = (text: string): string => escaped(text.replace(/\s*\n\s*/g, " ").trim());

/** The terms as an SVG timeline: a lane per holder, a bar per term with its token, on a revision axis. */
export function historySvg(h: NameHistory): string {
  const to = Number(h.toRevision);
  return timelineSvg({
    heading: `${h.name}${h.kind ? ` (${h.kind})` : ""}: terms, revisions ${h.fromRevision}–${h.toRevision}`,
    from: Number(h.fromRevision),
    to,
    axisLabel: "etcd revision (revisions carry no time)",
    bars: h.terms.map((t) => ({
      lane: t.value && h.kind === "election" ? `${t.holder} ${t.value}` : t.holder,
      start: Number(t.began),
      end: t.ended === undefined ? to : Number(t.ended),
      token: t.token,
      tip: `${t.key} token ${t.token}: revision ${t.began}–${t.ended ?? "now"}${t.value ? `, value ${t.value}` : ""}; ${t.how}`,
    })),
  });
}
