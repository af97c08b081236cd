/**
 * @module p2p/peer/speculate
 * Objects this host reads alone. When the scheduler answers a range task's registration with
 * back-to-source and `objectAlone` (no other host has a peer of any task of that object), this
 * host's next range tasks of the object start their origin fetch at once, while they register:
 * the scheduler's answer is predictable, so a lazy loader's read no longer waits for the
 * registration round trip first (p2p/peer/download). The note lasts `ttlMs` and every later
 * answer renews or clears it: as soon as another host reads the object (N nodes starting the
 * same image), registrations answer with parents or without `objectAlone`, and range tasks wait
 * for the scheduler again, so sharing — and the origin's egress — stay as they were.
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
