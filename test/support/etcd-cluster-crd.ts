/**
 * The part of the etcd operator's `EtcdCluster` (operator.etcd.io/v1alpha1, github.com/etcd-io/etcd-operator)
 * that examples/kubernetes/etcd-operator.yaml uses, as its CRD's openAPIV3Schema states it. No npm package
 * carries this schema, so it is written down here from the operator's CRD, api/v1alpha1/etcdcluster_types.go
 * and docs/api-references/docs.md. Fields whose shape changed between the operator's versions (tls) or
 * that only newer versions have (imageRegistry, etcdOptions, podTemplate) are left out on purpose, so
 * the example cannot use them unnoticed.
 */
import type { IDeployment } from "kubernetes-models/apps/v1";

type ObjectMeta = NonNullable<IDeployment["metadata"]>;

export interface EtcdCluster {
  apiVersion: "operator.etcd.io/v1alpha1";
  kind: "EtcdCluster";
  metadata: ObjectMeta;
  spec: {
    /** Required; minimum 1. */
    size: number;
    /** Required: the tag of the etcd image. */
    version: string;
    storageSpec?: {
      /** `PersistentVolumeAccessMode`, one value: ReadWriteOnce (default) or ReadWriteMany (then pvcName). */
      accessModes?: "ReadWriteOnce" | "ReadWriteMany";
      storageClassName?: string;
      pvcName?: string;
      /** Required within storageSpec: a resource quantity. */
      volumeSizeRequest: string | number;
      volumeSizeLimit?: string | number;
    };
  };
}

/** The CRD's pattern for resource quantities (x-kubernetes-int-or-string). */
const QUANTITY =
  /^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$/;

/**
 * The checks of the CRD's schema that types cannot express (the shape and unknown fields are checked
 * by compiling the manifest against `EtcdCluster`). Returns the problems found.
 */
export function etcdClusterProblems(doc: EtcdCluster): string[] {
  const problems: string[] = [];
  const { spec } = doc;
  if (!Number.isInteger(spec.size) || spec.size < 1)
    problems.push(`spec.size must be an integer >= 1, got ${spec.size}`);
  if (!doc.metadata.name) problems.push("metadata.name is required");
  const storage = spec.storageSpec;
  if (storage) {
    for (const key of ["volumeSizeRequest", "volumeSizeLimit"] as const) {
      const q = storage[key];
      if (q !== undefined && !QUANTITY.test(String(q)))
        problems.push(`spec.storageSpec.${key} is not a quantity: ${q}`);
    }
    if (storage.accessModes === "ReadWriteMany" && !storage.pvcName)
      problems.push("spec.storageSpec.pvcName is required with ReadWriteMany");
  }
  return problems;
}
