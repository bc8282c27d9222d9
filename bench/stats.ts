/** Latency samples and what the report says about them. */
import { prng, shuffled } from "../test/support/prng.js";

export interface Summary {
  n: number;
  p50: number;
  p99: number;
  /** The samples, sorted (for the chart). */
  sorted: number[];
  /** Operations per second over the time the samples took, back to back (NaN when not meaningful). */
  perSec: number;
}

/** The q-quantile (0..1) of sorted samples, nearest rank. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

export function summarize(samples: readonly number[]): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  const sum = sorted.reduce((a, b) => a + b, 0);
  return {
    n: sorted.length,
    p50: quantile(sorted, 0.5),
    p99: quantile(sorted, 0.99),
    sorted,
    perSec: sorted.length === 0 ? Number.NaN : (sorted.length / sum) * 1000,
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Wall-clock milliseconds with sub-millisecond precision, comparable across processes of one machine. */
export const wallMs = (): number => performance.timeOrigin + performance.now();

export interface Interleaved {
  /** Samples per path, in ms. */
  samples: Map<string, number[]>;
}

/**
 * Runs every path once per round, in a shuffled order each round (seeded, so runs compare), after
 * `warmup` rounds that are not recorded: no path always follows the same one (a rotation would keep
 * each path's predecessor, and with it whatever that one leaves running). A path that resolves a number
 * measured itself (it had setup to do first); otherwise its whole run is timed.
 */
export async function interleave(
  paths: Record<string, () => Promise<number | void>>,
  options: { rounds: number; warmup: number },
): Promise<Interleaved> {
  const names = Object.keys(paths);
  const samples = new Map(names.map((n) => [n, [] as number[]]));
  const random = prng(names.length);
  for (let round = -options.warmup; round < options.rounds; round++) {
    for (const name of shuffled(names, random)) {
      const start = performance.now();
      const measured = await paths[name]!();
      const ms = typeof measured === "number" ? measured : performance.now() - start;
      if (round >= 0) samples.get(name)!.push(ms);
    }
  }
  return { samples };
}

/** "1.23" for a ratio, "–" when either side is missing. */
export function ratio(a: number | undefined, b: number | undefined, digits = 2): string {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return "–";
  return `${(a / b).toFixed(digits)}×`;
}

export function ms(value: number | undefined, digits = 2): string {
  if (value === undefined || !Number.isFinite(value)) return "–";
  return value.toFixed(digits);
}
