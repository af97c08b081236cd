/**
 * @module accel/workdir
 * One accel process per work dir, and its scratch space.
 *
 * The lock is an exclusive SQLite lock on `<work_dir>/accel.lock` (a POSIX record lock underneath),
 * held while the service runs and released by the kernel when the process dies, SIGKILL included.
 * A second accel on the same work dir would re-queue the first one's running tasks and run them
 * twice, so it is refused. Holding the lock also proves that the scratch dirs under the work dir
 * (`ferry-convert-*`, up to the size of an image) belong to no running conversion: a predecessor
 * killed mid-conversion left them, and they are removed at start.
 *
 * Scratch goes to the work dir itself, or, with `driver.config.work_dir` elsewhere (a big disk,
 * possibly shared by several accels, possibly /tmp), to `ferry-accel-scratch-<hash of the work
 * dir>/` there: a dir only the holder of this work dir's lock uses. Nothing else in a shared
 * directory is ever touched.
 */
import { mkdirSync, readdirSync, readFileSync, lstatSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createHash } from 'node:crypto';
import Database from 'better-sqlite3';
import { FerryError } from '../core/index.js';

/** The prefix of the convert pipeline's per-conversion scratch dirs (convert/convert.ts). */
export const SCRATCH_PREFIX = 'ferry-convert-';

export class WorkDirLock {
  private constructor(
    private readonly db: Database.Database,
    readonly workDir: string,
  ) {}

  /** Takes the lock of `workDir` (created if missing) or throws FAILED_PRECONDITION naming the holder. */
  static acquire(workDir: string): WorkDirLock {
    mkdirSync(workDir, { recursive: true });
    const file = join(workDir, 'accel.lock');
    const db = new Database(file, { timeout: 0 });
    try {
      // EXCLUSIVE locking mode: the lock taken by the first write is kept until the connection closes.
      db.pragma('locking_mode = EXCLUSIVE');
      db.exec('BEGIN EXCLUSIVE; CREATE TABLE IF NOT EXISTS owner (pid INTEGER NOT NULL, started TEXT NOT NULL); DELETE FROM owner; COMMIT');
      db.prepare('INSERT INTO owner (pid, started) VALUES (?, ?)').run(process.pid, new Date().toISOString());
    } catch (err) {
      db.close();
      const code = (err as { code?: unknown }).code;
      if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') {
        let holder = '';
        try {
          holder = ` (pid ${Number(readFileSync(join(workDir, 'accel.pid'), 'utf8'))})`;
        } catch {
          /* unknown */
        }
        throw new FerryError(
          'FAILED_PRECONDITION',
          `work dir ${workDir} is in use by another running ferry accel${holder}: two services on one work dir would run the same tasks twice; ` +
            'give each its own provider.work_dir (or --work-dir)',
          { cause: err },
        );
      }
      throw new FerryError('UNAVAILABLE', `work dir lock ${file}: ${(err as Error).message}`, { cause: err });
    }
    // for the message above only: the lock itself is what counts
    writeFileSync(join(workDir, 'accel.pid'), `${process.pid}\n`);
    return new WorkDirLock(db, workDir);
  }

  release(): void {
    if (this.db.open) this.db.close();
  }
}

/** Where the conversions of the accel on `workDir` put their scratch dirs (see the module comment). */
export function scratchDirOf(workDir: string, driverWorkDir?: string): string {
  const own = resolve(workDir);
  if (driverWorkDir === undefined || resolve(driverWorkDir) === own) return own;
  const id = createHash('sha256').update(realpathSync(own)).digest('hex').slice(0, 12);
  return join(resolve(driverWorkDir), `ferry-accel-scratch-${id}`);
}

/**
 * Removes the `ferry-convert-*` dirs in `scratchDir` (call with the work dir lock held: they are
 * then a dead process's). Returns their names.
 */
export function removeScratchLeftovers(scratchDir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(scratchDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const removed: string[] = [];
  for (const name of names) {
    if (!name.startsWith(SCRATCH_PREFIX)) continue;
    const p = join(scratchDir, name);
    if (!lstatSync(p).isDirectory()) continue;
    rmSync(p, { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}
