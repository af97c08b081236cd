/** The bench page's report finder: newest by finishedAt, one level down, bad files skipped and named. */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../../test/support/paths.js';
import { latestBenchReport } from './console-bench.js';

describe('console bench report', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ferry-console-bench-'));
    // a real report written by `ferry bench` (docs/results), twice with different end times
    const real = JSON.parse(await readFile(join(ROOT, 'docs/results/bench-runs/quick-all-modes/results.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    for (const [name, finishedAt] of [
      ['older', '2026-01-01T00:00:00.000Z'],
      ['newer', '2026-02-01T00:00:00.000Z'],
    ] as const) {
      await mkdir(join(dir, name));
      await writeFile(join(dir, name, 'results.json'), JSON.stringify({ ...real, finishedAt }));
    }
    await mkdir(join(dir, 'broken'));
    await writeFile(join(dir, 'broken', 'results.json'), '{"schema":');
    await mkdir(join(dir, 'alien'));
    await writeFile(join(dir, 'alien', 'results.json'), JSON.stringify({ schema: 'other/v1', finishedAt: '2027-01-01' }));
    await mkdir(join(dir, 'empty'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('shows the newest report and names the files it could not read', async () => {
    const v = await latestBenchReport(dir);
    assert.equal(v.name, 'newer');
    assert.ok(v.rows.length > 0 && v.rows.every((r) => r.readyMedianMs > 0), JSON.stringify(v.rows[0]));
    assert.ok(v.modes.length > 0);
    assert.deepEqual(v.skipped.sort(), [
      'alien/results.json: not a ferry-bench/v2 report (schema: Invalid input: expected "ferry-bench/v2")',
      'broken/results.json: not JSON',
    ]);
  });

  it('says when nothing is configured, found or readable', async () => {
    assert.deepEqual(await latestBenchReport(undefined), { configured: false, modes: [], rows: [], notes: [], skipped: [] });
    assert.equal((await latestBenchReport(join(dir, 'empty'))).name, undefined);
    assert.match((await latestBenchReport(join(dir, 'missing'))).skipped[0] ?? '', /ENOENT/);
  });
});
