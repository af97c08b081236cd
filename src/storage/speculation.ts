/**
 * @module storage/speculation
 * How far an on-demand miss is amplified (issue 15: a cold start importing hundreds of small
 * modules made one request per file, though a package's files lie next to each other in the blob —
 * the tar source writes them in tar order). Pure bookkeeping, no I/O; the device asks it before
 * each miss and tells it what was fetched ahead and what of that was read.
 *
 * - The blob is seen as regions of `max` compressed bytes. A miss is amplified only in a region that
 *   has missed before (a cluster of imports from one package, page faults in one part of a library);
 *   a first touch somewhere stays what was asked.
 * - Each region's window starts at `window` and adapts to whether the chunks it fetched ahead were
 *   read: at each miss there, once at least a window's worth was fetched ahead in it, the window
 *   doubles up to `max` if at least half of those bytes were read, and halves down to a quarter of
 *   the starting window if under a quarter were. A package whose modules are all imported grows to
 *   large requests; a library faulting in scattered code pages stays small.
 * - A byte budget bounds the waste: amplified bytes fetched and not read yet (`outstanding`) are at
 *   most `budget`; a miss is amplified by at most what is left of it. Bytes amplified and never read
 *   stay charged, so a workload that does not read what was fetched ahead soon stops being amplified.
 */

/** Regions remembered (least recently missed forgotten first). */
export const REGIONS_KEPT = 1024;
/** Grow a region's window when at least this share of what it fetched ahead was read. */
export const GROW_AT = 0.5;
/** Shrink it when less than this share was. */
export const SHRINK_AT = 0.25;

export interface SpeculationPolicy {
  /** starting window, compressed bytes (0 = never amplify) */
  window: number;
  /** largest window, and the size of a region */
  max: number;
  /** amplified bytes fetched and not read yet, at most */
  budget: number;
}

interface Region {
  window: number;
  /** amplified bytes fetched ahead in this region, and of them read */
  issued: number;
  used: number;
}

export class Speculation {
  /** amplified bytes fetched and not read yet */
  outstanding = 0;
  /** totals: amplified bytes fetched, and of them read */
  issued = 0;
  used = 0;
  private readonly min: number;
  private readonly regions = new Map<number, Region>();

  constructor(private readonly policy: SpeculationPolicy) {
    this.min = Math.floor(Math.max(0, policy.window) / 4);
  }

  /**
   * A miss whose request starts at compressed `offset`: how many bytes past the request it may be
   * amplified by — 0 in a region missed for the first time, or when the budget is spent. Adapts
   * the region's window.
   */
  onMiss(offset: number): number {
    if (this.policy.window <= 0 || this.policy.max <= 0) return 0;
    const key = this.keyOf(offset);
    const r = this.regions.get(key);
    this.regions.delete(key);
    if (!r) {
      this.regions.set(key, { window: Math.min(this.policy.window, this.policy.max), issued: 0, used: 0 });
      if (this.regions.size > REGIONS_KEPT) this.regions.delete(this.regions.keys().next().value!);
      return 0;
    }
    this.regions.set(key, r);
    if (r.issued >= r.window) {
      const share = r.used / r.issued;
      if (share >= GROW_AT) r.window = Math.min(this.policy.max, r.window * 2);
      else if (share < SHRINK_AT) r.window = Math.max(this.min, Math.floor(r.window / 2));
    }
    return Math.max(0, Math.min(r.window, this.policy.budget - this.outstanding));
  }

  /** The current window of the region holding `offset` (undefined: never missed there). */
  windowAt(offset: number): number | undefined {
    return this.regions.get(this.keyOf(offset))?.window;
  }

  /** `bytes` fetched ahead by an amplification, at compressed `offset`. */
  fetched(offset: number, bytes: number): void {
    this.outstanding += bytes;
    this.issued += bytes;
    const r = this.regions.get(this.keyOf(offset));
    if (r) r.issued += bytes;
  }

  /** `bytes` fetched ahead at compressed `offset` that a reader has now read. */
  read(offset: number, bytes: number): void {
    this.outstanding = Math.max(0, this.outstanding - bytes);
    this.used += bytes;
    const r = this.regions.get(this.keyOf(offset));
    if (r) r.used += bytes;
  }

  private keyOf(offset: number): number {
    return Math.floor(offset / Math.max(1, this.policy.max));
  }
}
