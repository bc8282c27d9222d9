/**
 * Who waits on whom, for each kind of primitive. Pure functions of the queue ahead of a participant,
 * so each rule is unit-tested without etcd. A release wakes only those who can now proceed (design:
 * No herd): the next in line for an election or mutex, the run of readers behind a writer.
 */

export interface QueueEntry {
  key: string;
  createRevision: bigint;
  /** Present when the policy reads values. */
  value?: Buffer;
  /** The lease the key is on, as a decimal string (present with values). */
  lease?: string;
  /** The key's mod revision (present with values). */
  modRevision?: bigint;
}

export interface Blocking {
  /** Keys ahead that hold us back. */
  keys: QueueEntry[];
  /** How many of them must go before our turn may have come (1 for a mutex). */
  needed: number;
}

export interface QueuePolicy {
  /** What blocks us, given every entry ahead of us (ascending create revision); undefined: our turn. */
  blocking(ahead: QueueEntry[]): Blocking | undefined;
  /** Entries the first lookup fetches (0: all): enough to decide the uncontended case in one round trip. */
  lookahead: number;
  /** Whether entries carry values (a semaphore's limit, a read-write lock's mode). */
  readValues: boolean;
  /**
   * How many entries just ahead of us decide what blocks us (undefined: all of them): a re-read then
   * fetches only those, however long the queue.
   */
  nearest?: number;
  /** Checks the entries we read (e.g. a semaphore limit that disagrees); throws to give up. */
  check?(entries: QueueEntry[]): void;
}

/** Elections, mutexes and writers wait only on their immediate predecessor. */
export const predecessorPolicy: QueuePolicy = {
  lookahead: 1,
  readValues: false,
  nearest: 1,
  blocking: (ahead) => {
    const last = ahead.at(-1);
    return last ? { keys: [last], needed: 1 } : undefined;
  },
};

export const READ = Buffer.from("read");
export const WRITE = Buffer.from("write");
/** A key of unknown mode counts as a writer. */
const isWriter = (value: Buffer | undefined): boolean => !value?.equals(READ);

/** Readers wait only for the last writer ahead of them: a writer's release wakes the run of readers behind it. */
export const readerPolicy: QueuePolicy = {
  lookahead: 0,
  readValues: true,
  blocking: (ahead) => {
    const writer = ahead.findLast((e) => isWriter(e.value));
    return writer ? { keys: [writer], needed: 1 } : undefined;
  },
};

/**
 * At most `limit` holders: a waiter with n entries ahead needs n - limit + 1 of them gone. `check`
 * refuses entries queued with another limit (the limit travels in every permit's value).
 */
export function semaphorePolicy(limit: number, check: (entries: QueueEntry[]) => void): QueuePolicy {
  return {
    lookahead: limit,
    readValues: true,
    check,
    blocking: (ahead) => (ahead.length < limit ? undefined : { keys: ahead, needed: ahead.length - limit + 1 }),
  };
}
