/**
 * A real worker process for tests that pause (SIGSTOP) or kill a holder. Config comes in WORKER_CONFIG;
 * it reports events as JSON lines on stdout and takes commands as JSON lines on stdin.
 */
import { createInterface } from "node:readline";
import { Etcd3 } from "etcd3";
import { Election, Mutex, Session, type Lock, type Term } from "../../src/index.js";

export interface WorkerConfig {
  hosts: string[];
  ttl: number;
  role: "session" | "campaign" | "lock";
  name?: string;
  value?: string;
}

export type WorkerCommand = { cmd: "write"; key: string; value: string } | { cmd: "exit" };

const config = JSON.parse(process.env.WORKER_CONFIG ?? "{}") as WorkerConfig;
const emit = (event: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify({ ...event, at: Date.now() })}\n`);
};
const codeOf = (e: unknown): string => (e as { code?: string }).code ?? String(e);

const client = new Etcd3({ hosts: config.hosts });
const session = await Session.create(client, { ttl: config.ttl });
session.on("suspended", () => emit({ type: "suspended" }));
session.on("lost", (e) => emit({ type: "lost", code: e.code }));
session.on("renewed", (roundTripMs) => emit({ type: "renewed", roundTripMs }));
emit({ type: "session", leaseId: session.leaseId, ttl: session.ttl });

let holder: Term | Lock | undefined;
if (config.role === "campaign") holder = await new Election(session, config.name!).campaign(config.value ?? "worker");
else if (config.role === "lock") holder = await new Mutex(session, config.name!).lock();
if (holder) {
  const held = holder;
  // Listen before telling the test we hold, so that no end of the hold can go unreported.
  const ended = (): void => emit({ type: "hold-ended", code: codeOf(held.signal.reason) });
  if (held.signal.aborted) ended();
  else held.signal.addEventListener("abort", ended, { once: true });
  emit({ type: "holding", token: held.token.toString(), key: held.key });
}

for await (const line of createInterface({ input: process.stdin })) {
  const cmd = JSON.parse(line) as WorkerCommand;
  if (cmd.cmd === "write") {
    try {
      await holder!.txn().then(client.put(cmd.key).value(cmd.value)).commit();
      emit({ type: "write", ok: true });
    } catch (e) {
      emit({ type: "write", ok: false, code: codeOf(e) });
    }
  } else if (cmd.cmd === "exit") {
    await session.close();
    client.close();
    emit({ type: "exited" });
    process.exit(0);
  }
}
