/**
 * Terms drawn as a timeline: one lane per holder, each term a bar labelled with its fencing token (its
 * colour follows the token, so successive holders differ). Hand-written SVG, no dependencies. The fault
 * suite's timeline (test/chaos/timeline.ts) draws its lanes and term bars with these same functions.
 */

export const PALETTE = ["#4c78a8", "#f58518", "#54a24b", "#b279a2", "#e45756", "#72b7b2", "#9d755d", "#eeca3b"];
/** Height of a lane, px. */
export const LANE = 30;

/** What XML 1.0 does not allow in a document at all, even escaped: dropped. */
const XML_INVALID =
  // eslint-disable-next-line no-control-regex
  /[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** Text for an SVG element or attribute: markup escaped, characters XML forbids dropped. */
export const esc = (s: string): string =>
  s.replace(XML_INVALID, "").replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
/** A tooltip. */
export const title = (s: string): string => `<title>${esc(s)}</title>`;

export const tokenColor = (token: string): string => PALETTE[Number(BigInt(token) % BigInt(PALETTE.length))]!;

/** A lane's label and its ruled line, the lane's top at `y`. */
export const laneSvg = (label: string, y: number, left: number, right: number): string =>
  `<text x="4" y="${y + 15}">${esc(label)}</text><line x1="${left}" x2="${right}" y1="${y + LANE - 2}" y2="${y + LANE - 2}" stroke="#eee"/>`;

/** A term as a bar in the lane whose top is `y`, its token written on it when it fits. */
export function termBarSvg(x1: number, width: number, y: number, token: string, tip: string): string {
  const w = Math.max(1, width);
  return (
    `<g>${title(tip)}<rect x="${x1}" y="${y + 3}" width="${w}" height="14" fill="${tokenColor(token)}"/>` +
    (w > 6 * token.length + 4 ? `<text x="${x1 + 2}" y="${y + 14}" fill="white">${esc(token)}</text>` : "") +
    `</g>`
  );
}

export interface TimelineBar {
  lane: string;
  start: number;
  end: number;
  token: string;
  tip: string;
  /** Still going at the end of the axis: drawn open-ended. */
  open?: boolean;
}

/** A whole timeline over [from, to] on an axis labelled by `tick` (e.g. revisions). */
export function timelineSvg(opts: {
  heading: string;
  bars: TimelineBar[];
  from: number;
  to: number;
  axisLabel: string;
  width?: number;
  left?: number;
}): string {
  const width = opts.width ?? 1000;
  const left = opts.left ?? Math.min(260, 12 + 6 * Math.max(8, ...opts.bars.map((b) => b.lane.length)));
  const right = 16;
  const top = 30;
  const span = Math.max(1, opts.to - opts.from);
  const x = (v: number): number =>
    left + ((Math.min(Math.max(v, opts.from), opts.to) - opts.from) / span) * (width - left - right);
  const lanes = [...new Set(opts.bars.map((b) => b.lane))];
  const laneY = new Map(lanes.map((l, i) => [l, top + i * LANE]));
  const bottom = top + lanes.length * LANE;
  const height = bottom + 40;
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="10">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="4" y="16" font-size="12">${esc(opts.heading)}</text>`,
    ...lanes.map((l) => laneSvg(l, laneY.get(l)!, left, width - right)),
    ...opts.bars.map((b) => termBarSvg(x(b.start), x(b.end) - x(b.start), laneY.get(b.lane)!, b.token, b.tip)),
    `<line x1="${left}" x2="${width - right}" y1="${bottom + 4}" y2="${bottom + 4}" stroke="#333"/>`,
  ];
  const step = Math.max(1, Math.ceil(span / 10));
  for (let v = opts.from; v <= opts.to; v += step) {
    out.push(
      `<line x1="${x(v)}" x2="${x(v)}" y1="${bottom + 4}" y2="${bottom + 9}" stroke="#333"/><text x="${x(v)}" y="${bottom + 20}" text-anchor="middle">${v}</text>`,
    );
  }
  out.push(`<text x="${left}" y="${height - 4}" fill="#555">${esc(opts.axisLabel)}</text>`, `</svg>`);
  return out.join("\n") + "\n";
}
