import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const SRC = resolve(import.meta.dirname, "../../src");
const files = (dir: string): string[] =>
  readdirSync(join(SRC, dir), { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? files(join(dir, entry.name)) : entry.name.endsWith(".ts") ? [join(dir, entry.name)] : [],
  );
const read = (file: string): string => readFileSync(join(SRC, file), "utf8");

describe("where code may look", () => {
  it("common/ knows nothing of etcd: it imports from no subsystem folder (etcd/, lease/, queue/, adapters/)", () => {
    const outward = files("common").flatMap((file) =>
      [...read(file).matchAll(/from "\.\.\/((?:etcd|lease|queue|adapters)\/[^"]+)"/g)].map((m) => `${file}: ${m[1]}`),
    );
    expect(outward).toEqual([]);
  });

  it("etcd's error messages are read only in etcd/errors.ts, by its named predicates", () => {
    // Phrases of etcd's (and grpc-js's) failure texts: matching them anywhere else spreads etcd's wording.
    const phrases =
      /permission denied|lease already exists|lease not found|auth token|auth store|compact|future revision|too many requests|leader changed|no leader|deadline exceeded|too large/i;
    const matchers = /\.test\(|\.match\(|matchAll\(|new RegExp|\.search\(|\.includes\(/;
    const found = files(".")
      .filter((file) => file !== join("etcd", "errors.ts"))
      .flatMap((file) =>
        read(file)
          .split("\n")
          .map((line, i) => ({ line, at: `${file}:${i + 1}` }))
          .filter(({ line }) => matchers.test(line) && phrases.test(line))
          .map(({ at, line }) => `${at}: ${line.trim()}`),
      );
    expect(found).toEqual([]);
  });

  it("every wait between tries comes from common/backoff.ts: only it builds cockatiel's backoffs", () => {
    const users = files(".").filter((file) => /from "cockatiel"/.test(read(file)));
    expect(users).toEqual([join("common", "backoff.ts")]);
  });
});
