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
export class Names {
  readonly #lines = new Map<string, { kind: Kind; line: LocalLine }>();

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
