import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { MemoryBlobStore } from '../content/index.js';
import { createLogger } from '../observe/index.js';
import { ConsoleNydus, bootstrapLayerOf } from './console-nydus.js';

const BOOT = 'containerd.io/snapshot/nydus-bootstrap';
const manifest = (layers: unknown[]) => Buffer.from(JSON.stringify({ schemaVersion: 2, layers }));

test('bootstrapLayerOf: only a manifest with a well-formed bootstrap layer', () => {
  const d = `sha256:${'b'.repeat(64)}`;
  assert.deepEqual(
    bootstrapLayerOf(
      manifest([
        { digest: `sha256:${'a'.repeat(64)}`, size: 9 },
        { digest: d, size: 7, annotations: { [BOOT]: 'true' } },
      ]),
    ),
    {
      digest: d,
      size: 7,
    },
  );
  assert.equal(bootstrapLayerOf(manifest([{ digest: d, size: 7 }])), undefined, 'no bootstrap annotation');
  assert.equal(bootstrapLayerOf(manifest([{ digest: d, size: '7', annotations: { [BOOT]: 'true' } }])), undefined, 'size not a number');
  assert.equal(bootstrapLayerOf(Buffer.from('{"manifests":[]}')), undefined, 'an index');
  assert.equal(bootstrapLayerOf(Buffer.from('not json')), undefined);
});

test('an unreadable bootstrap is "unknown" for the page, asked once, and never read when too large', async () => {
  const store = new MemoryBlobStore();
  const junk = Buffer.from('this is not a gzip tar holding image/image.boot');
  const digest = `sha256:${createHash('sha256').update(junk).digest('hex')}`;
  await store.startUpload('u');
  await store.append('u', 0, Readable.from([junk]));
  await store.commitUpload('u', digest);
  let reads = 0;
  const counting = {
    stat: (x: string) => store.stat(x),
    list: () => store.list(),
    read: (x: string, r?: { start: number; end: number }) => {
      reads++;
      return store.read(x, r);
    },
  };
  const nydus = new ConsoleNydus(counting, createLogger({ name: 't', level: 'silent' }));
  const body = manifest([{ digest, size: junk.length, annotations: { [BOOT]: 'true' } }]);
  assert.equal(await nydus.of(body), undefined);
  assert.equal(await nydus.of(body), undefined);
  assert.equal(reads, 1, 'the answer is cached by bootstrap digest');
  const huge = manifest([{ digest: `sha256:${'c'.repeat(64)}`, size: 65 << 20, annotations: { [BOOT]: 'true' } }]);
  assert.equal(await nydus.of(huge), undefined);
  assert.equal(reads, 1, 'a bootstrap layer over the limit is not read');
});
