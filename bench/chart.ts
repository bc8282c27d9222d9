/**
 * The benchmark's chart, as hand-written SVG (no dependencies): panels of rows, each row one
 * distribution on a shared axis: a box from p25 to p75, whiskers to p1 and p99, the median as a bar,
 * and every sample as a dot when there are few.
 */
import { quantile } from "./stats.js";

export interface ChartRow {
  label: string;
  impl: "floor" | "ours" | "etcd3" | "raw";
  samples: readonly number[];
}

export interface ChartPanel {
  title: string;
  unit: string;
  scale: "log" | "linear";
  rows: ChartRow[];
  /** A vertical reference line (e.g. etcd's lease expiry at 0). */
  marker?: { at: number; label: string };
}

const COLORS: Record<ChartRow["impl"], string> = {
  floor: "#6b7280",
  raw: "#9ca3af",
  ours: "#2563eb",
  etcd3: "#ea580c",
};
const WIDTH = 900;
const LABEL_W = 330;
const PLOT_W = WIDTH - LABEL_W - 30;
const ROW_H = 22;
const FONT = 'font-family="system-ui, -apple-system, Segoe UI, sans-serif"';

export function renderChart(title: string, subtitle: string, panels: ChartPanel[]): string {
  const parts: string[] = [];
  let y = 50;
  for (const panel of panels) {
    const { svg, height } = renderPanel(panel, y);
    parts.push(svg);
    y += height + 30;
  }
  const legend = (["ours", "etcd3", "floor"] as const)
    .map(
      (impl, i) =>
        `<g transform="translate(${LABEL_W + i * 130},${y})"><rect width="12" height="12" fill="${COLORS[impl]}"/><text x="18" y="10" font-size="12" ${FONT}>${impl === "ours" ? "etcd-election" : impl === "etcd3" ? "etcd3" : "floor (etcd3 put/delete/get)"}</text></g>`,
    )
    .join("");
  const height = y + 30;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="16" y="22" font-size="16" font-weight="600" ${FONT}>${esc(title)}</text>`,
    `<text x="16" y="40" font-size="11" fill="#4b5563" ${FONT}>${esc(subtitle)}</text>`,
    ...parts,
    legend,
    `</svg>`,
    "",
  ].join("\n");
}

function renderPanel(panel: ChartPanel, top: number): { svg: string; height: number } {
  const values = panel.rows
    .flatMap((r) => [...r.samples])
    .filter((v) => Number.isFinite(v) && (panel.scale === "linear" || v > 0));
  if (panel.marker) values.push(panel.marker.at);
  const [lo, hi] = range(values, panel.scale);
  const x = (v: number): number => {
    const t =
      panel.scale === "log"
        ? (Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))
        : (v - lo) / (hi - lo);
    return LABEL_W + Math.max(0, Math.min(1, t)) * PLOT_W;
  };
  const plotTop = top + 22;
  const plotH = panel.rows.length * ROW_H;
  const out: string[] = [
    `<text x="16" y="${top + 12}" font-size="13" font-weight="600" ${FONT}>${esc(panel.title)}</text>`,
  ];
  // Grid and ticks.
  for (const t of ticks(lo, hi, panel.scale)) {
    const tx = x(t);
    out.push(`<line x1="${f(tx)}" y1="${plotTop}" x2="${f(tx)}" y2="${plotTop + plotH}" stroke="#e5e7eb"/>`);
    out.push(
      `<text x="${f(tx)}" y="${plotTop + plotH + 14}" font-size="10" text-anchor="middle" fill="#4b5563" ${FONT}>${fmt(t)}</text>`,
    );
  }
  out.push(
    `<text x="${LABEL_W + PLOT_W}" y="${plotTop + plotH + 28}" font-size="10" text-anchor="end" fill="#4b5563" ${FONT}>${esc(panel.unit)}${panel.scale === "log" ? " (log scale)" : ""}</text>`,
  );
  if (panel.marker) {
    const mx = x(panel.marker.at);
    out.push(
      `<line x1="${f(mx)}" y1="${plotTop - 4}" x2="${f(mx)}" y2="${plotTop + plotH}" stroke="#111827" stroke-dasharray="4 3"/>`,
    );
    // Under the axis, where it cannot run into the panel's title.
    out.push(
      `<text x="${f(mx)}" y="${plotTop + plotH + 28}" font-size="10" text-anchor="middle" fill="#111827" ${FONT}>${esc(panel.marker.label)}</text>`,
    );
  }
  panel.rows.forEach((row, i) => {
    const cy = plotTop + i * ROW_H + ROW_H / 2;
    const color = COLORS[row.impl];
    out.push(
      `<text x="${LABEL_W - 8}" y="${cy + 4}" font-size="11" text-anchor="end" ${FONT}>${esc(row.label)}</text>`,
    );
    const s = [...row.samples]
      .filter((v) => Number.isFinite(v) && (panel.scale === "linear" || v > 0))
      .sort((a, b) => a - b);
    if (s.length === 0) return;
    const q = (p: number): number => quantile(s, p);
    out.push(
      `<line x1="${f(x(q(0.01)))}" y1="${cy}" x2="${f(x(q(0.99)))}" y2="${cy}" stroke="${color}" stroke-width="1.5"/>`,
    );
    out.push(
      `<rect x="${f(x(q(0.25)))}" y="${cy - 6}" width="${f(Math.max(1, x(q(0.75)) - x(q(0.25))))}" height="12" fill="${color}" fill-opacity="0.25" stroke="${color}"/>`,
    );
    if (s.length <= 60)
      for (const v of s) out.push(`<circle cx="${f(x(v))}" cy="${cy}" r="2.5" fill="${color}" fill-opacity="0.7"/>`);
    out.push(
      `<line x1="${f(x(q(0.5)))}" y1="${cy - 8}" x2="${f(x(q(0.5)))}" y2="${cy + 8}" stroke="${color}" stroke-width="3"/>`,
    );
    out.push(
      `<text x="${f(Math.min(LABEL_W + PLOT_W + 26, x(q(0.99)) + 6))}" y="${cy + 4}" font-size="10" fill="#374151" ${FONT}>${fmt(q(0.5))}</text>`,
    );
  });
  return { svg: out.join("\n"), height: 22 + plotH + 32 };
}

function range(values: number[], scale: "log" | "linear"): [number, number] {
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return scale === "log" ? [1, 10] : [0, 1];
  if (scale === "log") return [10 ** Math.floor(Math.log10(lo)), 10 ** Math.ceil(Math.log10(hi))];
  const pad = (hi - lo) * 0.05 || 1;
  lo -= pad;
  hi += pad;
  const step = niceStep((hi - lo) / 8);
  return [Math.floor(lo / step) * step, Math.ceil(hi / step) * step];
}

function ticks(lo: number, hi: number, scale: "log" | "linear"): number[] {
  const out: number[] = [];
  if (scale === "log") {
    for (let d = lo; d <= hi * 1.0001; d *= 10) for (const m of [1, 2, 5]) if (d * m <= hi * 1.0001) out.push(d * m);
    return out;
  }
  const step = niceStep((hi - lo) / 8);
  for (let v = Math.ceil(lo / step) * step; v <= hi + step / 1000; v += step) out.push(Math.round(v / step) * step);
  return out;
}

function niceStep(raw: number): number {
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

function fmt(v: number): string {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1000) return `${Number((v / 1000).toPrecision(3))}k`;
  if (a >= 10) return String(Math.round(v));
  if (a >= 1) return String(Number(v.toFixed(2)));
  return String(Number(v.toPrecision(2)));
}

const f = (v: number): string => v.toFixed(1);
const esc = (s: string): string => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
