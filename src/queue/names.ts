import { NameConflictError } from "../errors.js";
import { LocalLine } from "./local-line.js";

/** What a name is used as, through one session. */
export type Kind = "election" | "mutex" | "semaphore" | "read-write lock";

/**
 * One key per name per session (design section of that name): the session holds at most one key under a name, so local contenders
 * wait in an in-process line behind whoever uses that key, instead of adding keys to etcd (etcd's Go
 * package gets this wrong: etcd #11360). A name is used as one kind of primitive only; the entry goes
 * away once its line is idle.
 */
export class SessionNames {
  readonly #lines = new Map<string, { kind: Kind; line: LocalLine }>();
  /** Keys of ended holds that etcd may still hold (their removal was refused), by create revision. */
  readonly #leftBehind = new Map<string, bigint>();

  /**
   * A hold on `key` ended while etcd may still hold its key (its removal refused, or not confirmed): the
   * next join must not take it for an earlier attempt of its own and reuse its token (rule 2).
   */
  leftBehind(key: string, createRevision: bigint): void {
    this.#leftBehind.set(key, createRevision);
  }

  /** The create revision of `key` if a hold left it behind; undefined otherwise. */
  leftBehindAt(key: string): bigint | undefined {
    return this.#leftBehind.get(key);
  }

  /** etcd confirmed `key` (at `createRevision`) gone: nothing left behind. */
  removed(key: string, createRevision: bigint): void {
    if (this.#leftBehind.get(key) === createRevision) this.#leftBehind.delete(key);
  }

  /** The local line for `name`; NameConflictError if the name is in use as another kind. */
  line(name: string, kind: Kind): LocalLine {
    const entry = this.#lines.get(name);
    if (entry && entry.kind !== kind) {
      throw new NameConflictError(
        `"${name}" is already used as a ${entry.kind} through this session; it cannot also be a ${kind}`,
      );
    }
    if (entry) return entry.line;
    const line: LocalLine = new LocalLine(() => {
      if (this.#lines.get(name)?.line === line) this.#lines.delete(name);
    });
    this.#lines.set(name, { kind, line });
    return line;
  }
}
