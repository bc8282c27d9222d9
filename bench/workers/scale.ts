/**
 * One part of the scale benchmark (bench/scale.ts) in a fresh process, so its memory per holder is
 * measured from this process's own baseline. Prints the part's result as one "result" event; process
 * warnings are events too (the benchmark fails on them).
 */
import { createInterface } from "node:readline";
import { makeEnv } from "../env.js";
import { runScalePart } from "../scale.js";
import { emit, watchProcess, workerConfig } from "./protocol.js";

watchProcess();
const config = workerConfig();
const scale = config.scale;
if (!scale) throw new Error("the scale worker needs its part and sizes");
const env = makeEnv({
  quick: scale.quick,
  endpoints: config.endpoints,
  metricsEndpoint: scale.metricsEndpoint,
  log: (m) => console.error(`[bench] ${m}`),
  run: config.name.replace(/^bench\//, ""),
});
// Started ahead of its turn (starting a process takes a while): runs once told to.
emit("ready");
await new Promise<void>((resolve) => createInterface({ input: process.stdin }).once("line", () => resolve()));
try {
  emit("result", { result: await runScalePart(env, scale.part, scale.sizes) });
} finally {
  env.closeClients();
}
// etcd3 may leave a timer behind (see run.ts); the result is out.
process.exit(0);
