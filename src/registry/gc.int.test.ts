/**
 * Garbage collection: unreferenced blobs go, referenced ones stay, dry-run deletes nothing, young
 * blobs and uploads in progress are kept, and manifests committed while gc runs never end up
 * pointing at a deleted blob. Also runs the `ferry registry gc` CLI against a live registry.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FERRY_BIN } from '../../test/support/paths.js';
import { startTestRegistry, makeImage, type TestRegistry } from './testing/client.js';
import { runGc } from './index.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const run = promisify(execFile);

async function push(reg: TestRegistry, repo: string, tag: string, seed: string): Promise<ReturnType<typeof makeImage>> {
  const img = makeImage(seed);
  await reg.pushBlob(repo, img.config);
  await reg.pushBlob(repo, img.layer);
  assert.equal((await reg.putManifest(repo, tag, img.manifest, OCI_MANIFEST)).status, 201);
  return img;
}

function blobFile(dataDir: string, digest: string): string {
  const hex = digest.slice(7);
  return join(dataDir, 'blobs', 'sha256', hex.slice(0, 2), hex);
}

describe('gc', () => {
  let reg: TestRegistry;
  before(async () => {
    reg = await startTestRegistry();
  });
  after(async () => {
    await reg.destroy();
  });

  it('dry-run reports, a real run deletes only unreferenced blobs', async () => {
    const keep = await push(reg, 'library/keep', 'v1', 'gc-keep');
    const drop = await push(reg, 'library/drop', 'v1', 'gc-drop');
    assert.equal((await reg.req(`/v2/library/drop/manifests/${drop.digest}`, { method: 'DELETE' })).status, 202);
    const dry = await runGc({ dataDir: reg.dataDir, dryRun: true, config: { gc: { minAge: 0 } } });
    assert.deepEqual(new Set(dry.blobsDeleted), new Set([drop.configDigest, drop.layerDigest]));
    assert.equal((await reg.req(`/v2/library/drop/blobs/${drop.layerDigest}`, { method: 'HEAD' })).status, 200, 'dry run deleted nothing');
    const real = await runGc({ dataDir: reg.dataDir, config: { gc: { minAge: 0 } } });
    assert.deepEqual(new Set(real.blobsDeleted), new Set([drop.configDigest, drop.layerDigest]));
    assert.equal(real.bytesFreed, drop.config.length + drop.layer.length);
    assert.equal((await reg.req(`/v2/library/drop/blobs/${drop.layerDigest}`, { method: 'HEAD' })).status, 404);
    for (const d of [keep.configDigest, keep.layerDigest]) {
      const r = await reg.req(`/v2/library/keep/blobs/${d}`);
      assert.equal(r.status, 200);
      assert.equal(
        `sha256:${createHash('sha256')
          .update(Buffer.from(await r.arrayBuffer()))
          .digest('hex')}`,
        d,
      );
    }
    // The blob can be pushed again after collection.
    await reg.pushBlob('library/drop', drop.layer);
    assert.equal((await reg.req(`/v2/library/drop/blobs/${drop.layerDigest}`, { method: 'HEAD' })).status, 200);
  });

  it('keeps young blobs (a push whose manifest has not arrived) and uploads in progress', async () => {
    const data = randomBytes(500);
    const digest = await reg.pushBlob('library/young', data);
    const r1 = await reg.req('/v2/library/young/blobs/uploads/', { method: 'POST' });
    const loc = r1.headers.get('location')!;
    const part = randomBytes(300);
    assert.equal((await reg.req(loc, { method: 'PATCH', body: part.subarray(0, 100) })).status, 202);
    const res = await runGc({ dataDir: reg.dataDir, config: { gc: { minAge: '1h' } } });
    assert.ok(!res.blobsDeleted.includes(digest));
    assert.equal(res.uploadsRemoved, 0);
    const g = await reg.req(`/v2/library/young/blobs/${digest}`, { method: 'HEAD' });
    assert.equal(g.status, 200);
    assert.equal((await reg.req(loc, { method: 'PATCH', body: part.subarray(100), headers: { 'content-range': '100-299' } })).status, 202);
    const d2 = `sha256:${createHash('sha256').update(part).digest('hex')}`;
    assert.equal((await reg.req(`${loc}?digest=${d2}`, { method: 'PUT' })).status, 201);
    // With minAge 0 even the upload in progress must survive: it is not a blob yet.
    const r2 = await reg.req('/v2/library/young/blobs/uploads/', { method: 'POST' });
    const loc2 = r2.headers.get('location')!;
    await reg.req(loc2, { method: 'PATCH', body: part });
    await runGc({ dataDir: reg.dataDir, config: { gc: { minAge: 0 } } });
    assert.equal((await reg.req(`${loc2}?digest=${d2}`, { method: 'PUT' })).status, 201);
  });

  it('manifests committed during a run never reference a deleted blob', async () => {
    for (let round = 0; round < 4; round++) {
      const imgs = Array.from({ length: 6 }, (_, i) => makeImage(`race-${round}-${i}`));
      for (const img of imgs) {
        await reg.pushBlob('library/race', img.config);
        await reg.pushBlob('library/race', img.layer);
      }
      const pushes = imgs.map(async (img, i) => {
        await new Promise((r) => setTimeout(r, i * 2));
        return (await reg.putManifest('library/race', `r${round}-${i}`, img.manifest, OCI_MANIFEST)).status;
      });
      const [statuses] = await Promise.all([Promise.all(pushes), runGc({ dataDir: reg.dataDir, config: { gc: { minAge: 0 } } })]);
      imgs.forEach((img, i) => {
        assert.ok(statuses[i] === 201 || statuses[i] === 400, `status ${statuses[i]}`);
        if (statuses[i] === 201) {
          for (const d of [img.configDigest, img.layerDigest]) {
            assert.deepEqual(readFileSync(blobFile(reg.dataDir, d)), d === img.configDigest ? img.config : img.layer);
          }
        }
      });
    }
    // Every stored manifest's blobs are present.
    const tags = ((await (await reg.req('/v2/library/race/tags/list')).json()) as { tags: string[] }).tags;
    for (const t of tags) {
      const m = (await (await reg.req(`/v2/library/race/manifests/${t}`)).json()) as {
        config: { digest: string };
        layers: Array<{ digest: string }>;
      };
      for (const d of [m.config.digest, ...m.layers.map((l) => l.digest)]) {
        assert.equal((await reg.req(`/v2/library/race/blobs/${d}`, { method: 'HEAD' })).status, 200);
      }
    }
  });

  it('ferry registry gc runs against a live registry', async () => {
    const drop = await push(reg, 'library/cli', 'v1', 'gc-cli');
    await reg.req(`/v2/library/cli/manifests/${drop.digest}`, { method: 'DELETE' });
    const dry = await run(process.execPath, [FERRY_BIN, 'registry', 'gc', '--data', reg.dataDir, '--dry-run', '--min-age', '0s'], {
      env: { ...process.env, FERRY_LOG_LEVEL: 'silent' },
    });
    const out = JSON.parse(dry.stdout) as { dryRun: boolean; deleted: string[] };
    assert.equal(out.dryRun, true);
    assert.ok(out.deleted.includes(drop.layerDigest));
    const real = await run(process.execPath, [FERRY_BIN, 'registry', 'gc', '--data', reg.dataDir, '--min-age', '0s'], {
      env: { ...process.env, FERRY_LOG_LEVEL: 'silent' },
    });
    assert.ok((JSON.parse(real.stdout) as { deleted: string[] }).deleted.includes(drop.layerDigest));
    assert.equal((await reg.req(`/v2/library/cli/blobs/${drop.layerDigest}`, { method: 'HEAD' })).status, 404);
  });
});
