import { predecessorPolicy } from "./election.js";
import { runLocked, takeLock, type Lock, type LockOptions } from "./lock.js";
import type { QueuePolicy } from "./queue.js";
import { Primitive } from "./primitive.js";
import type { Session } from "./session.js";

const READ = Buffer.from("read");
const WRITE = Buffer.from("write");
const isWriter = (value: Buffer | undefined): boolean => !value?.equals(READ);

/** Readers wait only for the last writer ahead of them: a writer's release wakes the run of readers behind it. */
const readerPolicy: QueuePolicy = {
  lookahead: 0,
  readValues: true,
  blocking: (ahead) => {
    const writer = ahead.findLast((e) => isWriter(e.value));
    return writer ? { keys: [writer], needed: 1 } : undefined;
  },
};

/**
 * Many readers or one writer on `<name>/`, FIFO by create revision: a waiting writer is not starved by
 * later readers (they queue behind it), and every wake is re-checked by a read (unlike etcd's recipe,
 * etcd #16221). The key's value says its mode; a key of unknown mode counts as a writer.
 * One session holds one key under a name (rule 6): its local read and write calls take turns.
 */
export class RWLock extends Primitive {

  constructor(session: Session, name: string) {
    super(session, name, "read-write lock");
  }

  async readLock(options: LockOptions = {}): Promise<Lock> {
    return (await takeLock(this.session, this.name, "rwlock", READ, readerPolicy, options))!;
  }

  /** A writer waits for everything queued before it. */
  async writeLock(options: LockOptions = {}): Promise<Lock> {
    return (await takeLock(this.session, this.name, "rwlock", WRITE, predecessorPolicy, options))!;
  }

  tryReadLock(): Promise<Lock | undefined> {
    return takeLock(this.session, this.name, "rwlock", READ, readerPolicy, { tryOnly: true });
  }

  tryWriteLock(): Promise<Lock | undefined> {
    return takeLock(this.session, this.name, "rwlock", WRITE, predecessorPolicy, { tryOnly: true });
  }

  async withReadLock<T>(fn: (lock: Lock) => Promise<T> | T, options: LockOptions = {}): Promise<T> {
    return runLocked(await this.readLock(options), fn);
  }

  async withWriteLock<T>(fn: (lock: Lock) => Promise<T> | T, options: LockOptions = {}): Promise<T> {
    return runLocked(await this.writeLock(options), fn);
  }
}
