import { defineConfig } from "tsup";

export default defineConfig([
  {
    entry: {
      index: "src/index.ts",
      // Subpath entry points: each loads its optional peer, the main entry loads neither.
      prometheus: "src/adapters/prometheus.ts",
      opentelemetry: "src/adapters/opentelemetry.ts",
      postgres: "src/adapters/postgres.ts",
    },
    format: ["esm", "cjs"],
    // Only the public API in the published types: members marked @internal are stripped.
    dts: { compilerOptions: { stripInternal: true } },
    sourcemap: true,
    clean: true,
    target: "node20",
    // etcd3 is a peer: the user's copy must be the one we talk through; so are the metrics libraries and
    // the Postgres drivers.
    external: ["etcd3", "prom-client", "@opentelemetry/api", "pg", "postgres"],
  },
  {
    // The operator's CLI (package.json "bin"): ESM only, no types; etcd3 is the user's, as above.
    entry: { cli: "src/cli/bin.ts" },
    format: ["esm"],
    banner: { js: "#!/usr/bin/env node" },
    sourcemap: true,
    clean: false,
    target: "node20",
    external: ["etcd3"],
  },
]);
