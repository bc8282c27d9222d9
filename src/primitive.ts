import { validateName } from "./common/validate.js";
import { assertSession, type Session } from "./session.js";

/** What every election and lock starts from: a session and a valid name, checked before any RPC. */
export abstract class Primitive {
  readonly session: Session;
  readonly name: string;

  protected constructor(session: Session, name: string, what: string) {
    assertSession(session);
    this.session = session;
    this.name = validateName(name, `${what} name`);
  }
}
