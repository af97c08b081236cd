import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { randomBytes, createHash } from 'node:crypto';
import { startRegistry, type RegistryHandle } from '../registry/index.js';
import { RegistryClient, parseReference } from './index.js';
import { MediaType } from '../oci/index.js';

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const PASSWORD = 'S3cretAdmin';
let dir: string;
let reg: RegistryHandle;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ferry-remote-reg-'));
  reg = await startRegistry({ listen: '127.0.0.1:0', dataDir: dir, adminPassword: PASSWORD });
});
after(async () => {
  await reg?.close();
  await rm(dir, { recursive: true, force: true });
});

test('ferry registry: token auth push/pull, chunked upload, ranges, mount; anonymous pull of library only', async () => {
  const c = new RegistryClient({ credentials: () => ({ username: 'admin', password: PASSWORD }), uploadChunkSize: 100_000 });
  const blob = randomBytes(250_000);
  await c.pushBlob(reg.host, 'library/app', sha(blob), blob.length, () => Readable.from([blob]));
  const cfg = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha(blob)] } }));
  const config = await c.pushBuffer(reg.host, 'library/app', cfg, MediaType.OCI_CONFIG);
  const man = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OCI_MANIFEST,
      config,
      layers: [{ mediaType: MediaType.OCI_LAYER_GZIP, digest: sha(blob), size: blob.length }],
    }),
  );
  const digest = await c.putManifest(parseReference(`${reg.host}/library/app:v1`), man, MediaType.OCI_MANIFEST);
  assert.equal(digest, sha(man));
  const parts: Buffer[] = [];
  for await (const x of await c.getBlob(reg.host, 'library/app', sha(blob), { range: [10, 99] })) parts.push(x as Buffer);
  assert.deepEqual(Buffer.concat(parts), blob.subarray(10, 100));
  assert.equal(await c.mountBlob(reg.host, 'team/other', sha(blob), 'library/app'), true);
  assert.equal(await c.headBlob(reg.host, 'team/other', sha(blob)), blob.length);

  const anon = new RegistryClient({ credentials: () => undefined });
  assert.equal((await anon.getManifest(parseReference(`${reg.host}/library/app:v1`))).digest, digest);
  await assert.rejects(
    anon.pushBuffer(reg.host, 'library/app', Buffer.from('x'), MediaType.OCI_LAYER),
    (e: { code?: string }) => e.code === 'UNAUTHENTICATED' || e.code === 'PERMISSION_DENIED',
  );
  await assert.rejects(anon.getManifest(parseReference(`${reg.host}/team/other:nope`)), (e: { code?: string }) =>
    ['UNAUTHENTICATED', 'PERMISSION_DENIED', 'NOT_FOUND'].includes(e.code ?? ''),
  );
  const wrong = new RegistryClient({ credentials: () => ({ username: 'admin', password: 'nope' }) });
  await assert.rejects(wrong.pushBuffer(reg.host, 'library/app', Buffer.from('y'), MediaType.OCI_LAYER), { code: 'UNAUTHENTICATED' });
});
