import { describe, expect, it, vi } from "vitest";
import { consoleLogger, silentLogger, toLogger, withFields, type Logger } from "../../src/common/logger.js";

describe("the logger option", () => {
  it("undefined takes the default, false silences, anything else must have the four levels", () => {
    expect(toLogger(undefined, consoleLogger)).toBe(consoleLogger);
    expect(toLogger(false, consoleLogger)).toBe(silentLogger);
    expect(() => toLogger({ info() {} }, silentLogger)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
  });

  it("fields bound once come with every line; a logger that throws does not break the caller", () => {
    const lines: [string, object, string][] = [];
    const base: Logger = {
      debug: (f, m) => void lines.push(["debug", f, m]),
      info: (f, m) => void lines.push(["info", f, m]),
      warn: () => {
        throw new Error("broken logger");
      },
      error: (f, m) => void lines.push(["error", f, m]),
    };
    const log = withFields(toLogger(base, silentLogger), { lease: "abc" });
    log.info({ key: "k" }, "hello");
    expect(() => log.warn({}, "nope")).not.toThrow();
    expect(lines).toEqual([["info", { lease: "abc", key: "k" }, "hello"]]);
  });

  it("the console default prints warnings and errors, with an error's code, message and stack", () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    const error = vi.spyOn(console, "error").mockImplementation(() => {});
    try {
      consoleLogger.info({}, "not printed");
      consoleLogger.warn({ attempt: 2 }, "retrying");
      consoleLogger.error({ err: Object.assign(new Error("boom"), { code: "ETCD_ERROR" }) }, "failed");
      expect(warn).toHaveBeenCalledWith("[etcd-election] retrying (attempt=2)");
      expect(String(error.mock.calls[0]?.[0])).toMatch(
        /^\[etcd-election\] failed \(err=ETCD_ERROR: boom\)\nError: boom/,
      );
    } finally {
      warn.mockRestore();
      error.mockRestore();
    }
  });
});
