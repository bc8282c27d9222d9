/**
 * 32-bit hashing for shard placement: FNV-1a over UTF-8, finished with murmur3's fmix32 so that nearby
 * inputs (shard 7, shard 8) land far apart. Not cryptographic; stable across processes, versions of
 * Node and platforms, which is all placement needs.
 */

/** murmur3's 32-bit finaliser: every input bit affects every output bit. */
export function mix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** FNV-1a of the UTF-8 bytes of `text`, mixed. */
export function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (const byte of Buffer.from(text)) {
    h ^= byte;
    h = Math.imul(h, 0x01000193);
  }
  return mix32(h);
}
