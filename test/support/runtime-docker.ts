import { hostname } from "node:os";
import { GenericContainer, Wait, getContainerRuntimeClient } from "testcontainers";
import { ETCD_BINARY_IN_IMAGE, HOST_LABEL, PID_LABEL, TEST_LABEL, etcdImage } from "./etcd-image.js";
import { OWNER_PID, READY_LOG, START_TIMEOUT_MS, type Runtime } from "./runtime.js";

// Normally set by global-setup.ts; defaults for running without it.
process.env.TESTCONTAINERS_RYUK_DISABLED ??= "true";
process.env.TESTCONTAINERS_HOST_OVERRIDE ??= "127.0.0.1";

export class DockerRuntime implements Runtime {
  /** The container name doubles as its handle, so remove() works even if start() failed midway. */
  constructor(
    private readonly containerName: string,
    private readonly args: string[],
    /** Host directories mounted read-only (the TLS files). */
    private readonly mounts: { source: string; target: string }[] = [],
  ) {}

  async start(): Promise<void> {
    await new GenericContainer(etcdImage())
      .withName(this.containerName)
      .withNetworkMode("host")
      // The official image has a shell entrypoint; call the binary directly.
      .withEntrypoint([ETCD_BINARY_IN_IMAGE])
      .withCommand(this.args)
      .withBindMounts(this.mounts.map((m) => ({ ...m, mode: "ro" as const })))
      .withLabels({ [TEST_LABEL]: "true", [PID_LABEL]: OWNER_PID, [HOST_LABEL]: hostname() })
      .withWaitStrategy(Wait.forLogMessage(READY_LOG))
      .withStartupTimeout(START_TIMEOUT_MS)
      .start();
  }

  private async container() {
    return (await getContainerRuntimeClient()).container.getById(this.containerName);
  }

  async pause(): Promise<void> {
    await (await this.container()).pause();
  }

  async unpause(): Promise<void> {
    await (await this.container()).unpause();
  }

  async kill(): Promise<void> {
    const container = await this.container();
    await container.kill({ signal: "SIGKILL" });
    await container.wait();
  }

  async restart(): Promise<void> {
    // The container keeps its filesystem (data dir) and, with host
    // networking, its ports.
    await (await this.container()).start();
  }

  async remove(): Promise<void> {
    try {
      await (await this.container()).remove({ force: true, v: true });
    } catch {
      // Never created, or already removed.
    }
  }
}
