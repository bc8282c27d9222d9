import { randomBytes } from "node:crypto";
import { stamp, type Stamp } from "../common/clock.js";
import type { Connection } from "../etcd/connection.js";
import { isLeaseExists, isLeaseNotFound } from "../etcd/errors.js";

/**
 * Grants a lease under an id we choose at random: if the grant's answer is lost and it is sent again,
 * the second one fails with "lease already exists" instead of leaking a second lease, and we adopt the
 * one we made (design: Safe to retry).
 */
export interface Grant {
  id: bigint;
  /** The TTL etcd granted, seconds. */
  ttl: number;
  /** When the grant was sent. */
  sentAt: Stamp;
}

export async function grantLease(
  conn: Connection,
  ttl: number,
  timeoutMs: number,
  id: bigint = randomLeaseId(),
): Promise<Grant> {
  const sentAt = stamp();
  try {
    const res = await conn.call<{ TTL: string }>(
      "Lease",
      "leaseGrant",
      { TTL: ttl, ID: id.toString() },
      { timeoutMs, idempotent: true, what: "grant lease" },
    );
    return { id, ttl: Number(res.TTL), sentAt };
  } catch (err) {
    if (!isLeaseExists(err)) throw err;
    const info = await conn.call<{ grantedTTL: string }>(
      "Lease",
      "leaseTimeToLive",
      { ID: id.toString() },
      { timeoutMs, idempotent: true, what: "read granted lease" },
    );
    return { id, ttl: Number(info.grantedTTL), sentAt };
  }
}

/** Revokes a lease; one that is already gone counts as revoked. */
export async function revokeLease(conn: Connection, leaseId: string, timeoutMs: number): Promise<void> {
  try {
    await conn.call("Lease", "leaseRevoke", { ID: leaseId }, { timeoutMs, idempotent: true, what: "revoke lease" });
  } catch (err) {
    if (!isLeaseNotFound(err)) throw err;
  }
}

/** A random positive 63-bit lease id (etcd ids are int64; 0 means "let etcd choose"). */
export function randomLeaseId(): bigint {
  const id = randomBytes(8).readBigUInt64BE() & 0x7fff_ffff_ffff_ffffn;
  return id === 0n ? 1n : id;
}
