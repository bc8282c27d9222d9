import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  Application,
  DeclarationReflection,
  Logger,
  LogLevel,
  ReflectionKind,
  type CommentDisplayPart,
  type ProjectReflection,
} from "typedoc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

/** `npm run docs` (typedoc.json), built in a scratch directory with every warning kept. */
describe("the API reference", () => {
  const warnings: string[] = [];
  const out = mkdtempSync(join(tmpdir(), "etcd-election-api-"));
  let app: Application;
  let project: ProjectReflection;

  beforeAll(async () => {
    app = await Application.bootstrapWithPlugins({ out });
    app.logger = new (class extends Logger {
      override log(message: string, level: LogLevel): void {
        if (level >= LogLevel.Warn) warnings.push(message);
      }
    })();
    project = (await app.convert())!;
    app.validate(project);
    await app.generateDocs(project, out);
  }, 180_000);
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  const find = (name: string): DeclarationReflection => {
    const found = project.getReflectionsByKind(ReflectionKind.All).find((r) => r.name === name);
    if (!(found instanceof DeclarationReflection)) throw new Error(`${name} is not in the reference`);
    return found;
  };
  const links = (parts: readonly CommentDisplayPart[] = []): string[] =>
    parts.flatMap((p) => (p.kind === "inline-tag" && p.tag === "@link" ? [p.text] : []));

  it("builds without a warning, and fails on one: every public member is documented, every link resolves", () => {
    expect(app.options.getValue("treatWarningsAsErrors")).toBe(true);
    expect(app.options.getValue("validation")).toMatchObject({ notDocumented: true, invalidLink: true });
    expect(warnings).toEqual([]);
  });

  it("lands on the README", () => {
    const text = (project.readme ?? []).map((p) => p.text).join("");
    expect(text).toMatch(/^# etcd-election/);
  });

  it("lists the classes' own members and their events, none of the emitter's methods", () => {
    for (const [name, events] of [
      ["LeaderElector", "ElectorEvents"],
      ["Session", "SessionEvents"],
    ] as const) {
      const cls = find(name);
      const members = cls.children ?? [];
      expect(members.filter((m) => m.flags.isExternal || m.inheritedFrom).map((m) => m.name)).toEqual([]);
      expect(members.map((m) => m.name)).not.toContain("on");
      expect(links(cls.comment?.summary)).toContain(events);
    }
  });

  it("keeps internals out: no LockPrimitive or Primitive, not even in a hierarchy", () => {
    const names = project.getReflectionsByKind(ReflectionKind.All).map((r) => r.name);
    expect(names).not.toContain("LockPrimitive");
    expect(names).not.toContain("Primitive");
    for (const name of ["Mutex", "Semaphore", "RWLock", "Election"]) {
      expect((find(name).extendedTypes ?? []).map(String)).toEqual([]);
    }
  });

  it("documents [Symbol.asyncDispose] wherever a class has it", () => {
    const disposers = project
      .getReflectionsByKind(ReflectionKind.Method)
      .filter((m) => m.name === "[asyncDispose]") as DeclarationReflection[];
    expect(disposers.map((m) => m.parent?.name).sort()).toEqual(["Holding", "Lock", "Session", "Term"]);
    for (const m of disposers) expect(m.signatures?.[0]?.comment?.summary.length, m.parent?.name).toBeGreaterThan(0);
  });
});
