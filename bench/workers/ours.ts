/**
 * A worker process running etcd-election's LeaderElector, as a service would: reports when it leads and
 * when its term's signal aborts; SIGTERM stops it gracefully (resign, then exit).
 */
import { Etcd3 } from "etcd3";
import { LeaderElector } from "../../src/index.js";
import { emit, watchProcess, workerConfig } from "./protocol.js";

watchProcess();
const config = workerConfig();
const client = new Etcd3({ hosts: config.endpoints });
const stop = new AbortController();
process.once("SIGTERM", () => stop.abort());

const elector = new LeaderElector({
  client,
  name: config.name,
  identity: config.identity,
  ttl: config.ttl,
  logger: false,
  onStartedLeading: async (term) => {
    emit("elected", { token: term.token.toString() });
    await new Promise<void>((resolve) => {
      const onAbort = (): void => {
        const reason = term.signal.reason as { code?: string; message?: string } | undefined;
        emit("lost", { code: reason?.code, message: reason?.message });
        resolve();
      };
      if (term.signal.aborted) onAbort();
      else term.signal.addEventListener("abort", onAbort, { once: true });
    });
  },
});
emit("ready");
await elector.run({ signal: stop.signal });
emit("exiting");
client.close();
process.exit(0);
