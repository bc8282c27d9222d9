/**
 * Nothing in the harness may assume etcd 3.4 or 3.5 (README, "Supported etcd versions"): 3.6 and 3.7 run
 * nowhere here (no Debian package, no registry), so what they change is checked against their release
 * notes and source: the line that says a member serves, the flags the harness passes, an image for each.
 */
import { describe, expect, it } from "vitest";
import { OFFICIAL_IMAGES } from "../support/etcd-release.js";
import { etcdArgs, type MemberPlan } from "../support/launch.js";
import { READY_LOG } from "../support/runtime.js";
import { tlsArgs } from "../support/security.js";

const plan = {
  name: "m0",
  clientPort: 1,
  peerPort: 2,
  clientProxy: { listenPort: 3 },
  peerProxy: { listenPort: 4 },
} as unknown as MemberPlan;

describe("the etcd harness on every supported release", () => {
  it("knows when a member serves from the log line of 3.4, 3.5 and 3.6+ (which adds a traffic field)", () => {
    const lines = [
      // 3.4 and 3.5 (embed/serve.go, --logger=zap)
      `{"level":"info","caller":"embed/serve.go:140","msg":"serving client traffic insecurely; this is strongly discouraged!","address":"127.0.0.1:2379"}`,
      `{"level":"info","caller":"embed/serve.go:191","msg":"serving client traffic securely","address":"127.0.0.1:2379"}`,
      // 3.6 and 3.7: the same message, with "traffic" ("grpc+http") before the address
      `{"level":"info","caller":"embed/serve.go:210","msg":"serving client traffic insecurely; this is strongly discouraged!","traffic":"grpc+http","address":"[::]:2379"}`,
      `{"level":"info","caller":"embed/serve.go:275","msg":"serving client traffic securely","traffic":"grpc+http","address":"127.0.0.1:2379"}`,
    ];
    for (const line of lines) expect(line, line).toMatch(READY_LOG);
    // 3.5's earlier line comes before gRPC serves: not the one to wait for.
    expect(`{"msg":"ready to serve client requests"}`).not.toMatch(READY_LOG);
  });

  it("passes no flag 3.6 or 3.7 removed (the v2 store's, the experimental ones 3.7 dropped)", () => {
    const removed = /^--(enable-v2|v2-deprecation|experimental-|logger=capnslog|log-package-levels|debug\b)/;
    for (const options of [{}, { tls: true }, { auth: true }]) {
      const args = etcdArgs(plan, "/data", "m0=http://127.0.0.1:4", "t", options, "/certs");
      expect(args.filter((a) => removed.test(a))).toEqual([]);
    }
    expect(tlsArgs("/certs").filter((a) => removed.test(a))).toEqual([]);
  });

  it("has an official image for every supported series, 3.4 to 3.7", () => {
    for (const series of ["3.4", "3.5", "3.6", "3.7"])
      expect(OFFICIAL_IMAGES[series], series).toMatch(new RegExp(`^gcr\\.io/etcd-development/etcd:v${series}\\.\\d+$`));
  });
});
