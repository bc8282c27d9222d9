/**
 * The README and the guides under docs/ as a reader meets them. Every relative link leads to a file that
 * exists (and to a heading of it, for an anchor). Every ```ts snippet in the README and the guides under docs/ type-checks against the library's source:
 * a renamed option or a changed signature fails here, not in a reader's editor. Each snippet becomes the
 * body of an async function (so it may `await`, and may declare names the prelude also declares); its
 * import lines move to the top. The prelude declares the free names snippets lean on (`client`,
 * `signal`, `term`...), typed as the library's own types.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";

const ROOT = resolve(import.meta.dirname, "../..");

function markdownFiles(): string[] {
  const guides = (dir: string): string[] =>
    readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((entry) => {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) return path === "docs/api" || path === "docs/chaos" ? [] : guides(path);
      return entry.name.endsWith(".md") ? [path] : [];
    });
  return ["README.md", ...guides("docs")];
}

interface Snippet {
  file: string;
  line: number;
  code: string;
}

function snippetsOf(file: string): Snippet[] {
  const lines = readFileSync(join(ROOT, file), "utf8").split("\n");
  const found: Snippet[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]!.trim() !== "```ts") continue;
    const start = i + 1;
    let end = start;
    while (end < lines.length && lines[end]!.trim() !== "```") end++;
    found.push({ file, line: start + 1, code: lines.slice(start, end).join("\n") });
    i = end;
  }
  return found;
}

/** What snippets may use without declaring it. */
const PRELUDE = `
import { Etcd3 } from "etcd3";
${[
  "Session",
  "Election",
  "Mutex",
  "Semaphore",
  "RWLock",
  "LeaderElector",
  "healthHandler",
  "ElectionError",
  "isElectionError",
]
  .map((name) => `import { ${name} } from "etcd-election";`)
  .join("\n")}
import type { Leader, Lock, Logger, Term } from "etcd-election";
import { withFence } from "etcd-election/postgres";
declare const client: Etcd3;
declare const hosts: string[];
declare const signal: AbortSignal;
declare const session: Session;
declare const term: Term;
declare const lock: Lock;
declare const elector: LeaderElector;
declare const logger: Logger;
declare const name: string;
declare const identity: string;
declare const me: string;
declare const json: string;
declare const maxValueBytes: number;
declare const db: { query(sql: string, params: unknown[]): Promise<unknown> };
declare const pool: import("pg").Pool;
declare const onStartedLeading: (term: Term) => Promise<void>;
declare const onNewLeader: (leader: Leader | undefined) => void;
declare function pauseRiskyWork(): void;
declare function resumeWork(): void;
declare function stopEverything(): void;
`;

/** Packages a snippet may import that this repository does not install. */
const AMBIENT = `
declare module "pino" { const pino: () => import("etcd-election").Logger; export default pino; }
`;

function virtualFile(snippet: Snippet): string {
  const lines = snippet.code.split("\n");
  const imports = lines.filter((l) => /^import\s/.test(l));
  const body = lines.map((l) => (/^import\s/.test(l) ? "" : l));
  // Snippet imports may repeat the prelude's names: theirs win.
  const imported = new Set(
    imports.flatMap((l) => [...l.matchAll(/\b([A-Za-z_$][\w$]*)\b(?=[^"]*\bfrom\b)/g)].map((m) => m[1]!)),
  );
  const prelude = PRELUDE.split("\n").filter((l) => {
    const m = /^(?:import \{ (\w+) \}|declare (?:const|function) (\w+))/.exec(l);
    const declared = m?.[1] ?? m?.[2];
    return !declared || !imported.has(declared);
  });
  return [...prelude, ...imports, "export async function snippet(): Promise<void> {", ...body, "}", ""].join("\n");
}

function typeErrors(snippets: Snippet[]): string[] {
  const files = new Map<string, string>();
  snippets.forEach((s, i) => files.set(join(ROOT, `.snippets/snippet-${i}.ts`), virtualFile(s)));
  files.set(join(ROOT, ".snippets/ambient.d.ts"), AMBIENT);
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    lib: ["lib.es2023.d.ts", "lib.esnext.disposable.d.ts", "lib.dom.d.ts"],
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: ["node"],
    esModuleInterop: true,
    baseUrl: ROOT,
    paths: {
      "etcd-election": ["src/index.ts"],
      "etcd-election/prometheus": ["src/adapters/prometheus.ts"],
      "etcd-election/opentelemetry": ["src/adapters/opentelemetry.ts"],
      "etcd-election/postgres": ["src/adapters/postgres.ts"],
    },
  };
  const host = ts.createCompilerHost(options);
  const readFile = host.readFile.bind(host);
  const fileExists = host.fileExists.bind(host);
  const getSourceFile = host.getSourceFile.bind(host);
  host.readFile = (f) => files.get(f) ?? readFile(f);
  host.fileExists = (f) => files.has(f) || fileExists(f);
  host.getSourceFile = (f, v, ...rest) =>
    files.has(f) ? ts.createSourceFile(f, files.get(f)!, v) : getSourceFile(f, v, ...rest);
  const program = ts.createProgram([...files.keys()], options, host);
  return ts
    .getPreEmitDiagnostics(program)
    .filter((d) => d.file && files.has(d.file.fileName))
    .map((d) => {
      const index = Number(/snippet-(\d+)\.ts$/.exec(d.file!.fileName)?.[1]);
      const snippet = snippets[index];
      const { line } = d.file!.getLineAndCharacterOfPosition(d.start ?? 0);
      const where = snippet ? `${snippet.file}, snippet at line ${snippet.line}` : d.file!.fileName;
      return `${where} (line ${line + 1} of the checked file): ${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`;
    });
}

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces to dashes. */
const anchorOf = (heading: string): string =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[`*_]/g, "")
    .replace(/[^\p{L}\p{N} -]/gu, "")
    .replace(/ /g, "-");

function anchorsOf(file: string): Set<string> {
  const text = readFileSync(join(ROOT, file), "utf8").replace(/```[\s\S]*?```/g, "");
  return new Set([...text.matchAll(/^#{1,6} (.+)$/gm)].map((m) => anchorOf(m[1]!)));
}

/** Relative links (and anchors) that lead nowhere, as "file: target". */
function brokenLinks(file: string): string[] {
  const text = readFileSync(join(ROOT, file), "utf8").replace(/```[\s\S]*?```/g, "");
  const broken: string[] = [];
  for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
    const target = m[1]!;
    if (/^[a-z]+:/i.test(target)) continue; // https:, mailto:
    const [path = "", anchor] = target.split("#");
    const linked = path === "" ? file : join(dirname(file), path);
    if (!existsSync(join(ROOT, linked))) broken.push(`${file}: ${target} (no such file)`);
    else if (anchor && linked.endsWith(".md") && !anchorsOf(linked).has(anchor)) {
      broken.push(`${file}: ${target} (no such heading)`);
    }
  }
  return broken;
}

describe("documentation", () => {
  it("links only to files and headings that exist", () => {
    expect(markdownFiles().flatMap(brokenLinks)).toEqual([]);
  });

  const snippets = markdownFiles().flatMap(snippetsOf);

  it("finds the README's snippets", () => {
    expect(snippets.filter((s) => s.file === "README.md").length).toBeGreaterThanOrEqual(3);
  });

  it("type-check against the library's source", { timeout: 60_000 }, () => {
    expect(typeErrors(snippets)).toEqual([]);
  });
});
