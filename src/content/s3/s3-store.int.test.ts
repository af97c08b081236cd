/**
 * The S3 blob store against a real radosgw (test/support/ceph.ts): the BlobStore contract, an upload
 * continued by a second store instance (another replica), blobs assembled from large chunks by
 * server-side copy and from small chunks by merging, failed appends, presigned GETs.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { startRadosgw, s3ClientConfig, type RadosgwInstance } from '../../../test/support/ceph.js';
import { blobStoreSuite } from '../testsuite.js';
import { S3BlobStore } from './s3-store.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

const MiB = 1024 * 1024;

function sha(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

async function readAll(r: Readable): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of r) out.push(c as Buffer);
  return Buffer.concat(out);
}

describe('S3 blob store on radosgw', { timeout: 300_000 }, () => {
  let s3: RadosgwInstance;
  const stores: S3BlobStore[] = [];
  const open = (prefix: string, chunkBytes?: number): S3BlobStore => {
    const store = new S3BlobStore({
      bucket: s3.bucket!,
      prefix,
      client: s3ClientConfig(s3),
      ...(chunkBytes ? { chunkBytes } : {}),
    });
    stores.push(store);
    return store;
  };
  const keys = async (prefix: string): Promise<string[]> => {
    const c = new S3Client(s3ClientConfig(s3));
    try {
      const out = await c.send(new ListObjectsV2Command({ Bucket: s3.bucket!, Prefix: prefix }));
      return (out.Contents ?? []).map((o) => o.Key!.slice(prefix.length)).sort();
    } finally {
      c.destroy();
    }
  };

  before(async () => {
    s3 = await startRadosgw({ bucket: 'blobs' });
  });
  after(async () => {
    for (const s of stores) await s.close();
    await s3?.stop();
  });

  blobStoreSuite('s3', async () => ({ store: open(`t-${randomUUID()}/`), cleanup: async () => undefined }));

  it('an upload started by one replica is continued and committed by another (read back to verify)', async () => {
    const prefix = `resume-${randomUUID()}/`;
    const a = open(prefix);
    const b = open(prefix);
    const data = randomBytes(3 * MiB + 5);
    await a.startUpload('aaaaaaaa-0001');
    assert.equal(await a.append('aaaaaaaa-0001', 0, Readable.from([data.subarray(0, MiB)])), MiB);
    assert.equal(await b.uploadSize('aaaaaaaa-0001'), MiB);
    await assert.rejects(b.append('aaaaaaaa-0001', 0, Readable.from([Buffer.from('x')])), { code: 'FAILED_PRECONDITION' });
    assert.equal(await b.append('aaaaaaaa-0001', MiB, Readable.from([data.subarray(MiB)])), data.length);
    await assert.rejects(
      b.commitUpload('aaaaaaaa-0001', sha(randomBytes(8))),
      { code: 'DATA_LOSS' },
      'B verifies bytes it did not receive',
    );
    assert.deepEqual(await keys(prefix), [], 'a mismatch leaves neither upload nor blob');

    await a.startUpload('aaaaaaaa-0002');
    await a.append('aaaaaaaa-0002', 0, Readable.from([data.subarray(0, 10)]));
    await b.append('aaaaaaaa-0002', 10, Readable.from([data.subarray(10)]));
    await a.commitUpload('aaaaaaaa-0002', sha(data), { size: data.length });
    assert.deepEqual(await readAll(await b.read(sha(data))), data);
    assert.deepEqual(await keys(`${prefix}uploads/`), []);
  });

  it('assembles a blob from large chunks by server-side copy and from small ones by merging', async () => {
    const prefix = `assemble-${randomUUID()}/`;
    const s = open(prefix, 5 * MiB);
    const big = randomBytes(12 * MiB + 3);
    await s.startUpload('bbbbbbbb-0001');
    await s.append('bbbbbbbb-0001', 0, Readable.from([big.subarray(0, 7 * MiB), big.subarray(7 * MiB)]));
    assert.equal((await keys(`${prefix}uploads/bbbbbbbb-0001/c/`)).length, 3, 'chunks of at most 5 MiB');
    await s.commitUpload('bbbbbbbb-0001', sha(big));
    assert.deepEqual(await readAll(await s.read(sha(big))), big);
    assert.deepEqual(
      await readAll(await s.read(sha(big), { start: 5 * MiB - 2, end: 5 * MiB + 1 })),
      big.subarray(5 * MiB - 2, 5 * MiB + 2),
    );

    const small = randomBytes(6 * MiB);
    await s.startUpload('bbbbbbbb-0002');
    let at = 0;
    for (let i = 0; i < 12; i++)
      at = await s.append('bbbbbbbb-0002', at, Readable.from([small.subarray(i * 512 * 1024, (i + 1) * 512 * 1024)]));
    await s.commitUpload('bbbbbbbb-0002', sha(small));
    assert.deepEqual(await readAll(await s.read(sha(small))), small);
  });

  it('a failed append leaves the upload as it was; the empty blob commits', async () => {
    const prefix = `fail-${randomUUID()}/`;
    const s = open(prefix, 5 * MiB);
    await s.startUpload('cccccccc-0001');
    await s.append('cccccccc-0001', 0, Readable.from([Buffer.from('abc')]));
    await assert.rejects(s.append('cccccccc-0001', 3, Readable.from([randomBytes(6 * MiB)]), { limit: 6 * MiB }), {
      code: 'RESOURCE_EXHAUSTED',
    });
    assert.equal(await s.uploadSize('cccccccc-0001'), 3, 'the chunk written before the limit hit is gone');
    await assert.rejects(s.uploadSize('dddddddd-0404'), { code: 'NOT_FOUND' });
    await assert.rejects(s.append('../../etc', 0, Readable.from([])), { code: 'INVALID_ARGUMENT' });
    await s.startUpload('cccccccc-0002');
    const empty = Buffer.alloc(0);
    await s.commitUpload('cccccccc-0002', sha(empty));
    assert.equal((await s.stat(sha(empty)))?.size, 0);
  });

  it('a monolithic upload (last) is published with one PutObject, without chunk objects', async () => {
    const prefix = `mono-${randomUUID()}/`;
    const s = open(prefix);
    const data = randomBytes(MiB);
    await s.startUpload('ffffffff-0001');
    assert.equal(await s.append('ffffffff-0001', 0, Readable.from([data]), { last: true }), data.length);
    assert.equal(await s.uploadSize('ffffffff-0001'), data.length);
    assert.deepEqual(await keys(`${prefix}uploads/ffffffff-0001/`), ['info'], 'no chunk object written');
    await s.commitUpload('ffffffff-0001', sha(data), { size: data.length });
    assert.deepEqual(await readAll(await s.read(sha(data))), data);
    await s.startUpload('ffffffff-0002');
    await s.append('ffffffff-0002', 0, Readable.from([data.subarray(1)]), { last: true });
    await assert.rejects(s.commitUpload('ffffffff-0002', sha(randomBytes(4))), { code: 'DATA_LOSS' });
    assert.deepEqual(await keys(`${prefix}uploads/`), [], 'a mismatch leaves nothing');
    assert.equal(await s.stat(sha(data.subarray(1))), undefined);
  });

  it('hands out presigned GET URLs a plain HTTP client can fetch, ranges included', async () => {
    const s = open(`presign-${randomUUID()}/`);
    const data = randomBytes(4096);
    await s.startUpload('eeeeeeee-0001');
    await s.append('eeeeeeee-0001', 0, Readable.from([data]));
    await s.commitUpload('eeeeeeee-0001', sha(data));
    const url = await s.presignedUrl(sha(data), 60);
    assert.ok(url.startsWith(`${s3.endpoint}/`));
    const whole = await fetch(url);
    assert.equal(whole.status, 200);
    assert.deepEqual(Buffer.from(await whole.arrayBuffer()), data);
    const part = await fetch(url, { headers: { range: 'bytes=10-19' } });
    assert.equal(part.status, 206);
    assert.deepEqual(Buffer.from(await part.arrayBuffer()), data.subarray(10, 20));
    const forged = await fetch(url.replace(/X-Amz-Signature=[0-9a-f]{8}/, 'X-Amz-Signature=00000000'));
    assert.equal(forged.status, 403, 'a tampered signature is refused');
  });
});
