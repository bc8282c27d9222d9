import type { Namespace } from "etcd3";

/** The user's etcd3 client, or a namespace of it (`client.namespace("app/")`). */
export type EtcdClient = Namespace;
