import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["test/unit/**/*.test.ts"],
          environment: "node",
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          name: "integration",
          include: ["test/integration/**/*.test.ts"],
          environment: "node",
          // Unit tests first, then the integration files.
          sequence: { groupOrder: 1 },
          globalSetup: ["test/support/global-setup.ts"],
          // Each file starts its own etcd; two cores, so two files at a time.
          pool: "forks",
          maxWorkers: 2,
          testTimeout: 60_000,
          hookTimeout: 180_000,
        },
      },
      {
        test: {
          name: "chaos",
          include: ["test/chaos/**/*.test.ts"],
          environment: "node",
          // Last, and alone: its timing rules should not share two cores with other clusters.
          sequence: { groupOrder: 2 },
          globalSetup: ["test/support/global-setup.ts"],
          pool: "forks",
          maxWorkers: 1,
          testTimeout: 600_000,
          hookTimeout: 180_000,
        },
      },
    ],
  },
});
