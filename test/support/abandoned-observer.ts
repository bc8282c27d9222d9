/**
 * A library user that stops pulling an observe() stream without ending it, then closes everything else.
 * Hosts and name in ENDPOINTS and NAME. Prints "observing" once it holds the first item; on the line
 * "close-observer" from stdin it closes the observer's session (another session of the client stays
 * open) and prints "observer-closed"; on "close-all" it closes that one and the client, prints
 * "closed", and must then exit by itself; on "close-client" it closes only the client (both sessions left
 * open), prints "client-closed", and must then exit by itself too. TTL (seconds, default 10) from the
 * environment.
 */
import { createInterface } from "node:readline";
import { Etcd3 } from "etcd3";
import { Election, Session } from "../../src/index.js";

const client = new Etcd3({ hosts: process.env.ENDPOINTS!.split(",") });
const ttl = Number(process.env.TTL ?? 10);
const observerSession = await Session.create(client, { ttl });
const other = await Session.create(client, { ttl });
const stream = new Election(observerSession, process.env.NAME!).observe();
await stream.next(); // left at its yield from here on: no next(), no return()
console.log("observing");

const input = createInterface({ input: process.stdin });
for await (const line of input) {
  if (line === "close-observer") {
    await observerSession.close();
    console.log("observer-closed");
  } else if (line === "close-all") {
    await other.close();
    client.close();
    input.close();
    process.stdin.destroy();
    console.log("closed");
    break;
  } else if (line === "close-client") {
    client.close();
    input.close();
    process.stdin.destroy();
    console.log("client-closed");
    break;
  }
}
