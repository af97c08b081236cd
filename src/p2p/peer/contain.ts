/**
 * @module p2p/peer/contain
 * Range tasks served from tasks that contain them. A lazy loader's reads on two nodes rarely ask
 * for identical ranges, so a range task is also served from a task of the same object that holds
 * all of its bytes — the whole object or a larger range — here (the proxy reads it directly) or on
 * a parent (the scheduler names the containing task; the parent fills the asked range task from it
 * piece by piece, as soon as the covering pieces exist, and serves it like any other task).
 */
import { FerryError, asFerryError } from '../../core/index.js';
import { objectTaskId, pieceDigest, piecesForRange, rangeContains, type RangeSpec } from '../common/index.js';
import type { PieceStore, TaskEntry } from './store.js';

/** Longest wait for the container's next piece before the copy gives up (the container stalled). */
const STALL_MS = 60_000;
/** One wait for container progress; the copy re-checks the container's state after each. */
const POLL_MS = 2_000;

/** The range tasks held here, by object, to find one containing a range. */
export class RangeIndex {
  private readonly byObject = new Map<string, Map<string, TaskEntry>>();
  private seeded = false;

  constructor(private readonly store: PieceStore) {}

  add(entry: TaskEntry): void {
    if (!entry.meta.range) return;
    const key = objectTaskId({ url: entry.meta.url, ...entry.meta.idOptions });
    let m = this.byObject.get(key);
    if (!m) this.byObject.set(key, (m = new Map()));
    m.set(entry.id, entry);
  }

  /**
   * A range task of object `objectId` held here that contains `r` and has or gets its bytes
   * (complete or downloading): the complete one first. Tasks evicted or replaced are forgotten.
   */
  find(objectId: string, r: RangeSpec): TaskEntry | undefined {
    this.seed();
    const m = this.byObject.get(objectId);
    if (!m) return undefined;
    let best: TaskEntry | undefined;
    for (const [id, e] of m) {
      if (this.store.get(id) !== e) {
        m.delete(id);
        continue;
      }
      if (!rangeContains(e.meta.range, r) || !(e.complete || e.downloading)) continue;
      if (e.complete) return e;
      best ??= e;
    }
    if (m.size === 0) this.byObject.delete(objectId);
    return best;
  }

  /** Range tasks restored from disk at start are indexed on first use. */
  private seed(): void {
    if (this.seeded) return;
    this.seeded = true;
    for (const e of this.store.list()) this.add(e);
  }
}

/** Origin byte range of `entry`'s content (a range task's range, or the whole object). */
function spanOf(entry: TaskEntry): RangeSpec & { total: number } {
  return entry.meta.range ?? { start: 0, end: entry.meta.contentLength - 1, total: entry.meta.contentLength };
}

/**
 * Fills range task `to` from `from`, a task of the same object containing its range: each piece is
 * copied as soon as the pieces of `from` covering it are present. Fails when `from` stops without
 * them (its download failed, or it fetches only other pieces) or makes no progress for a minute.
 */
export async function copyContained(from: TaskEntry, to: TaskEntry, signal: AbortSignal): Promise<void> {
  const base = spanOf(from).start;
  const start = spanOf(to).start;
  from.refs++;
  try {
    for (let n = 0; n < to.meta.pieceCount; n++) {
      if (to.has(n)) continue;
      const r = to.range(n);
      const off = start + r.offset - base;
      for (const m of piecesForRange(off, off + r.length - 1, from.meta.pieceLength)) await waitFor(from, m, signal);
      const buf = await from.readRange(off, r.length);
      if (!to.has(n)) await to.writePiece(n, buf, pieceDigest(buf));
    }
  } finally {
    from.refs--;
  }
}

/** Resolves when piece `n` of `t` is present; bounded by the container's state and STALL_MS. */
async function waitFor(t: TaskEntry, n: number, signal: AbortSignal): Promise<void> {
  for (let waited = 0; !t.has(n); waited += POLL_MS) {
    if (signal.aborted) throw new FerryError('CANCELED', 'peer stopping');
    if (!t.downloading) throw new FerryError('UNAVAILABLE', `task ${t.id} holds no piece ${n} and is not downloading`);
    if (waited >= STALL_MS) throw new FerryError('UNAVAILABLE', `task ${t.id}: no piece ${n} after ${STALL_MS / 1000} s`);
    await t.waitProgress(t.finishedCount, POLL_MS, signal);
  }
}

/** Runs `copyContained` as `to`'s download: piece lists report it in progress, then done or failed. */
export function startCopy(store: PieceStore, from: TaskEntry, to: TaskEntry, signal: AbortSignal): void {
  if (to.downloading || to.complete) return;
  to.want();
  const run = copyContained(from, to, signal).then(
    async () => {
      to.downloading = undefined;
      await store.markDone(to);
      to.stopped();
    },
    async (err: unknown) => {
      to.downloading = undefined;
      to.fail(asFerryError(err, 'UNAVAILABLE'));
      to.stopped();
      if (store.get(to.id) === to) await store.delete(to.id).catch(() => undefined);
    },
  );
  to.downloading = run;
  run.catch(() => undefined);
}
