import { validateName } from "../common/validate.js";
import { contextOf, type SessionContext } from "../session/context.js";
import type { Kind } from "./names.js";
import type { Session } from "../session.js";

/** What every election and lock starts from: a session, a valid name, and the kind it is used as. */
export abstract class Primitive {
  /** The session whose lease holds the keys this makes. */
  readonly session: Session;
  /** The name: its keys are `<name>/<lease id>`. */
  readonly name: string;
  readonly #ctx: SessionContext;
  readonly #kind: Kind;

  /** @internal */
  protected constructor(session: Session, name: string, kind: Kind) {
    this.name = validateName(name, `${kind} name`);
    this.#ctx = contextOf(session);
    this.session = session;
    this.#kind = kind;
  }

  /** @internal */
  protected get context(): SessionContext {
    return this.#ctx;
  }

  /** @internal */
  protected get kind(): Kind {
    return this.#kind;
  }
}
