import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { MediaType, NYDUS_CONFIG_MEDIA_TYPE, type ImageManifest } from '../oci/index.js';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pullImage, recordedManifest } from './pull.js';

const manifest = (configType: string): ImageManifest => ({
  schemaVersion: 2,
  mediaType: MediaType.OCI_MANIFEST,
  config: { mediaType: configType, digest: `sha256:${'c'.repeat(64)}`, size: 10 },
  layers: [{ mediaType: MediaType.OCI_LAYER_GZIP, digest: `sha256:${'1'.repeat(64)}`, size: 5 }],
  annotations: { a: 'b' },
});

test("a merged index's Nydus manifest is recorded with an OCI config descriptor (same config, layers, annotations)", () => {
  const m = manifest(NYDUS_CONFIG_MEDIA_TYPE);
  const fetched = { mediaType: MediaType.OCI_MANIFEST, digest: `sha256:${'f'.repeat(64)}`, body: Buffer.from(JSON.stringify(m)) };
  const rec = recordedManifest(m, fetched);
  const doc = JSON.parse(rec.body.toString()) as ImageManifest;
  assert.equal(doc.config.mediaType, MediaType.OCI_CONFIG);
  assert.deepEqual({ ...doc, config: { ...doc.config, mediaType: NYDUS_CONFIG_MEDIA_TYPE } }, m);
  assert.equal(rec.digest, `sha256:${createHash('sha256').update(rec.body).digest('hex')}`);
  assert.notEqual(rec.digest, fetched.digest);
});

test('any other manifest is recorded exactly as fetched', () => {
  const m = manifest(MediaType.OCI_CONFIG);
  const fetched = { mediaType: MediaType.OCI_MANIFEST, digest: `sha256:${'f'.repeat(64)}`, body: Buffer.from(' {} ') };
  assert.equal(recordedManifest(m, fetched), fetched);
});

test('the manifest is announced (onResolved) before the config has arrived, so the lazy mount starts alongside it', async () => {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
  const configDigest = `sha256:${createHash('sha256').update(config).digest('hex')}`;
  const man = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OCI_MANIFEST,
      config: { mediaType: MediaType.OCI_CONFIG, digest: configDigest, size: config.length },
      layers: [],
    }),
  );
  // the config is answered only once onResolved ran (or, if it never does first, after 5 s)
  let release!: () => void;
  const released = new Promise<void>((r) => {
    release = r;
  });
  const order: string[] = [];
  const server = createServer((req, res) => {
    if (req.url === '/v2/r/manifests/t') {
      res.writeHead(200, {
        'content-type': MediaType.OCI_MANIFEST,
        'docker-content-digest': `sha256:${createHash('sha256').update(man).digest('hex')}`,
      });
      res.end(man);
    } else if (req.url === `/v2/r/blobs/${configDigest}`) {
      order.push('config asked');
      const t = setTimeout(release, 5000);
      void released.then(() => {
        clearTimeout(t);
        order.push('config sent');
        res.writeHead(200, { 'content-length': String(config.length) });
        res.end(config);
      });
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  let announced: Promise<unknown> | undefined;
  try {
    await assert.rejects(
      pullImage({
        address: '/nonexistent/containerd.sock', // the pull fails at containerd, after the registry part
        ref: `127.0.0.1:${port}/r:t`,
        plainHttp: true,
        onResolved: (_ref, _digest, _manifest, cfg) => {
          order.push('resolved');
          announced = cfg;
          release();
        },
      }),
    );
    assert.deepEqual(order.slice(0, 2).sort(), ['config asked', 'resolved']);
    assert.equal(order[2], 'config sent');
    assert.deepEqual(((await announced) as { rootfs: unknown }).rootfs, { type: 'layers', diff_ids: [] });
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});
