/**
 * CI runs the suites under several Node majors (.ci/fetch-runtime puts each first on PATH). Test
 * children run on process.execPath; anything that runs plain `node` (npm scripts, npx, a shebang) takes
 * it from PATH: both must be the Node that runs the tests, or a run would test a mix.
 */
import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";

describe("the Node the tests run on", () => {
  it("is the `node` on PATH, so every child process runs on it too", () => {
    const onPath = execFileSync("node", ["-p", "process.version"], { encoding: "utf8" }).trim();
    expect(onPath, `PATH's node is ${onPath}, the tests run on ${process.version} (${process.execPath})`).toBe(
      process.version,
    );
  });
});
