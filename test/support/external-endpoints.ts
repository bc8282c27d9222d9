/** ETCD_ENDPOINTS: an external cluster the tests run against instead of their own members. */

export const EXTERNAL_ENDPOINTS = (process.env.ETCD_ENDPOINTS ?? "")
  .split(",")
  .map((s) => s.trim())
  .filter((s) => s !== "");

export const faultsUnavailableReason: string | undefined =
  EXTERNAL_ENDPOINTS.length > 0
    ? `ETCD_ENDPOINTS is set (${EXTERNAL_ENDPOINTS.join(",")}): fault injection needs members the harness runs itself`
    : undefined;
