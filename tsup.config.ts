import { defineConfig } from "tsup";

export default defineConfig({
  entry: ["src/index.ts"],
  format: ["esm", "cjs"],
  // Only the public API in the published types: members marked @internal are stripped.
  dts: { compilerOptions: { stripInternal: true } },
  sourcemap: true,
  clean: true,
  target: "node20",
  // etcd3 is a peer: the user's copy must be the one we talk through.
  external: ["etcd3"],
});
