import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const SRC = resolve(import.meta.dirname, "../../src");
const files = (dir: string): string[] =>
  readdirSync(join(SRC, dir), { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? files(join(dir, entry.name)) : entry.name.endsWith(".ts") ? [join(dir, entry.name)] : [],
  );
const read = (file: string): string => readFileSync(join(SRC, file), "utf8");

/**
 * The files the map in docs/design.md ("The pieces") names, as paths under src/: a line indented by two
 * spaces names a top-level file or a folder ("etcd/"), one indented by four a file of the folder above.
 */
function filesOfTheMap(): string[] {
  const design = readFileSync(resolve(import.meta.dirname, "../../docs/design.md"), "utf8");
  const section = design.slice(design.indexOf("## The pieces"));
  const block = /```\n(src\/\n[\s\S]*?)```/.exec(section)?.[1] ?? "";
  let folder = "";
  const named: string[] = [];
  for (const line of block.split("\n")) {
    const top = /^ {2}(\S+)/.exec(line)?.[1];
    const inFolder = /^ {4}(\S+\.ts)\b/.exec(line)?.[1];
    if (top?.endsWith("/")) folder = top;
    else if (top?.endsWith(".ts")) {
      folder = "";
      named.push(top);
    } else if (inFolder) named.push(join(folder, inFolder));
  }
  return named;
}

describe("the layout says what is public", () => {
  it("src/'s top level is exactly the public surface: index.ts and the files it exports from", () => {
    const index = read("index.ts");
    const topLevel = readdirSync(SRC).filter((entry) => entry.endsWith(".ts") && entry !== "index.ts");
    const unexported = topLevel.filter((file) => !index.includes(`from "./${file.replace(/\.ts$/, ".js")}"`));
    expect(unexported).toEqual([]);
    // And the public surface comes from there (types such as Logger may live in a folder).
    const classes = [...index.matchAll(/^export \{[^}]*\} from "\.\/([^"]+)"/gm)].map((m) => m[1]!);
    expect(classes.filter((spec) => spec.includes("/"))).toEqual([]);
  });

  it("the map in docs/design.md names every file under src/, and only files that exist", () => {
    const named = filesOfTheMap();
    expect(named.length).toBeGreaterThan(0);
    expect([...named].sort()).toEqual(files(".").sort());
    expect(new Set(named).size).toBe(named.length);
  });
});

describe("where code may look", () => {
  it("common/ knows nothing of etcd: it imports from no other folder of src/", () => {
    const outward = files("common").flatMap((file) =>
      [...read(file).matchAll(/from "\.\.\/([\w-]+\/[^"]+)"/g)].map((m) => `${file}: ${m[1]}`),
    );
    expect(outward).toEqual([]);
  });

  it("the lease reaches etcd through the connection, not through the watch stream", () => {
    const uses = files("lease").filter((file) => /from "\.\.\/etcd\/(watch-stream|key-watch)\.js"/.test(read(file)));
    expect(uses).toEqual([]);
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
