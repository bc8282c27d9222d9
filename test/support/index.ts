export { startEtcd, startCluster, faultsUnavailableReason } from "./etcd.js";
export type { EtcdEnv, EtcdMember } from "./etcd.js";
export { waitFor } from "./wait.js";
export type { WaitForOptions } from "./wait.js";
export { TcpProxy } from "./tcp-proxy.js";
export type { ProxyMode, TcpProxyOptions } from "./tcp-proxy.js";
export { freePort, freePorts } from "./ports.js";
export { etcdImage } from "./etcd-image.js";
