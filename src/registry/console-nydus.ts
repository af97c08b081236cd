/**
 * @module registry/console-nydus
 * What the console shows about a Nydus manifest: its RAFS version, chunk and blob counts (from the
 * bootstrap layer, read from the registry's own blob store and parsed with the bounds-checked RAFS
 * reader). Bootstraps are immutable, so the answer is cached by the bootstrap's digest; a
 * bootstrap that cannot be read is shown as unknown, never as an error of the page.
 */
import type { BlobProvider } from '../content/index.js';
import { openBootstrap, unpackBootstrapLayer } from '../format/rafs/index.js';
import { NydusAnnotation } from '../oci/index.js';
import type { Logger } from '../observe/index.js';

export interface NydusFacts {
  rafs: 5 | 6;
  chunks: number;
  blobs: number;
}

/** Bootstrap layers larger than this are not read for the page (a huge image's page stays fast). */
const MAX_BOOTSTRAP_LAYER = 64 << 20;
const CACHE_ENTRIES = 1000;

interface LayerLike {
  digest?: unknown;
  size?: unknown;
  annotations?: Record<string, unknown>;
}

/** The bootstrap layer's digest and size of a Nydus image manifest body; undefined for anything else. */
export function bootstrapLayerOf(body: Buffer): { digest: string; size: number } | undefined {
  let m: { layers?: unknown };
  try {
    m = JSON.parse(body.toString('utf8')) as { layers?: unknown };
  } catch {
    return undefined;
  }
  if (!Array.isArray(m.layers)) return undefined;
  const l = (m.layers as LayerLike[]).find((x) => x?.annotations?.[NydusAnnotation.BOOTSTRAP] === 'true');
  if (!l || typeof l.digest !== 'string' || typeof l.size !== 'number') return undefined;
  return { digest: l.digest, size: l.size };
}

export class ConsoleNydus {
  readonly #store: BlobProvider;
  readonly #log: Logger;
  /** bootstrap digest → facts (null: unreadable); insertion order = age */
  readonly #cache = new Map<string, NydusFacts | null>();

  constructor(store: BlobProvider, log: Logger) {
    this.#store = store;
    this.#log = log;
  }

  /** Facts of the Nydus manifest with this body; undefined when it is not one or they cannot be read. */
  async of(body: Buffer): Promise<NydusFacts | undefined> {
    const layer = bootstrapLayerOf(body);
    if (!layer) return undefined;
    if (this.#cache.has(layer.digest)) return this.#cache.get(layer.digest) ?? undefined;
    const facts = await this.#read(layer);
    if (this.#cache.size >= CACHE_ENTRIES) this.#cache.delete(this.#cache.keys().next().value as string);
    this.#cache.set(layer.digest, facts);
    return facts ?? undefined;
  }

  async #read(layer: { digest: string; size: number }): Promise<NydusFacts | null> {
    if (layer.size > MAX_BOOTSTRAP_LAYER) return null;
    try {
      const bootstrap = await unpackBootstrapLayer(await this.#store.read(layer.digest));
      const b = openBootstrap(bootstrap);
      return { rafs: b.version, blobs: b.blobs.length, chunks: b.blobs.reduce((n, x) => n + x.chunkCount, 0) };
    } catch (err) {
      this.#log.warn({ bootstrap: layer.digest, err: (err as Error).message }, 'console: bootstrap layer not readable');
      return null;
    }
  }
}
