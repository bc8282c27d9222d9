/**
 * examples/kubernetes/etcd-tls.yaml's Job turns on etcd's authentication with users named by the client
 * certificates' CNs. Its script, taken from the manifest, runs here as the Job runs it (node, the etcd3
 * client from node_modules) against an etcd with client certificates required, with certificates of the
 * CNs the README has you make.
 */
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { IJob } from "kubernetes-models/batch/v1";
import { parseAllDocuments } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Election, Session } from "../../src/index.js";
import { faultsUnavailableReason, startEtcd, type EtcdEnv } from "../support/index.js";

const ROOT_DIR = fileURLToPath(new URL("../../", import.meta.url));
const job = parseAllDocuments(readFileSync(join(ROOT_DIR, "examples/kubernetes/etcd-tls.yaml"), "utf8"))
  .map((d) => d.toJS() as IJob & { kind: string })
  .find((d) => d.kind === "Job")!;
const container = job.spec!.template.spec!.containers[0]!;
const jobEnv = (name: string): string => container.env!.find((e) => e.name === name)!.value!;

/** A client certificate with this CN from the harness's CA, as ca.crt, tls.crt and tls.key (a Secret's keys). */
function certificate(caDir: string, cn: string): string {
  const dir = mkdtempSync(join(tmpdir(), "etcd-election-cn-"));
  const openssl = (...args: string[]): void => void execFileSync("openssl", args, { cwd: dir, stdio: "ignore" });
  openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "tls.key");
  openssl("req", "-new", "-key", "tls.key", "-out", "tls.csr", "-subj", `/CN=${cn}`);
  writeFileSync(join(dir, "tls.ext"), "extendedKeyUsage=clientAuth\n");
  openssl(
    "x509",
    "-req",
    "-in",
    "tls.csr",
    "-CA",
    join(caDir, "ca.pem"),
    "-CAkey",
    join(caDir, "ca.key"),
    "-CAcreateserial",
    "-CAserial",
    join(dir, "ca.srl"),
    "-out",
    "tls.crt",
    "-days",
    "1",
    "-extfile",
    "tls.ext",
  );
  writeFileSync(join(dir, "ca.crt"), readFileSync(join(caDir, "ca.pem")));
  return dir;
}

describe.skipIf(!!faultsUnavailableReason)(
  "etcd-tls.yaml's authentication Job, against etcd with client certificates required",
  () => {
    let etcd: EtcdEnv;
    const dirs: string[] = [];
    beforeAll(async () => {
      etcd = await startEtcd({ tls: true });
    });
    afterAll(async () => {
      await etcd?.close();
      for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    });

    /** The Job's container: its command and script, its env with this cluster's endpoints and root's certificate. */
    const runJob = (certDir: string) =>
      new Promise<{ code: number | null; out: string }>((resolve) => {
        const [bin, ...args] = [...container.command!, ...container.args!];
        expect(bin).toBe("node");
        const child = spawn(process.execPath, args, {
          cwd: ROOT_DIR, // the image's /app: node_modules with etcd3
          env: {
            PATH: process.env.PATH,
            CERT_DIR: certDir,
            ETCD_ENDPOINTS: etcd.endpoints.map((e) => e.replace(/^https:\/\//, "")).join(","),
            WORKER_USER: jobEnv("WORKER_USER"),
            WORKER_PREFIX: jobEnv("WORKER_PREFIX"),
          },
          stdio: ["ignore", "pipe", "pipe"],
        });
        let out = "";
        child.stdout.on("data", (d: Buffer) => (out += d.toString()));
        child.stderr.on("data", (d: Buffer) => (out += d.toString()));
        child.once("exit", (code) => resolve({ code, out }));
      });

    it("turns authentication on, idempotently; the workers' CN may campaign under its prefix and nothing else; other CNs may do nothing", async () => {
      const caDir = etcd.security.tls!.dir;
      const root = certificate(caDir, "root");
      const worker = certificate(caDir, jobEnv("WORKER_USER"));
      dirs.push(root, worker);
      const client = (dir: string) =>
        etcd.client({
          credentials: {
            rootCertificate: readFileSync(join(dir, "ca.crt")),
            certChain: readFileSync(join(dir, "tls.crt")),
            privateKey: readFileSync(join(dir, "tls.key")),
          },
        });

      for (let run = 1; run <= 2; run++) {
        const { code, out } = await runJob(root);
        expect(code, `run ${run}:\n${out}`).toBe(0);
        expect(out).toContain("etcd authentication is on");
      }

      // The worker's keys: ELECTION (worker.yaml) and its heartbeat, under the Job's prefix.
      const prefix = jobEnv("WORKER_PREFIX");
      const asWorker = client(worker);
      const session = await Session.create(asWorker, { ttl: 5 });
      try {
        const term = await new Election(session, `${prefix}worker`).campaign("pod-0");
        await term
          .txn()
          .then(asWorker.put(`${prefix}worker-heartbeat`).value("pod-0"))
          .commit();
        await term.resign();
      } finally {
        await session.close();
      }
      await expect(asWorker.put("elsewhere").value("x")).rejects.toThrow(/permission denied/i);
      // The harness's own client certificate names no user: refused once authentication is on.
      await expect(etcd.client().put(`${prefix}x`).value("x")).rejects.toThrow(
        /user name not found|permission denied/i,
      );
    });
  },
);
