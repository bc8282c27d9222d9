/**
 * A worker process running etcd3's own Election, as its users would: reports `elected`, and `lost` on
 * the campaign's error event (etcd3 emits it when its lease is lost); SIGTERM resigns, then exits.
 */
import { Etcd3 } from "etcd3";
import { emit, watchProcess, workerConfig } from "./protocol.js";

watchProcess();
const config = workerConfig();
const client = new Etcd3({ hosts: config.endpoints });
const campaign = client.election(config.name, config.ttl).campaign(config.identity);
campaign.on("elected", () => emit("elected"));
campaign.on("error", (err: Error) => emit("lost", { message: err.message }));
process.once("SIGTERM", () => {
  campaign
    .resign()
    .catch(() => undefined)
    .finally(() => {
      emit("exiting");
      client.close();
      process.exit(0); // etcd3's Lease may leave a timer behind after the revoke (see run.ts)
    });
});
emit("ready");
