/**
 * Kubernetes schema validators accept fields they do not know (the API server then drops them, or
 * refuses them under strict field validation): a misspelt `readinesProbe` would pass them. So each
 * manifest is also compiled, as an object literal, against its TypeScript type: excess-property checks
 * catch unknown fields at any depth, and the types catch wrong shapes.
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

export interface TypedManifest {
  /** Names the manifest in errors, e.g. "worker.yaml #1 Deployment". */
  label: string;
  /** The module and exported type to check it against. */
  module: string;
  type: string;
  value: unknown;
}

/** Compiles every manifest against its type; returns the errors, each prefixed with its manifest's label. */
export function manifestTypeErrors(manifests: TypedManifest[]): string[] {
  // The virtual file lives beside this one, so that packages and relative modules resolve from here.
  const file = join(dirname(fileURLToPath(import.meta.url)), "__manifests__.ts");
  const lines: string[] = [];
  const labels: string[] = [];
  manifests.forEach((m, i) => lines.push(`import type { ${m.type} as T${i} } from ${JSON.stringify(m.module)};`));
  manifests.forEach((m, i) => {
    labels[lines.length] = m.label;
    lines.push(`export const m${i}: T${i} = ${JSON.stringify(m.value)};`);
  });
  const source = lines.join("\n");

  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, languageVersion, ...rest) =>
    name === file ? ts.createSourceFile(name, source, languageVersion) : getSourceFile(name, languageVersion, ...rest);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => name === file || fileExists(name);
  const readFile = host.readFile.bind(host);
  host.readFile = (name) => (name === file ? source : readFile(name));

  const program = ts.createProgram([file], options, host);
  return ts.getPreEmitDiagnostics(program, program.getSourceFile(file)).map((d) => {
    const line = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line : -1;
    return `${labels[line] ?? "(imports)"}: ${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`;
  });
}
