/**
 * (Over 600 lines: the whole ported conformance suite, one check per official test.)
 * OCI distribution-spec v1.1 conformance, ported from the official suite's four categories (pull,
 * push, content discovery, content management, as the distribution-spec's conformance suite names
 * them), run against a real registry on loopback with admin credentials: `conformanceSuite(name,
 * start)` registers it for one registry setup (SQLite + directory, PostgreSQL + S3). Checks keep
 * the official numbering in their names.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { sha256, makeImage, basic, ADMIN_PASSWORD, type TestRegistry } from './client.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const EMPTY_DIGEST = 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a';
const DUMMY = sha256('hello world');
const ERROR_CODES = [
  'BLOB_UNKNOWN',
  'BLOB_UPLOAD_INVALID',
  'BLOB_UPLOAD_UNKNOWN',
  'DIGEST_INVALID',
  'MANIFEST_BLOB_UNKNOWN',
  'MANIFEST_INVALID',
  'MANIFEST_UNKNOWN',
  'NAME_INVALID',
  'NAME_UNKNOWN',
  'SIZE_INVALID',
  'UNAUTHORIZED',
  'DENIED',
  'UNSUPPORTED',
  'TAG_INVALID',
  'MANIFEST_UNVERIFIED',
];

let reg: TestRegistry;
const NS = 'myorg/myrepo';
const CROSS = 'myorg/other';

function rawRequest(base: string, method: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(base);
    const req = httpRequest(
      { host: u.hostname, port: u.port, method, path, headers: { authorization: basic('admin', ADMIN_PASSWORD) } },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          body += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

function withDigest(loc: string, digest: string): string {
  return `${loc}${loc.includes('?') ? '&' : '?'}digest=${digest}`;
}

async function errorCode(r: Response): Promise<string> {
  const body = (await r.json()) as { errors: Array<{ code: string }> };
  return body.errors[0]!.code;
}

/** Registers the suite against the registry `start` returns (destroyed after the suite). */
export function conformanceSuite(name: string, start: () => Promise<TestRegistry>): void {
  describe(`OCI conformance on ${name}`, () => {
    before(async () => {
      reg = await start();
    });
    after(async () => {
      await reg?.destroy();
    });

    describe('pull', () => {
      const img0 = makeImage('pull-0');
      const img1 = makeImage('pull-1');
      before(async () => {
        await reg.pushBlob(NS, img0.config);
        await reg.pushBlob(NS, img1.config);
        await reg.pushBlob(NS, img0.layer);
        await reg.pushBlob(NS, img1.layer);
        assert.equal((await reg.putManifest(NS, 'tagtest0', img0.manifest, OCI_MANIFEST)).status, 201);
        assert.equal((await reg.putManifest(NS, img1.digest, img1.manifest, OCI_MANIFEST)).status, 201);
      });

      it('1 HEAD of an unknown blob is 404', async () => {
        assert.equal((await reg.req(`/v2/${NS}/blobs/${DUMMY}`, { method: 'HEAD' })).status, 404);
      });
      it('2 HEAD of a blob is 200 with its digest and length', async () => {
        const r = await reg.req(`/v2/${NS}/blobs/${img0.configDigest}`, { method: 'HEAD' });
        assert.equal(r.status, 200);
        assert.equal(r.headers.get('docker-content-digest'), img0.configDigest);
        assert.equal(r.headers.get('content-length'), String(img0.config.length));
      });
      it('3 GET of an unknown blob is 404 BLOB_UNKNOWN', async () => {
        const r = await reg.req(`/v2/${NS}/blobs/${DUMMY}`);
        assert.equal(r.status, 404);
        assert.equal(await errorCode(r), 'BLOB_UNKNOWN');
      });
      it('4 GET of a blob returns its bytes', async () => {
        const r = await reg.req(`/v2/${NS}/blobs/${img0.configDigest}`);
        assert.equal(r.status, 200);
        assert.deepEqual(Buffer.from(await r.arrayBuffer()), img0.config);
      });
      it('5 HEAD of a nonexistent manifest reference is 404', async () => {
        assert.equal((await reg.req(`/v2/${NS}/manifests/.INVALID_MANIFEST_NAME`, { method: 'HEAD' })).status, 404);
      });
      it('6 HEAD of a manifest by digest with Accept is 200 with digest', async () => {
        const r = await reg.req(`/v2/${NS}/manifests/${img0.digest}`, { method: 'HEAD', headers: { accept: OCI_MANIFEST } });
        assert.equal(r.status, 200);
        assert.equal(r.headers.get('docker-content-digest'), img0.digest);
        assert.equal(r.headers.get('content-length'), String(img0.manifest.length));
      });
      it('7 HEAD of a manifest pushed by digest is 200', async () => {
        const r = await reg.req(`/v2/${NS}/manifests/${img1.digest}`, { method: 'HEAD' });
        assert.equal(r.status, 200);
        assert.equal(r.headers.get('docker-content-digest'), img1.digest);
      });
      it('8 HEAD by tag is 200 with the tagged digest', async () => {
        const r = await reg.req(`/v2/${NS}/manifests/tagtest0`, { method: 'HEAD' });
        assert.equal(r.status, 200);
        assert.equal(r.headers.get('docker-content-digest'), img0.digest);
      });
      it('9 GET of a nonexistent manifest is 404 MANIFEST_UNKNOWN', async () => {
        const r = await reg.req(`/v2/${NS}/manifests/.INVALID_MANIFEST_NAME`);
        assert.equal(r.status, 404);
        assert.equal(await errorCode(r), 'MANIFEST_UNKNOWN');
      });
      it('10-12 GET manifests by digest and tag return the exact bytes and media type', async () => {
        for (const [ref, img] of [
          [img0.digest, img0],
          [img1.digest, img1],
          ['tagtest0', img0],
        ] as const) {
          const r = await reg.req(`/v2/${NS}/manifests/${ref}`, { headers: { accept: OCI_MANIFEST } });
          assert.equal(r.status, 200);
          assert.equal(r.headers.get('content-type'), OCI_MANIFEST);
          assert.deepEqual(Buffer.from(await r.arrayBuffer()), img.manifest);
        }
      });
      it('13 a malformed digest reference is 400 with a spec error code', async () => {
        const r = await reg.req(`/v2/${NS}/manifests/sha256:totallywrong`);
        assert.equal(r.status, 400);
        assert.ok(ERROR_CODES.includes(await errorCode(r)));
      });
      it('blob Range requests answer 206 with Content-Range, suffix ranges too, and 416 when unsatisfiable', async () => {
        const n = img0.layer.length;
        let r = await reg.req(`/v2/${NS}/blobs/${img0.layerDigest}`, { headers: { range: 'bytes=2-9' } });
        assert.equal(r.status, 206);
        assert.equal(r.headers.get('content-range'), `bytes 2-9/${n}`);
        assert.deepEqual(Buffer.from(await r.arrayBuffer()), img0.layer.subarray(2, 10));
        r = await reg.req(`/v2/${NS}/blobs/${img0.layerDigest}`, { headers: { range: 'bytes=-4' } });
        assert.equal(r.status, 206);
        assert.deepEqual(Buffer.from(await r.arrayBuffer()), img0.layer.subarray(n - 4));
        r = await reg.req(`/v2/${NS}/blobs/${img0.layerDigest}`, { headers: { range: 'bytes=5-' } });
        assert.equal(r.status, 206);
        assert.deepEqual(Buffer.from(await r.arrayBuffer()), img0.layer.subarray(5));
        r = await reg.req(`/v2/${NS}/blobs/${img0.layerDigest}`, { headers: { range: `bytes=${n}-${n + 10}` } });
        assert.equal(r.status, 416);
        await r.arrayBuffer();
      });
      it('content negotiation: a tag is not served to a client that does not accept its type', async () => {
        let r = await reg.req(`/v2/${NS}/manifests/tagtest0`, {
          headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json' },
        });
        assert.equal(r.status, 404);
        assert.equal(await errorCode(r), 'MANIFEST_UNKNOWN');
        r = await reg.req(`/v2/${NS}/manifests/tagtest0`, {
          headers: { accept: `application/vnd.docker.distribution.manifest.v2+json, ${OCI_MANIFEST}` },
        });
        assert.equal(r.status, 200);
        await r.arrayBuffer();
        r = await reg.req(`/v2/${NS}/manifests/tagtest0`, { headers: { accept: '*/*' } });
        assert.equal(r.status, 200);
        await r.arrayBuffer();
      });
      it('If-None-Match with the ETag answers 304', async () => {
        const r = await reg.req(`/v2/${NS}/manifests/tagtest0`, { headers: { 'if-none-match': `"${img0.digest}"` } });
        assert.equal(r.status, 304);
      });
    });

    describe('push', () => {
      const blobA = randomBytes(42);
      const blobB = randomBytes(42);
      const img = makeImage('push-1');
      let firstSession = '';

      it('1-2 streamed upload: PATCH without Content-Range then empty PUT', async () => {
        const r1 = await reg.req(`/v2/${NS}/blobs/uploads/`, { method: 'POST' });
        assert.equal(r1.status, 202);
        const r2 = await reg.req(r1.headers.get('location')!, {
          method: 'PATCH',
          body: blobA,
          headers: { 'content-type': 'application/octet-stream' },
        });
        assert.equal(r2.status, 202);
        const r3 = await reg.req(withDigest(r2.headers.get('location')!, sha256(blobA)), {
          method: 'PUT',
          headers: { 'content-length': '0' },
        });
        assert.equal(r3.status, 201);
        assert.ok(r3.headers.get('location'));
      });
      it('3-5 single POST with digest creates the blob', async () => {
        assert.equal((await reg.req(`/v2/${NS}/blobs/${DUMMY}`)).status, 404);
        const r = await reg.req(`/v2/${NS}/blobs/uploads/?digest=${img.configDigest}`, {
          method: 'POST',
          body: img.config,
          headers: { 'content-type': 'application/octet-stream' },
        });
        assert.ok(r.status === 201 || r.status === 202);
        assert.ok(r.headers.get('location'));
        const g = await reg.req(`/v2/${NS}/blobs/${img.configDigest}`);
        assert.equal(g.status, r.status === 202 ? 404 : 200);
        await g.arrayBuffer();
      });
      it('6-10 POST then PUT (monolithic) for config and layer', async () => {
        for (const data of [img.config, img.layer]) {
          const r1 = await reg.req(`/v2/${NS}/blobs/uploads/`, { method: 'POST' });
          assert.equal(r1.status, 202);
          const r2 = await reg.req(withDigest(r1.headers.get('location')!, sha256(data)), {
            method: 'PUT',
            body: data,
            headers: { 'content-type': 'application/octet-stream' },
          });
          assert.equal(r2.status, 201);
          assert.equal(r2.headers.get('location'), `/v2/${NS}/blobs/${sha256(data)}`);
          const g = await reg.req(`/v2/${NS}/blobs/${sha256(data)}`);
          assert.equal(g.status, 200);
          assert.deepEqual(Buffer.from(await g.arrayBuffer()), data);
        }
      });
      it('11 an out-of-order first chunk is 416', async () => {
        const r1 = await reg.req(`/v2/${NS}/blobs/uploads/`, { method: 'POST', headers: { 'content-length': '0' } });
        const r2 = await reg.req(r1.headers.get('location')!, {
          method: 'PATCH',
          body: blobB.subarray(22),
          headers: { 'content-range': '22-41', 'content-type': 'application/octet-stream' },
        });
        assert.equal(r2.status, 416);
      });
      it('12 first chunk answers 202 with Range 0-21', async () => {
        const r1 = await reg.req(`/v2/${NS}/blobs/uploads/`, { method: 'POST', headers: { 'content-length': '0' } });
        firstSession = r1.headers.get('location')!;
        const r2 = await reg.req(firstSession, {
          method: 'PATCH',
          body: blobB.subarray(0, 22),
          headers: { 'content-range': '0-21', 'content-type': 'application/octet-stream' },
        });
        assert.equal(r2.status, 202);
        assert.equal(r2.headers.get('range'), '0-21');
      });
      it('13 re-sending the first chunk to the original location is 416', async () => {
        const r = await reg.req(firstSession, {
          method: 'PATCH',
          body: blobB.subarray(0, 22),
          headers: { 'content-range': '0-21', 'content-type': 'application/octet-stream' },
        });
        assert.equal(r.status, 416);
      });
      it('14-16 upload status is 204 with Range, then the last chunk and an empty PUT commit', async () => {
        const s = await reg.req(firstSession);
        assert.equal(s.status, 204);
        assert.equal(s.headers.get('range'), '0-21');
        const loc = s.headers.get('location')!;
        assert.ok(loc);
        const r = await reg.req(loc, {
          method: 'PATCH',
          body: blobB.subarray(22),
          headers: { 'content-range': '22-41', 'content-type': 'application/octet-stream' },
        });
        assert.equal(r.status, 202);
        const p = await reg.req(withDigest(r.headers.get('location')!, sha256(blobB)), {
          method: 'PUT',
          headers: { 'content-length': '0' },
        });
        assert.equal(p.status, 201);
        const g = await reg.req(`/v2/${NS}/blobs/${sha256(blobB)}`);
        assert.deepEqual(Buffer.from(await g.arrayBuffer()), blobB);
      });
      it('a chunk whose Content-Length disagrees with its Content-Range is 400 SIZE_INVALID; the session is unchanged', async () => {
        const data = randomBytes(40);
        const r1 = await reg.req(`/v2/${NS}/blobs/uploads/`, { method: 'POST', headers: { 'content-length': '0' } });
        const loc = r1.headers.get('location')!;
        assert.equal(
          (await reg.req(loc, { method: 'PATCH', body: data.subarray(0, 10), headers: { 'content-range': '0-9' } })).status,
          202,
        );
        // In order (starts at 10) but 10 bytes sent for a promised 20: 400, not 416 (416 is for order).
        let r = await reg.req(loc, { method: 'PATCH', body: data.subarray(10, 20), headers: { 'content-range': '10-29' } });
        assert.equal(r.status, 400);
        assert.equal(await errorCode(r), 'SIZE_INVALID');
        r = await reg.req(loc, { method: 'PATCH', body: data.subarray(10, 40), headers: { 'content-range': '10-19' } });
        assert.equal(r.status, 400);
        assert.equal(await errorCode(r), 'SIZE_INVALID');
        // The same on the closing PUT carrying the last chunk.
        r = await reg.req(withDigest(loc, sha256(data)), { method: 'PUT', body: data.subarray(10), headers: { 'content-range': '10-20' } });
        assert.equal(r.status, 400);
        assert.equal(await errorCode(r), 'SIZE_INVALID');
        const s = await reg.req(loc);
        assert.equal(s.status, 204);
        assert.equal(s.headers.get('range'), '0-9', 'nothing of the refused chunks was stored');
        assert.equal(
          (await reg.req(withDigest(loc, sha256(data)), { method: 'PUT', body: data.subarray(10), headers: { 'content-range': '10-39' } }))
            .status,
          201,
        );
      });
      it('a malformed Content-Range is 400; an inverted or out-of-order one is 416', async () => {
        const r1 = await reg.req(`/v2/${NS}/blobs/uploads/`, { method: 'POST', headers: { 'content-length': '0' } });
        const loc = r1.headers.get('location')!;
        let r = await reg.req(loc, { method: 'PATCH', body: 'abcd', headers: { 'content-range': 'bytes four-five' } });
        assert.equal(r.status, 400);
        assert.equal(await errorCode(r), 'BLOB_UPLOAD_INVALID');
        r = await reg.req(loc, { method: 'PATCH', body: 'abcd', headers: { 'content-range': '3-0' } });
        assert.equal(r.status, 416);
        await r.arrayBuffer();
        r = await reg.req(loc, { method: 'PATCH', body: 'abcd', headers: { 'content-range': '1-4' } });
        assert.equal(r.status, 416);
        await r.arrayBuffer();
        r = await reg.req(withDigest(loc, sha256('abcd')), { method: 'PUT', body: 'abcd', headers: { 'content-range': '1-4' } });
        assert.equal(r.status, 416);
        await r.arrayBuffer();
      });
      it('17 mount of an unknown blob without from opens an upload (202)', async () => {
        const r = await reg.req(`/v2/${CROSS}/blobs/uploads/?mount=${DUMMY}`, { method: 'POST' });
        assert.equal(r.status, 202);
        assert.ok(r.headers.get('location')!.startsWith(`/v2/${CROSS}/blobs/uploads/`));
      });
      it('18-19 cross-repository mount answers 201 with the exact blob location', async () => {
        const r = await reg.req(`/v2/${CROSS}/blobs/uploads/?mount=${sha256(blobA)}&from=${NS}`, { method: 'POST' });
        assert.equal(r.status, 201);
        assert.equal(new URL(r.headers.get('location')!, reg.url).pathname, `/v2/${CROSS}/blobs/${sha256(blobA)}`);
        assert.equal(r.headers.get('docker-content-digest'), sha256(blobA));
        const g = await reg.req(r.headers.get('location')!);
        assert.equal(g.status, 200);
        await g.arrayBuffer();
      });
      it('22 mount without from does not discover content automatically (202)', async () => {
        const r = await reg.req(`/v2/myorg/third/blobs/uploads/?mount=${sha256(blobA)}`, { method: 'POST' });
        assert.equal(r.status, 202);
      });
      it('23-26 manifests under several tags, and a layer-less manifest', async () => {
        assert.equal((await reg.req(`/v2/${NS}/manifests/.INVALID_MANIFEST_NAME`)).status, 404);
        for (const t of ['test0', 'test1', 'test2', 'test3']) {
          const r = await reg.putManifest(NS, t, img.manifest, OCI_MANIFEST);
          assert.equal(r.status, 201);
          assert.equal(r.headers.get('location'), `/v2/${NS}/manifests/${img.digest}`);
          assert.equal(r.headers.get('docker-content-digest'), img.digest);
        }
        const empty = Buffer.from(
          JSON.stringify({
            schemaVersion: 2,
            config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: img.configDigest, size: img.config.length },
            layers: [],
          }),
        );
        const r = await reg.putManifest(NS, 'emptylayer', empty, OCI_MANIFEST);
        assert.equal(r.status, 201);
        assert.ok(r.headers.get('location'));
        const g = await reg.req(`/v2/${NS}/manifests/${img.digest}`);
        assert.equal(g.status, 200);
        await g.arrayBuffer();
      });
      it('a digest mismatch is DIGEST_INVALID and leaves no blob behind', async () => {
        const data = randomBytes(1000);
        const wrong = sha256(randomBytes(8));
        const r1 = await reg.req(`/v2/${NS}/blobs/uploads/`, { method: 'POST' });
        const loc = r1.headers.get('location')!;
        const r2 = await reg.req(withDigest(loc, wrong), { method: 'PUT', body: data });
        assert.equal(r2.status, 400);
        assert.equal(await errorCode(r2), 'DIGEST_INVALID');
        assert.equal((await reg.req(`/v2/${NS}/blobs/${wrong}`, { method: 'HEAD' })).status, 404);
        assert.equal((await reg.req(`/v2/${NS}/blobs/${sha256(data)}`, { method: 'HEAD' })).status, 404);
        assert.equal((await reg.req(loc)).status, 404, 'the failed session is gone');
      });
      it('single POST with a wrong digest is DIGEST_INVALID', async () => {
        const r = await reg.req(`/v2/${NS}/blobs/uploads/?digest=${DUMMY}`, { method: 'POST', body: Buffer.from('not hello world') });
        assert.equal(r.status, 400);
        assert.equal(await errorCode(r), 'DIGEST_INVALID');
      });
      it('a cancelled upload is gone (DELETE 204, then 404 BLOB_UPLOAD_UNKNOWN)', async () => {
        const r1 = await reg.req(`/v2/${NS}/blobs/uploads/`, { method: 'POST' });
        const loc = r1.headers.get('location')!;
        assert.equal((await reg.req(loc, { method: 'PATCH', body: Buffer.from('abc') })).status, 202);
        assert.equal((await reg.req(loc, { method: 'DELETE' })).status, 204);
        const s = await reg.req(loc);
        assert.equal(s.status, 404);
        assert.equal(await errorCode(s), 'BLOB_UPLOAD_UNKNOWN');
      });
      it('an upload session cannot be used from another repository', async () => {
        const r1 = await reg.req(`/v2/${NS}/blobs/uploads/`, { method: 'POST' });
        const id = r1.headers.get('location')!.split('/').pop()!;
        const r = await reg.req(`/v2/${CROSS}/blobs/uploads/${id}`);
        assert.equal(r.status, 404);
      });
      it('a manifest referencing a missing blob is MANIFEST_BLOB_UNKNOWN', async () => {
        const other = makeImage('missing-layer');
        await reg.pushBlob(NS, other.config);
        const r = await reg.putManifest(NS, 'broken', other.manifest, OCI_MANIFEST);
        assert.equal(r.status, 400);
        const body = (await r.json()) as { errors: Array<{ code: string; detail: Array<{ digest: string }> }> };
        assert.equal(body.errors[0]!.code, 'MANIFEST_BLOB_UNKNOWN');
        assert.deepEqual(
          body.errors[0]!.detail.map((d) => d.digest),
          [other.layerDigest],
        );
        assert.equal((await reg.req(`/v2/${NS}/manifests/broken`)).status, 404);
      });
      it('blobs of another repository are not usable without a mount', async () => {
        const other = makeImage('other-repo');
        await reg.pushBlob(CROSS, other.config);
        await reg.pushBlob(CROSS, other.layer);
        assert.equal((await reg.req(`/v2/${NS}/blobs/${other.layerDigest}`, { method: 'HEAD' })).status, 404);
        assert.equal((await reg.putManifest(NS, 'foreign', other.manifest, OCI_MANIFEST)).status, 400);
      });
      it('bad manifests get MANIFEST_INVALID / DIGEST_INVALID / TAG_INVALID / 413, never a 500', async () => {
        const cases: Array<[string, string | Buffer, string, number, string]> = [
          ['t1', '{not json', OCI_MANIFEST, 400, 'MANIFEST_INVALID'],
          ['t2', '[]', OCI_MANIFEST, 400, 'MANIFEST_INVALID'],
          ['t3', JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] }), OCI_MANIFEST, 400, 'MANIFEST_INVALID'],
          [
            't4',
            JSON.stringify({ schemaVersion: 1, name: 'x' }),
            'application/vnd.docker.distribution.manifest.v1+prettyjws',
            400,
            'MANIFEST_INVALID',
          ],
          [
            't5',
            JSON.stringify({ schemaVersion: 2, config: { mediaType: 'x', digest: 'md5:abc', size: 1 }, layers: [] }),
            OCI_MANIFEST,
            400,
            'MANIFEST_INVALID',
          ],
          [
            't6',
            JSON.stringify({ schemaVersion: 2, config: { mediaType: 'x', digest: DUMMY, size: -1 }, layers: [] }),
            OCI_MANIFEST,
            400,
            'MANIFEST_INVALID',
          ],
          ['t7', JSON.stringify({ foo: 1 }), 'text/plain', 400, 'MANIFEST_INVALID'],
          [`sha256:${'0'.repeat(64)}`, img.manifest, OCI_MANIFEST, 400, 'DIGEST_INVALID'],
          [`md5:${'0'.repeat(32)}`, img.manifest, OCI_MANIFEST, 400, 'DIGEST_INVALID'],
          ['-bad-tag', img.manifest, OCI_MANIFEST, 400, 'TAG_INVALID'],
          [`t${'x'.repeat(128)}`, img.manifest, OCI_MANIFEST, 400, 'TAG_INVALID'],
          ['big', Buffer.alloc(4 * 1024 * 1024 + 1, 0x20), OCI_MANIFEST, 413, 'SIZE_TOO_LARGE'],
        ];
        for (const [ref, body, ct, status, code] of cases) {
          const r = await reg.putManifest(NS, ref, body, ct);
          assert.equal(r.status, status, `${ref}: ${status}`);
          assert.equal(await errorCode(r), code, ref);
        }
      });
      it('invalid repository names are NAME_INVALID and reach nothing', async () => {
        for (const name of ['UPPER/case', 'a//b', 'a/../b', '..', 'a/.hidden', `${'a'.repeat(256)}`, 'a%2F..%2Fb', 'a_-b', 'a/./b']) {
          // Raw requests: fetch would normalise dot segments before sending.
          const r = await rawRequest(reg.url, 'POST', `/v2/${name}/blobs/uploads/`);
          assert.ok(r.status === 400 || r.status === 404, `${name}: ${r.status}`);
          if (r.status === 400) assert.equal((JSON.parse(r.body) as { errors: Array<{ code: string }> }).errors[0]!.code, 'NAME_INVALID');
        }
        const r = await reg.req(`/v2/${NS}/blobs/sha256:..%2F..%2Fetc%2Fpasswd`);
        assert.equal(r.status, 400);
        assert.equal(await errorCode(r), 'DIGEST_INVALID');
        const u = await reg.req(`/v2/${NS}/blobs/uploads/..%2F..%2Fregistry.db`, { method: 'PATCH', body: 'x' });
        assert.equal(u.status, 404);
      });
      it('a Docker manifest list is served as the linux/amd64 image to a schema2-only client', async () => {
        const DOCKER_V2 = 'application/vnd.docker.distribution.manifest.v2+json';
        const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
        const child = Buffer.from(
          JSON.stringify({
            schemaVersion: 2,
            mediaType: DOCKER_V2,
            config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: img.configDigest, size: img.config.length },
            layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', digest: img.layerDigest, size: img.layer.length }],
          }),
        );
        assert.equal((await reg.putManifest(NS, sha256(child), child, DOCKER_V2)).status, 201);
        const list = Buffer.from(
          JSON.stringify({
            schemaVersion: 2,
            mediaType: DOCKER_LIST,
            manifests: [
              { mediaType: DOCKER_V2, digest: sha256(child), size: child.length, platform: { architecture: 'amd64', os: 'linux' } },
            ],
          }),
        );
        assert.equal((await reg.putManifest(NS, 'multi', list, DOCKER_LIST)).status, 201);
        let r = await reg.req(`/v2/${NS}/manifests/multi`, { headers: { accept: DOCKER_V2 } });
        assert.equal(r.headers.get('docker-content-digest'), sha256(child));
        assert.deepEqual(Buffer.from(await r.arrayBuffer()), child);
        r = await reg.req(`/v2/${NS}/manifests/multi`, { headers: { accept: `${DOCKER_V2}, ${DOCKER_LIST}` } });
        assert.equal(r.headers.get('content-type'), DOCKER_LIST);
        assert.deepEqual(Buffer.from(await r.arrayBuffer()), list);
        const missing = Buffer.from(
          JSON.stringify({
            schemaVersion: 2,
            mediaType: OCI_INDEX,
            manifests: [{ mediaType: OCI_MANIFEST, digest: DUMMY, size: 10 }],
          }),
        );
        r = await reg.putManifest(NS, 'badindex', missing, OCI_INDEX);
        assert.equal(r.status, 400);
        assert.equal(await errorCode(r), 'MANIFEST_BLOB_UNKNOWN');
      });
    });

    describe('content discovery', () => {
      const img2 = makeImage('disc-2');
      const img3 = makeImage('disc-3');
      const img4 = makeImage('disc-4');
      const REPO = 'myorg/discovery';
      const TYPE_A = 'application/vnd.nhl.peanut.butter.bagel';
      const TYPE_B = 'application/vnd.nba.strawberry.jam.croissant';
      const ANN = 'org.opencontainers.conformance.test';
      const emptyDesc = { mediaType: 'application/vnd.oci.empty.v1+json', digest: EMPTY_DIGEST, size: 2 };
      const subject4 = { mediaType: OCI_MANIFEST, digest: img4.digest, size: img4.manifest.length };
      const subject3 = { mediaType: OCI_MANIFEST, digest: img3.digest, size: img3.manifest.length };
      const refBlobA = Buffer.from('NHL Peanut Butter on my NHL bagel');
      const refBlobB = Buffer.from('NBA Strawberry Jam on my NBA croissant');
      const mk = (o: Record<string, unknown>): Buffer => Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, ...o }));
      const aConfig = mk({
        config: { mediaType: TYPE_A, digest: EMPTY_DIGEST, size: 2 },
        layers: [{ mediaType: TYPE_A, digest: sha256(refBlobA), size: refBlobA.length }],
        subject: subject4,
        annotations: { [ANN]: 'test config a' },
      });
      const aLayer = mk({
        artifactType: TYPE_A,
        config: emptyDesc,
        layers: [{ mediaType: TYPE_A, digest: sha256(refBlobA), size: refBlobA.length }],
        subject: subject4,
        annotations: { [ANN]: 'test layer a' },
      });
      const bConfig = mk({
        config: { mediaType: TYPE_B, digest: EMPTY_DIGEST, size: 2 },
        layers: [{ mediaType: TYPE_B, digest: sha256(refBlobB), size: refBlobB.length }],
        subject: subject4,
        annotations: { [ANN]: 'test config b' },
      });
      const bLayer = mk({
        artifactType: TYPE_B,
        config: emptyDesc,
        layers: [{ mediaType: TYPE_B, digest: sha256(refBlobB), size: refBlobB.length }],
        subject: subject4,
        annotations: { [ANN]: 'test layer b' },
      });
      const cLayer = mk({
        artifactType: TYPE_B,
        config: emptyDesc,
        layers: [{ mediaType: TYPE_B, digest: sha256(refBlobB), size: refBlobB.length }],
        subject: subject3,
      });
      const index = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_INDEX,
          artifactType: 'application/vnd.food.stand',
          manifests: [
            { mediaType: OCI_MANIFEST, digest: sha256(aConfig), size: aConfig.length },
            { mediaType: OCI_MANIFEST, digest: sha256(aLayer), size: aLayer.length },
          ],
          subject: subject4,
          annotations: { [ANN]: 'test index' },
        }),
      );

      before(async () => {
        await reg.pushBlob(REPO, img2.config);
        await reg.pushBlob(REPO, img2.layer);
        for (const t of ['test0', 'test1', 'test2', 'test3'])
          assert.equal((await reg.putManifest(REPO, t, img2.manifest, OCI_MANIFEST)).status, 201);
        assert.equal(await reg.pushBlob(REPO, Buffer.from('{}')), EMPTY_DIGEST);
        await reg.pushBlob(REPO, refBlobA);
        for (const m of [aConfig, aLayer]) {
          const r = await reg.putManifest(REPO, sha256(m), m, OCI_MANIFEST);
          assert.equal(r.status, 201);
          assert.equal(r.headers.get('oci-subject'), img4.digest, 'OCI-Subject for a subject that does not exist yet');
        }
        const ri = await reg.putManifest(REPO, sha256(index), index, OCI_INDEX);
        assert.equal(ri.status, 201);
        assert.equal(ri.headers.get('oci-subject'), img4.digest);
        await reg.pushBlob(REPO, img4.config);
        await reg.pushBlob(REPO, img4.layer);
        assert.equal((await reg.putManifest(REPO, 'tagtest0', img4.manifest, OCI_MANIFEST)).status, 201);
        await reg.pushBlob(REPO, refBlobB);
        for (const m of [bConfig, bLayer]) {
          const r = await reg.putManifest(REPO, sha256(m), m, OCI_MANIFEST);
          assert.equal(r.headers.get('oci-subject'), img4.digest);
        }
        const rc = await reg.putManifest(REPO, sha256(cLayer), cLayer, OCI_MANIFEST);
        assert.equal(rc.headers.get('oci-subject'), img3.digest);
      });

      let all: string[] = [];
      it('1 tags/list returns every tag in lexical order', async () => {
        const r = await reg.req(`/v2/${REPO}/tags/list`);
        assert.equal(r.status, 200);
        const body = (await r.json()) as { name: string; tags: string[] };
        assert.equal(body.name, REPO);
        all = body.tags;
        assert.deepEqual(all, ['tagtest0', 'test0', 'test1', 'test2', 'test3']);
      });
      it('2-3 n/last pagination with a Link header to the next page', async () => {
        const half = Math.floor(all.length / 2);
        let r = await reg.req(`/v2/${REPO}/tags/list?n=${half}`);
        let body = (await r.json()) as { tags: string[] };
        assert.deepEqual(body.tags, all.slice(0, half));
        assert.equal(r.headers.get('link'), `</v2/${REPO}/tags/list?n=${half}&last=${all[half - 1]}>; rel="next"`);
        r = await reg.req(new URL(/<([^>]+)>/.exec(r.headers.get('link')!)![1]!, reg.url).href);
        body = (await r.json()) as { tags: string[] };
        assert.deepEqual(body.tags, all.slice(half, half * 2));
        r = await reg.req(`/v2/${REPO}/tags/list?last=${all[1]}`);
        body = (await r.json()) as { tags: string[] };
        assert.deepEqual(body.tags, all.slice(2));
        assert.equal(r.headers.get('link'), null);
        r = await reg.req(`/v2/${REPO}/tags/list?n=0`);
        assert.deepEqual(((await r.json()) as { tags: string[] }).tags, []);
        assert.equal(r.headers.get('link'), null);
        r = await reg.req(`/v2/${REPO}/tags/list?n=-1`);
        assert.equal(r.status, 400);
        assert.equal(await errorCode(r), 'PAGINATION_NUMBER_INVALID');
        r = await reg.req('/v2/myorg/nonexistent/tags/list');
        assert.equal(r.status, 404);
        assert.equal(await errorCode(r), 'NAME_UNKNOWN');
      });
      it('4 referrers of an unknown digest: 200 with an empty index', async () => {
        const r = await reg.req(`/v2/${REPO}/referrers/${DUMMY}`);
        assert.equal(r.status, 200);
        assert.equal(r.headers.get('content-type'), OCI_INDEX);
        const body = (await r.json()) as { manifests: unknown[]; mediaType: string; schemaVersion: number };
        assert.equal(body.manifests.length, 0);
        assert.equal(body.mediaType, OCI_INDEX);
        assert.equal(body.schemaVersion, 2);
        assert.equal((await reg.req(`/v2/${REPO}/referrers/sha256:bad`)).status, 400);
      });
      it('5 referrers list the 5 artifacts with artifactType and annotations', async () => {
        const r = await reg.req(`/v2/${REPO}/referrers/${img4.digest}`);
        assert.equal(r.status, 200);
        assert.equal(r.headers.get('content-type'), OCI_INDEX);
        const body = (await r.json()) as {
          manifests: Array<{
            digest: string;
            artifactType?: string;
            annotations?: Record<string, string>;
            size: number;
            mediaType: string;
          }>;
        };
        assert.equal(body.manifests.length, 5);
        const byDigest = new Map(body.manifests.map((m) => [m.digest, m]));
        assert.equal(byDigest.get(sha256(aConfig))?.artifactType, TYPE_A);
        assert.equal(byDigest.get(sha256(aLayer))?.artifactType, TYPE_A);
        assert.equal(byDigest.get(sha256(bConfig))?.artifactType, TYPE_B);
        assert.equal(byDigest.get(sha256(index))?.artifactType, 'application/vnd.food.stand');
        assert.equal(byDigest.get(sha256(index))?.mediaType, OCI_INDEX);
        assert.equal(byDigest.get(sha256(index))?.size, index.length);
        for (const m of body.manifests) assert.equal(Object.keys(m.annotations ?? {}).length, 1);
        assert.equal(byDigest.get(sha256(aLayer))?.annotations?.[ANN], 'test layer a');
      });
      it('6 the artifactType filter is applied and announced', async () => {
        const r = await reg.req(`/v2/${REPO}/referrers/${img4.digest}?artifactType=${encodeURIComponent(TYPE_A)}`);
        assert.equal(r.headers.get('oci-filters-applied'), 'artifactType');
        const body = (await r.json()) as { manifests: Array<{ digest: string }> };
        assert.deepEqual(new Set(body.manifests.map((m) => m.digest)), new Set([sha256(aConfig), sha256(aLayer)]));
      });
      it('7 referrers of a subject that was never pushed', async () => {
        const r = await reg.req(`/v2/${REPO}/referrers/${img3.digest}`);
        const body = (await r.json()) as { manifests: Array<{ digest: string }> };
        assert.deepEqual(
          body.manifests.map((m) => m.digest),
          [sha256(cLayer)],
        );
      });
      it('catalog lists repositories with pagination', async () => {
        let r = await reg.req('/v2/_catalog');
        const repos = ((await r.json()) as { repositories: string[] }).repositories;
        assert.ok(repos.includes(REPO) && repos.includes(NS));
        assert.deepEqual(repos, [...repos].sort());
        r = await reg.req('/v2/_catalog?n=1');
        assert.deepEqual(((await r.json()) as { repositories: string[] }).repositories, repos.slice(0, 1));
        assert.match(r.headers.get('link') ?? '', /^<\/v2\/_catalog\?n=1&last=.+>; rel="next"$/);
        r = await reg.req('/v2/_catalog', { auth: '' });
        assert.equal(r.status, 401);
      });
    });

    describe('content management', () => {
      const img3 = makeImage('mgmt-3');
      const REPO = 'myorg/management';
      let n = 0;
      before(async () => {
        await reg.pushBlob(REPO, img3.config);
        await reg.pushBlob(REPO, img3.layer);
        assert.equal((await reg.putManifest(REPO, 'tagtest0', img3.manifest, OCI_MANIFEST)).status, 201);
        assert.equal((await reg.putManifest(REPO, 'keep', img3.manifest, OCI_MANIFEST)).status, 201);
        n = ((await (await reg.req(`/v2/${REPO}/tags/list`)).json()) as { tags: string[] }).tags.length;
      });
      it('1 DELETE of a tag is 202 and the tag is gone', async () => {
        assert.equal((await reg.req(`/v2/${REPO}/manifests/tagtest0`, { method: 'DELETE' })).status, 202);
        assert.equal((await reg.req(`/v2/${REPO}/manifests/tagtest0`)).status, 404);
        assert.equal((await reg.req(`/v2/${REPO}/manifests/${img3.digest}`, { method: 'HEAD' })).status, 200, 'the manifest stays');
      });
      it('2-4 DELETE of a manifest by digest removes it and its tags', async () => {
        assert.equal((await reg.req(`/v2/${REPO}/manifests/${img3.digest}`, { method: 'DELETE' })).status, 202);
        assert.equal((await reg.req(`/v2/${REPO}/manifests/${img3.digest}`)).status, 404);
        assert.equal((await reg.req(`/v2/${REPO}/manifests/keep`)).status, 404);
        const r = await reg.req(`/v2/${REPO}/tags/list`);
        assert.ok(n - 2 === 0 ? r.status === 404 : r.status === 200);
        assert.equal((await reg.req(`/v2/${REPO}/manifests/${img3.digest}`, { method: 'DELETE' })).status, 404);
      });
      it('5-6 DELETE of blobs is 202, then GET is 404', async () => {
        for (const d of [img3.configDigest, img3.layerDigest]) {
          assert.equal((await reg.req(`/v2/${REPO}/blobs/${d}`, { method: 'DELETE' })).status, 202);
          assert.equal((await reg.req(`/v2/${REPO}/blobs/${d}`)).status, 404);
        }
        const r = await reg.req(`/v2/${REPO}/blobs/${img3.configDigest}`, { method: 'DELETE' });
        assert.equal(r.status, 404);
        assert.equal(await errorCode(r), 'BLOB_UNKNOWN');
      });
    });
  });
}
