import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { existsSync } from "node:fs";
import { Service, ServiceAccount, type IServiceAccount } from "kubernetes-models/v1";
import { Job, type IJob } from "kubernetes-models/batch/v1";
import { NetworkPolicy, type INetworkPolicy } from "kubernetes-models/networking.k8s.io/v1";
import { Deployment, StatefulSet, type IDeployment, type IStatefulSet } from "kubernetes-models/apps/v1";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1";
import type { IService } from "kubernetes-models/v1";
import { parseAllDocuments } from "yaml";
import { describe, expect, it } from "vitest";
import { METRICS_PATH } from "../../examples/worker-http.js";
import { healthPaths } from "../../src/index.js";
import { etcdClusterProblems, type EtcdCluster } from "../support/etcd-cluster-crd.js";
import { manifestTypeErrors, type TypedManifest } from "../support/typecheck-manifests.js";

const DIR = fileURLToPath(new URL("../../examples/kubernetes/", import.meta.url));
/** worker.yaml's lines marked "#tls", turned on as its header says. */
const withTls = (text: string): string => text.replace(/^#tls/gm, "    ");

interface Manifest {
  file: string;
  index: number;
  doc: { apiVersion: string; kind: string; metadata?: { name?: string }; [k: string]: unknown };
}

function load(file: string, transform: (text: string) => string = (t) => t): Manifest[] {
  const docs = parseAllDocuments(transform(readFileSync(DIR + file, "utf8")));
  return docs.map((d, index) => {
    expect([...d.errors, ...d.warnings], `${file} #${index}`).toEqual([]);
    return { file, index, doc: d.toJS() as Manifest["doc"] };
  });
}
const KUSTOMIZATION = "kustomization.yaml";
const yamlFiles = readdirSync(DIR).filter((f) => f.endsWith(".yaml") && f !== KUSTOMIZATION);
const variants: Manifest[][] = [
  ...yamlFiles.map((f) => load(f)),
  load("worker.yaml", withTls).map((m) => ({ ...m, file: "worker.yaml (#tls on)" })),
];
const all = variants.flat();
const one = <T>(file: string, kind: string): T => {
  const found = all.filter((m) => m.file === file && m.doc.kind === kind);
  expect(found, `${file}: one ${kind}`).toHaveLength(1);
  return found[0]!.doc as T;
};

/** Each kind the examples use: its kubernetes-models class (schema validation) and its type (unknown fields). */
const KINDS: Record<string, { model?: new (data: never) => { validate(): void }; module: string; type: string }> = {
  "v1/Service": { model: Service, module: "kubernetes-models/v1", type: "IService" },
  "v1/ServiceAccount": { model: ServiceAccount, module: "kubernetes-models/v1", type: "IServiceAccount" },
  "batch/v1/Job": { model: Job, module: "kubernetes-models/batch/v1", type: "IJob" },
  "networking.k8s.io/v1/NetworkPolicy": {
    model: NetworkPolicy,
    module: "kubernetes-models/networking.k8s.io/v1",
    type: "INetworkPolicy",
  },
  "apps/v1/Deployment": { model: Deployment, module: "kubernetes-models/apps/v1", type: "IDeployment" },
  "apps/v1/StatefulSet": { model: StatefulSet, module: "kubernetes-models/apps/v1", type: "IStatefulSet" },
  "policy/v1/PodDisruptionBudget": {
    model: PodDisruptionBudget,
    module: "kubernetes-models/policy/v1",
    type: "IPodDisruptionBudget",
  },
  // No npm package carries the operator's schema: its fields are checked against our transcription.
  "operator.etcd.io/v1alpha1/EtcdCluster": { module: "./etcd-cluster-crd.js", type: "EtcdCluster" },
};

describe("examples/kubernetes", () => {
  it("has the manifests the README describes", () => {
    expect(yamlFiles.sort()).toEqual(["etcd-operator.yaml", "etcd-tls.yaml", "etcd.yaml", "worker.yaml"]);
  });

  it("every manifest passes its Kubernetes schema (kubernetes-models) and has no unknown field", () => {
    const typed: TypedManifest[] = [];
    for (const { file, index, doc } of all) {
      const label = `${file} #${index} ${doc.kind}`;
      const kind = KINDS[`${doc.apiVersion}/${doc.kind}`];
      expect(kind, `${label}: a kind this test knows`).toBeDefined();
      if (kind!.model) expect(() => new kind!.model!(doc as never).validate(), label).not.toThrow();
      typed.push({ label, module: kind!.module, type: kind!.type, value: doc });
    }
    expect(manifestTypeErrors(typed)).toEqual([]);
    // manifestTypeErrors runs the TypeScript checker over every manifest: seconds on a busy machine.
  }, 60_000);

  it("the unknown-field check does catch a misspelt field", () => {
    const worker = structuredClone(one<IDeployment>("worker.yaml", "Deployment"));
    const container = worker.spec!.template.spec!.containers[0]! as unknown as Record<string, unknown>;
    container.readinesProbe = container.readinessProbe;
    delete container.readinessProbe;
    const errors = manifestTypeErrors([
      { label: "misspelt", module: "kubernetes-models/apps/v1", type: "IDeployment", value: worker },
    ]);
    expect(errors.join("\n")).toMatch(/readinesProbe/);
  });

  it("the EtcdCluster uses only fields of the operator's CRD, with values it accepts, and names its members as etcd.yaml does", () => {
    const cluster = one<EtcdCluster>("etcd-operator.yaml", "EtcdCluster");
    expect(etcdClusterProblems(cluster)).toEqual([]);
    // The operator names the StatefulSet and its headless Service after the EtcdCluster: same DNS names.
    const sts = one<IStatefulSet>("etcd.yaml", "StatefulSet");
    expect(cluster.metadata.name).toBe(sts.metadata!.name);
    expect(cluster.metadata.name).toBe(sts.spec!.serviceName);
    expect(cluster.spec.size).toBe(sts.spec!.replicas);
    expect(sts.spec!.template.spec!.containers[0]!.image).toBe(`gcr.io/etcd-development/etcd:${cluster.spec.version}`);
  });

  describe("worker.yaml", () => {
    const deployment = one<IDeployment>("worker.yaml", "Deployment");
    const pod = deployment.spec!.template;
    const container = pod.spec!.containers[0]!;
    const env = (name: string): string | undefined => container.env?.find((e) => e.name === name)?.value;
    const port = Number(env("PORT"));
    const portNamed = (name: unknown) => container.ports?.find((p) => p.name === name);

    it("probes the paths the health handler serves (liveness /healthz, readiness /readyz, never /leader), on the port the worker listens on", () => {
      expect(port).toBeGreaterThan(0);
      expect(container.livenessProbe?.httpGet?.path).toBe(healthPaths.liveness);
      expect(container.readinessProbe?.httpGet?.path).toBe(healthPaths.readiness);
      for (const probe of [container.livenessProbe, container.readinessProbe, container.startupProbe]) {
        if (!probe) continue;
        expect(probe.httpGet?.path).not.toBe(healthPaths.leader);
        expect(portNamed(probe.httpGet?.port)?.containerPort ?? probe.httpGet?.port).toBe(port);
      }
      const annotations = pod.metadata!.annotations!;
      expect(annotations["prometheus.io/path"]).toBe(METRICS_PATH);
      expect(Number(annotations["prometheus.io/port"])).toBe(port);
      const service = one<IService>("worker.yaml", "Service");
      expect(portNamed(service.spec!.ports![0]!.targetPort)?.containerPort).toBe(port);
    });

    it("gives a stop more time than it can take: max(TTL, 2 x callTimeoutMs), plus a margin", () => {
      const ttlSeconds = Number(env("TTL"));
      const callTimeoutSeconds = 5; // the library's default callTimeoutMs; the worker does not change it
      expect(ttlSeconds).toBeGreaterThan(0);
      expect(pod.spec!.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(
        Math.max(ttlSeconds, 2 * callTimeoutSeconds) + 5,
      );
    });

    it("lists every etcd member by the name the StatefulSet gives it, after defining the namespace it expands", () => {
      const sts = one<IStatefulSet>("etcd.yaml", "StatefulSet");
      const clientPort = sts.spec!.template.spec!.containers[0]!.ports!.find((p) => p.name === "client")!.containerPort;
      const members = Array.from(
        { length: sts.spec!.replicas! },
        (_, i) => `${sts.metadata!.name}-${i}.${sts.spec!.serviceName}.$(POD_NAMESPACE).svc:${clientPort}`,
      );
      expect(env("ETCD_ENDPOINTS")!.split(",")).toEqual(members);
      // Kubernetes expands $(VAR) only from variables defined earlier in the list.
      const names = container.env!.map((e) => e.name);
      expect(names.indexOf("POD_NAMESPACE")).toBeLessThan(names.indexOf("ETCD_ENDPOINTS"));
      expect(container.env!.find((e) => e.name === "POD_NAMESPACE")?.valueFrom?.fieldRef?.fieldPath).toBe(
        "metadata.namespace",
      );
    });

    it("with #tls on, reads the client certificate from the Secret etcd-tls.yaml's header names", () => {
      const tls = one<IDeployment>("worker.yaml (#tls on)", "Deployment").spec!.template;
      const c = tls.spec!.containers[0]!;
      const mount = c.volumeMounts!.find((m) => m.name === "etcd-client-tls")!;
      for (const name of ["ETCD_CA_FILE", "ETCD_CERT_FILE", "ETCD_KEY_FILE"]) {
        expect(c.env!.find((e) => e.name === name)?.value, name).toMatch(new RegExp(`^${mount.mountPath}/`));
      }
      expect(tls.spec!.volumes!.find((v) => v.name === mount.name)?.secret?.secretName).toBe("etcd-client-tls");
      expect(readFileSync(DIR + "etcd-tls.yaml", "utf8")).toContain("etcd-client-tls");
    });
  });

  it("etcd-tls.yaml differs from etcd.yaml only in the StatefulSet, which serves HTTPS from the mounted Secret, and the authentication Job", () => {
    const plain = all.filter((m) => m.file === "etcd.yaml").map((m) => m.doc);
    const tls = all.filter((m) => m.file === "etcd-tls.yaml").map((m) => m.doc);
    const others = (docs: Manifest["doc"][]) => docs.filter((d) => d.kind !== "StatefulSet" && d.kind !== "Job");
    expect(others(tls)).toEqual(others(plain));
    expect(plain.filter((d) => d.kind === "Job")).toEqual([]);
    const sts = one<IStatefulSet>("etcd-tls.yaml", "StatefulSet");
    const args = sts.spec!.template.spec!.containers[0]!.args!;
    expect(args.filter((a) => /-urls=http:/.test(a))).toEqual(["--listen-metrics-urls=http://0.0.0.0:2381"]); // only the probes' port
    const mount = sts.spec!.template.spec!.containers[0]!.volumeMounts!.find((m) => m.name === "tls")!;
    for (const flag of [
      "trusted-ca-file",
      "cert-file",
      "key-file",
      "peer-trusted-ca-file",
      "peer-cert-file",
      "peer-key-file",
    ]) {
      expect(
        args.find((a) => a.startsWith(`--${flag}=`)),
        flag,
      ).toMatch(new RegExp(`^--${flag}=${mount.mountPath}/`));
    }
    expect(args).toContain("--client-cert-auth=true");
    expect(sts.spec!.template.spec!.volumes!.find((v) => v.name === "tls")?.secret?.secretName).toBe("etcd-server-tls");
  });

  it("every Service, PodDisruptionBudget and workload selects the pods it is meant for", () => {
    const podLabels = all.flatMap((m) =>
      ["Deployment", "StatefulSet"].includes(m.doc.kind)
        ? [(m.doc as IDeployment).spec!.template.metadata!.labels!]
        : [],
    );
    const matches = (selector: Record<string, string>, labels: Record<string, string>) =>
      Object.entries(selector).every(([k, v]) => labels[k] === v);
    for (const { file, index, doc } of all) {
      const spec = doc.spec as {
        selector?: Record<string, unknown> & { matchLabels?: Record<string, string> };
        template?: { metadata?: { labels?: Record<string, string> } };
      };
      if (doc.kind === "Service")
        expect(
          podLabels.some((l) => matches(spec.selector as Record<string, string>, l)),
          `${file} #${index}`,
        ).toBe(true);
      if (doc.kind === "PodDisruptionBudget")
        expect(
          podLabels.some((l) => matches(spec.selector!.matchLabels!, l)),
          `${file} #${index}`,
        ).toBe(true);
      if (doc.kind === "Deployment" || doc.kind === "StatefulSet")
        expect(matches(spec.selector!.matchLabels!, spec.template!.metadata!.labels!), `${file} #${index}`).toBe(true);
    }
  });

  it("the workers run under their own ServiceAccount, with no API token mounted (they never call Kubernetes)", () => {
    const account = one<IServiceAccount>("worker.yaml", "ServiceAccount");
    const pod = one<IDeployment>("worker.yaml", "Deployment").spec!.template.spec!;
    expect(account.automountServiceAccountToken).toBe(false);
    expect(pod.serviceAccountName).toBe(account.metadata!.name);
    expect(pod.automountServiceAccountToken).toBe(false);
  });

  it("the workers' NetworkPolicy lets them reach etcd's client port and DNS only, and be reached on their HTTP port only", () => {
    const policy = one<INetworkPolicy>("worker.yaml", "NetworkPolicy").spec!;
    const deployment = one<IDeployment>("worker.yaml", "Deployment");
    const container = deployment.spec!.template.spec!.containers[0]!;
    expect(policy.podSelector.matchLabels).toEqual(deployment.spec!.selector.matchLabels);
    expect(policy.policyTypes).toEqual(["Ingress", "Egress"]);
    expect(policy.ingress!.map((rule) => [rule.from, rule.ports])).toEqual([
      [undefined, [{ protocol: "TCP", port: container.ports![0]!.name }]],
    ]);
    const [toEtcd, toDns, ...more] = policy.egress!;
    expect(more).toEqual([]);
    expect(toDns!.ports!.map((p) => `${p.protocol}/${p.port}`).sort()).toEqual(["TCP/53", "UDP/53"]);
    for (const file of ["etcd.yaml", "etcd-tls.yaml"]) {
      const etcdPod = one<IStatefulSet>(file, "StatefulSet").spec!.template;
      const client = etcdPod.spec!.containers[0]!.ports!.find((p) => p.name === "client")!;
      expect(toEtcd!.to).toEqual([{ podSelector: { matchLabels: etcdPod.metadata!.labels } }]);
      expect(toEtcd!.ports).toEqual([{ protocol: "TCP", port: client.containerPort }]);
    }
  });

  it("etcd-tls.yaml's authentication Job runs on the worker's image and gives the workers' user their election's prefix", () => {
    const container = one<IJob>("etcd-tls.yaml", "Job").spec!.template.spec!.containers[0]!;
    const env = (name: string) => container.env!.find((e) => e.name === name)?.value;
    const worker = one<IDeployment>("worker.yaml", "Deployment").spec!.template.spec!.containers[0]!;
    const workerEnv = (name: string) => worker.env!.find((e) => e.name === name)?.value;
    expect(container.image).toBe(worker.image);
    expect(workerEnv("ELECTION")!.startsWith(env("WORKER_PREFIX")!)).toBe(true);
    expect(env("ETCD_ENDPOINTS")).toBe(workerEnv("ETCD_ENDPOINTS"));
    // The README has you make etcd-client-tls with this CN: etcd takes the user from it.
    expect(readFileSync(DIR + "README.md", "utf8")).toContain(`/CN=${env("WORKER_USER")} `);
  });

  it("kustomization.yaml lists manifests that exist and sets the workers' image", () => {
    const kustomization = parseAllDocuments(readFileSync(DIR + KUSTOMIZATION, "utf8"))[0]!.toJS() as {
      resources: string[];
      images: { name: string; newName: string; newTag: string }[];
    };
    for (const file of kustomization.resources) expect(existsSync(DIR + file), file).toBe(true);
    expect(kustomization.resources).toContain("worker.yaml");
    const image = one<IDeployment>("worker.yaml", "Deployment").spec!.template.spec!.containers[0]!.image!;
    expect(kustomization.images).toEqual([expect.objectContaining({ name: image.split(":")[0] })]);
    expect(`${kustomization.images[0]!.newName}:${kustomization.images[0]!.newTag}`).toBe(image);
  });

  it("the Dockerfile's port and entry point are the Deployment's", () => {
    const dockerfile = readFileSync(DIR + "Dockerfile", "utf8");
    const port = one<IDeployment>("worker.yaml", "Deployment").spec!.template.spec!.containers[0]!.env!.find(
      (e) => e.name === "PORT",
    )!.value;
    expect(dockerfile).toMatch(new RegExp(`^\\s*PORT=${port}$`, "m"));
    expect(dockerfile).toMatch(new RegExp(`^EXPOSE ${port}$`, "m"));
    const outfile = /--outfile=dist\/(\S+)/.exec(dockerfile)?.[1];
    expect(dockerfile).toContain(`CMD ["node", "--enable-source-maps", "${outfile}"]`);
    expect(dockerfile).toMatch(/^ARG NODE_IMAGE=node:24-slim$/m);
    expect(dockerfile).toMatch(/^FROM \$\{NODE_IMAGE\} AS build$/m);
    expect(dockerfile).toContain("--target=node24 ");
  });
});
