/** The etcd version an external cluster (ETCD_ENDPOINTS) reports, for the log: the first member that answers. */
import { deadline, probeClient } from "./probe.js";

export async function externalVersion(endpoints: string): Promise<string> {
  const client = probeClient(
    endpoints
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== ""),
  );
  try {
    return (await client.maintenance.status(deadline(5_000))).version;
  } catch (error) {
    return `unknown (maintenance status failed: ${(error as Error).message})`;
  } finally {
    client.close();
  }
}
