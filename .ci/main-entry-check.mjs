// The main entry must load where the optional peers (prom-client, @opentelemetry/api, pg, postgres) are not installed:
// both builds are loaded with those packages made unresolvable, and the adapters must then fail to load
// (which shows the block works).
import Module, { createRequire, register } from "node:module";

const BLOCKED = String.raw`^(prom-client|@opentelemetry/|pg$|pg/|postgres$)`;
const blocked = new RegExp(BLOCKED);

// CommonJS: require() resolves through Module._resolveFilename.
const resolveFilename = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  if (blocked.test(request))
    throw Object.assign(new Error(`Cannot find module '${request}' (blocked)`), { code: "MODULE_NOT_FOUND" });
  return resolveFilename.call(this, request, ...rest);
};
// ESM: a resolve hook.
register(
  "data:text/javascript," +
    encodeURIComponent(`export async function resolve(specifier, context, next) {
      if (new RegExp(${JSON.stringify(BLOCKED)}).test(specifier)) {
        throw Object.assign(new Error("Cannot find package '" + specifier + "' (blocked)"), { code: "ERR_MODULE_NOT_FOUND" });
      }
      return next(specifier, context);
    }`),
);

const require = createRequire(import.meta.url);
const esm = await import("../dist/index.js");
const cjs = require("../dist/index.cjs");
for (const [build, api] of [
  ["ESM", esm],
  ["CJS", cjs],
]) {
  for (const name of ["LeaderElector", "Session", "healthHandler"]) {
    if (typeof api[name] !== "function") throw new Error(`${build} main entry lacks ${name}`);
  }
}
for (const adapter of ["prometheus", "opentelemetry", "postgres"]) {
  // The OpenTelemetry and Postgres adapters use only their peers' types (the Postgres one drives the driver
  // it is handed), so they load without them; prom-client's does not.
  const loads = adapter !== "prometheus";
  for (const load of [() => import(`../dist/${adapter}.js`), async () => require(`../dist/${adapter}.cjs`)]) {
    const ok = await load().then(
      () => true,
      () => false,
    );
    if (ok !== loads)
      throw new Error(`dist/${adapter}: expected it ${loads ? "to load" : "not to load"} without its peer`);
  }
}
console.log(
  "main-entry-check: the main entry (ESM and CJS) loads without prom-client, @opentelemetry/api, pg and postgres",
);
