/**
 * @module p2p/scheduler
 * The P2P scheduler (Dragonfly scheduler + the manager's preheat job API): `startScheduler`.
 */
export { startScheduler, type StartSchedulerOptions, type SchedulerHandle } from './server.js';
export { SchedulerService } from './service.js';
export { PreheatJobs, type Job } from './preheat.js';
export { score, isBadParent, filterReason, loadQuality, locationAffinity, idcAffinity } from './evaluator.js';
