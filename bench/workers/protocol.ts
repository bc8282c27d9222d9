/**
 * What a bench worker (a leader or standby in its own process) tells the benchmark: one JSON line per
 * event on stdout, stamped with the wall clock (sub-millisecond, comparable across processes of one
 * machine). A process warning is an event too: the benchmark fails on any.
 */
import { wallMs } from "../stats.js";

export interface WorkerConfig {
  /** etcd endpoints ("host:port"), possibly through a proxy. */
  endpoints: string[];
  name: string;
  identity: string;
  ttl: number;
  /** The candidate worker's kind of candidate. */
  candidate?: "ours-election" | "etcd3-election";
  /** The scale worker's part and sizes. */
  scale?: {
    part: ScalePart;
    sizes: ScaleSizes;
    metricsEndpoint: string;
    quick: boolean;
  };
}

/** How large the scale benchmark is (bench/scale.ts); the scale worker runs one part of it. */
export interface ScaleSizes {
  holders: number;
  waiters: number;
  concurrency: number;
  handovers: number;
  holdersTtl: number;
  waitersTtl: number;
}

export type ScalePart = "locks" | "campaigns" | "waiters";

export type WorkerEventType = "ready" | "elected" | "lost" | "warning" | "exiting" | "result" | "resigned";

export function emit(type: WorkerEventType, fields: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ type, at: wallMs(), ...fields })}\n`);
}

/** The system-wide monotonic clock, in ms: the same in every process of a machine. */
export { mono as monoMs } from "../../test/support/mono.js";

export function workerConfig(): WorkerConfig {
  const raw = process.env.BENCH_WORKER;
  if (!raw) throw new Error("BENCH_WORKER is not set: bench workers are started by the benchmark");
  return JSON.parse(raw) as WorkerConfig;
}

/**
 * Reports process warnings (the benchmark fails on them), and exits when the benchmark goes away (it
 * holds this process's stdin: its end means the benchmark ended, however), so no worker outlives it.
 */
export function watchProcess(): void {
  process.on("warning", (w) => emit("warning", { name: w.name, message: w.message }));
  process.stdin.on("end", () => process.exit(0));
  process.stdin.resume();
}
