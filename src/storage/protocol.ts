/**
 * @module storage/protocol
 * The bit order of the cache's ready bitmap (nydusd's `<blob>.chunk_map`): chunk i is bit
 * 7 - (i % 8) of byte i / 8, most significant bit first. The cache writes it; the FUSE fast paths
 * read it in reader threads from shared memory, so this file imports nothing (see
 * docs/architecture.md on worker threads). The device's read-ahead trigger bitmaps (a chunk whose
 * read must reach the main thread, where it starts the next read-ahead window) use the same order.
 */

/** The bit of the first chunk of a byte: chunks fill each byte from its most significant bit. */
const FIRST_CHUNK_BIT = 0x80;

/** Whether chunk `index` is marked ready in `bits`. */
export function chunkReady(bits: Uint8Array, index: number): boolean {
  return (bits[index >> 3]! & (FIRST_CHUNK_BIT >> (index & 7))) !== 0;
}

/** Marks chunk `index` ready in `bits`. */
export function markChunkReady(bits: Uint8Array, index: number): void {
  bits[index >> 3]! |= FIRST_CHUNK_BIT >> (index & 7);
}

/** Clears chunk `index` in `bits` (the read-ahead trigger bitmaps, the evicted-chunk set; the ready bitmap is cleared only as a whole, by BlobCache.empty). */
export function clearChunk(bits: Uint8Array, index: number): void {
  bits[index >> 3]! &= ~(FIRST_CHUNK_BIT >> (index & 7)) & 0xff;
}
