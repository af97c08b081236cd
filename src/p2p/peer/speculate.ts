/**
 * @module p2p/peer/speculate
 * Objects this host reads alone. When the scheduler answers a range task's registration with
 * back-to-source and `objectAlone` (no other host has a peer of any task of that object), this
 * host's next one-piece range tasks of the object go to the origin at once and register with
 * their last report (one batched request, `POST /api/v1/events` with `register`): the scheduler's
 * answer is predictable, so a lazy loader's read waits for no registration round trip and costs
 * the scheduler no request of its own (p2p/peer/download). The note lasts `ttlMs` and every
 * answer renews or clears it — the late registrations' too: once another host reads the object
 * (N nodes starting the same image), the answers say so, and range tasks register first again,
 * so sharing — and the origin's egress — stay as they were, but for the reads in flight then.
 */
import { type Clock, systemClock } from '../../core/index.js';

/** Most objects remembered (the oldest note goes first). */
const MAX_OBJECTS = 10_000;

export class SoloObjects {
  private readonly until = new Map<string, number>();

  constructor(
    private readonly ttlMs = 2_000,
    private readonly clock: Clock = systemClock,
  ) {}

  /** The scheduler's latest answer for a range task of `objectId`: alone or not. */
  note(objectId: string, alone: boolean): void {
    this.until.delete(objectId);
    if (!alone) return;
    this.until.set(objectId, this.clock.now() + this.ttlMs);
    if (this.until.size > MAX_OBJECTS) this.until.delete(this.until.keys().next().value!);
  }

  /** Whether this host read `objectId` alone at its last answer, within the last `ttlMs`. */
  alone(objectId: string): boolean {
    const u = this.until.get(objectId);
    if (u === undefined) return false;
    if (u < this.clock.now()) {
      this.until.delete(objectId);
      return false;
    }
    return true;
  }
}
