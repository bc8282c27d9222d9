/**
 * A candidate of a hand-over line (bench/handover.ts), in a process of its own as a standby is. Commands
 * on stdin, one JSON line each: "join" campaigns (or asks for the lock) and reports "elected" with the
 * system-wide monotonic time it got it; "resign" resigns (unlocks) and, once that is confirmed, reports
 * "resigned" with the time it called resign() (nothing is written on the way, so the report costs the
 * hand-over nothing); "exit" closes everything and exits.
 */
import { createInterface } from "node:readline";
import { Etcd3 } from "etcd3";
import { Election, Session } from "../../src/index.js";
import { emit, monoMs, watchProcess, workerConfig } from "./protocol.js";

watchProcess();
const config = workerConfig();
const client = new Etcd3({ hosts: config.endpoints });
let held: { release(): Promise<unknown> } | undefined;
let join: () => void;
let close: () => Promise<void> = async () => {};

const elected = (holder: { release(): Promise<unknown> }): void => {
  const at = monoMs();
  held = holder;
  emit("elected", { mono: at });
};

if (config.candidate === "etcd3-election") {
  const election = client.election(config.name, config.ttl);
  join = () => {
    const campaign = election.campaign(config.identity);
    campaign.on("elected", () => elected({ release: () => campaign.resign() }));
    campaign.on("error", (err: Error) => emit("lost", { message: err.message }));
  };
} else {
  const session = await Session.create(client, { ttl: config.ttl });
  close = () => session.close();
  const election = new Election(session, config.name);
  join = () =>
    void election.campaign(config.identity).then(elected, (err: unknown) => emit("lost", { message: String(err) }));
}

createInterface({ input: process.stdin }).on("line", (line) => {
  const { cmd } = JSON.parse(line) as { cmd: string };
  if (cmd === "join") join();
  else if (cmd === "resign") {
    const holder = held;
    held = undefined;
    const at = monoMs();
    void holder?.release().then(() => emit("resigned", { mono: at }));
  } else if (cmd === "exit") {
    void close().finally(() => {
      client.close();
      process.exit(0);
    });
  }
});
emit("ready");
