/**
 * @module accel/chunk-dict
 * The automatic chunk dictionary of a project (`chunk_dict_auto`): the Nydus images this service
 * converted most recently in the same project (Harbor's first path component) of the same registry,
 * read back from the task queue — no other state, so it survives restarts and is the same for every
 * worker sharing the queue. Each image is pinned by the digest the conversion pushed; at most
 * `max` of them (the bound on what a conversion loads as its dictionary). A conversion is built
 * against them together (convert's `chunkDictRefs`): chunks one of them already stores are
 * referenced, not stored again. The idea is upstream's `nydusify chunkdict generate` (a dictionary
 * from the images a registry holds); the selection here is Ferry's own.
 */
import { formatReference, parseReference, withDigest, type ImageReference } from '../remote/index.js';
import type { TaskView } from './protocol.js';

/** Tasks read from the queue to find the dictionary images (newest first). */
export const CHUNK_DICT_SCAN = 500;

/** The project of a repository: its first path component. */
export function projectOf(repository: string): string {
  return repository.split('/')[0]!;
}

/**
 * The dictionary for a conversion to `target`: the newest completed conversions (tasks newest
 * first) into the same registry and project, distinct target digests, at most `max`.
 */
export function pickChunkDict(tasks: readonly TaskView[], target: ImageReference, max: number): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const t of tasks) {
    if (out.length >= max) break;
    if (t.status !== 'COMPLETED' || !/^sha256:[0-9a-f]{64}$/.test(t.target_digest) || seen.has(t.target_digest)) continue;
    let ref: ImageReference;
    try {
      ref = parseReference(t.target);
    } catch {
      continue;
    }
    if (ref.registry !== target.registry || projectOf(ref.repository) !== projectOf(target.repository)) continue;
    seen.add(t.target_digest);
    out.push(formatReference(withDigest({ registry: ref.registry, repository: ref.repository }, t.target_digest)));
  }
  return out;
}
