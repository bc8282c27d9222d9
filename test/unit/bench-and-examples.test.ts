import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

function tsFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith(".ts"))
    .map((e) => relative(ROOT, join(e.parentPath, e.name)));
}

/** The repository's own modules a file imports, types included (`import type`, `import("…").T`). */
function localImports(file: string): string[] {
  const { importedFiles } = ts.preProcessFile(readFileSync(join(ROOT, file), "utf8"), true, true);
  return importedFiles
    .map((f) => f.fileName)
    .filter((name) => name.startsWith("."))
    .map((name) => relative(ROOT, resolve(ROOT, dirname(file), name.replace(/\.js$/, ".ts"))));
}

/** Every cycle through `files`, each as the path that closes it. */
function cycles(files: string[]): string[][] {
  const found: string[][] = [];
  const done = new Set<string>();
  const visit = (file: string, path: string[]): void => {
    const at = path.indexOf(file);
    if (at >= 0) return void found.push([...path.slice(at), file]);
    if (done.has(file)) return;
    for (const next of localImports(file)) visit(next, [...path, file]);
    done.add(file);
  };
  for (const file of files) visit(file, []);
  return found;
}

describe("the benchmark and the examples", () => {
  it("import no module that imports them back (types included)", () => {
    const files = ["bench", "examples", "test/support"].flatMap(tsFiles);
    expect(files).toContain("bench/workers/protocol.ts");
    expect(cycles(files)).toEqual([]);
  });

  it("start etcd through the harness's one launcher: no other file spells a member's flags", () => {
    const flag = ["--initial", "cluster="].join("-"); // not spelled here either
    const spelling = ["src", "bench", "examples", "test"]
      .flatMap(tsFiles)
      .filter((file) => readFileSync(join(ROOT, file), "utf8").includes(flag));
    expect(spelling).toEqual(["test/support/etcd-flags.ts"]);
  });
});
