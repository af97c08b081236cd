/**
 * The eStargz pipeline against `ferry registry`: the prioritized files come from the prefetch trace
 * of the source's Nydus conversion when one exists (the traced file, its parent, then the landmark),
 * explicit files win over a trace, and without either the layer opens with `.no.prefetch.landmark`.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { buildOciImage, pushImage } from '../../bench/env/index.js';
import { startTestRegistry, ADMIN_PASSWORD, type TestRegistry } from '../../registry/testing/client.js';
import { RegistryClient, parseReference, withDigest } from '../../remote/index.js';
import {
  EstargzAnnotation,
  FOOTER_SIZE,
  NO_PREFETCH_LANDMARK,
  PREFETCH_LANDMARK,
  parseFooter,
  parseToc,
  type Toc,
} from '../../format/estargz/index.js';
import { openBootstrap } from '../../format/rafs/index.js';
import { HarborAnnotation, MediaType, parseImageIndex, parseImageManifest } from '../../oci/index.js';
import { pushPrefetchTrace } from '../../snapshotter/trace.js';
import { convertImage, fetchNydusBootstrap, nydusBlobTables } from '../convert.js';
import { convertImageToEstargz } from './image.js';
import { ferry } from '../../../test/support/ferry.js';

describe('eStargz conversion: prioritized files from a prefetch trace', () => {
  let work: string;
  let reg: TestRegistry;
  let client: RegistryClient;

  /** The TOC of the target's only layer (the footer's offset, the TOC tar entry's JSON). */
  async function tocOf(tag: string): Promise<Toc> {
    const m = await client.getManifest(parseReference(`${reg.host}/library/traced:${tag}`));
    const man = parseImageManifest(m.body, m.mediaType, 'target');
    const blob = await client.getBlobBuffer(reg.host, 'library/traced', man.layers[0]!.digest, 64 << 20);
    const off = parseFooter(blob.subarray(blob.length - FOOTER_SIZE));
    const tar = gunzipSync(blob.subarray(off, blob.length - FOOTER_SIZE));
    const size = Number.parseInt(tar.toString('latin1', 124, 135), 8);
    return parseToc(tar.subarray(512, 512 + size));
  }
  const order = (toc: Toc): string[] => toc.entries.filter((e) => e.type !== 'chunk').map((e) => e.name);

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'ferry-esgz-trace-'));
    reg = await startTestRegistry();
    client = new RegistryClient({ credentials: () => ({ username: 'admin', password: ADMIN_PASSWORD }) });
    const root = join(work, 'root');
    for (const d of ['a', 'b', 'z']) await mkdir(join(root, d), { recursive: true });
    await writeFile(join(root, 'a/first.txt'), 'first\n');
    await writeFile(join(root, 'b/middle.bin'), Buffer.alloc(100_000, 7));
    await writeFile(join(root, 'z/late.txt'), 'read at start\n');
    const img = await buildOciImage({ layers: [root], outDir: join(work, 'layout') });
    await pushImage(img.layoutDir, `${reg.host}/library/traced:v1`, { creds: `admin:${ADMIN_PASSWORD}` });
  });
  after(async () => {
    await reg?.destroy();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('no trace, no files: the layer opens with .no.prefetch.landmark', async () => {
    await convertImageToEstargz({
      source: `${reg.host}/library/traced:v1`,
      target: `${reg.host}/library/traced:plain`,
      sourceClient: client,
    });
    const names = order(await tocOf('plain'));
    assert.equal(names[0], NO_PREFETCH_LANDMARK);
    assert.ok(!names.includes(PREFETCH_LANDMARK));
  });

  it("the Nydus conversion's prefetch trace puts the traced file (and its directory) before the landmark", async () => {
    const nydusRef = parseReference(`${reg.host}/library/traced:v1-nydus`);
    const nydus = await convertImage({ source: `${reg.host}/library/traced:v1`, target: nydusRef, sourceClient: client });
    const { bootstrap, blobMeta, manifest } = await fetchNydusBootstrap(client, withDigest(nydusRef, nydus.targetDigest));
    const bs = openBootstrap(bootstrap);
    const tables = await nydusBlobTables(client, nydusRef, bootstrap, blobMeta);
    for (const b of bs.blobs) {
      const t = tables?.get(b.blobId);
      if (t) bs.setCiTable(b.index, t.entries, t.digests);
    }
    const ino = bs.lookup('/z/late.txt') ?? bs.lookup('z/late.txt');
    assert.ok(ino !== undefined);
    const chunks = bs.chunks(ino);
    assert.ok(chunks.length > 0);
    const blobs = bs.blobs.map((b) => b.blobId);
    const m = await client.getManifest(withDigest(nydusRef, nydus.targetDigest));
    await pushPrefetchTrace(
      client,
      nydusRef,
      { mediaType: m.mediaType, digest: m.digest, size: m.body.length },
      {
        schemaVersion: 1,
        bootstrap: manifest.layers[manifest.layers.length - 1]!.digest,
        blobs,
        chunks: chunks.map((c) => [blobs.indexOf(c.blobId), c.chunkIndex] as [number, number]),
      },
    );
    await convertImageToEstargz({
      source: `${reg.host}/library/traced:v1`,
      target: `${reg.host}/library/traced:traced`,
      sourceClient: client,
    });
    const names = order(await tocOf('traced'));
    const lm = names.indexOf(PREFETCH_LANDMARK);
    assert.ok(lm > 0, names.join(' '));
    assert.deepEqual(
      names.slice(0, lm).filter((n) => n !== './'),
      ['z', 'z/late.txt'],
    );
    assert.ok(names.indexOf('a/first.txt') > lm);
    // explicit files win over the trace
    await convertImageToEstargz({
      source: `${reg.host}/library/traced:v1`,
      target: `${reg.host}/library/traced:explicit`,
      sourceClient: client,
      prioritizedFiles: ['/b/middle.bin'],
    });
    const ex = order(await tocOf('explicit'));
    assert.deepEqual(
      ex.slice(0, ex.indexOf(PREFETCH_LANDMARK)).filter((n) => n !== './'),
      ['b', 'b/middle.bin'],
    );
  });

  it('ferry convert --format estargz: prioritized files from --prefetch-patterns, chunk size and level from flags', async () => {
    const r = await ferry(
      [
        'convert',
        '--format',
        'estargz',
        '--source',
        `${reg.host}/library/traced:v1`,
        '--target',
        `${reg.host}/library/traced:cli`,
        '--target-creds',
        `admin:${ADMIN_PASSWORD}`,
        '--prefetch-patterns',
        '-',
        '--estargz-chunk-size',
        '64KiB',
        '--estargz-compression-level',
        '1',
      ],
      { input: '/a/first.txt\n', timeoutMs: 60_000 },
    );
    assert.equal(r.code, 0, r.stderr);
    const toc = await tocOf('cli');
    const names = order(toc);
    assert.deepEqual(
      names.slice(0, names.indexOf(PREFETCH_LANDMARK)).filter((n) => n !== './'),
      ['a', 'a/first.txt'],
    );
    assert.equal(toc.entries.filter((e) => e.name === 'b/middle.bin').length, 2, '100 kB in 64 KiB chunks');
    const bad = await ferry([
      'convert',
      '--format',
      'estargz',
      '--source',
      `${reg.host}/library/traced:v1`,
      '--target',
      `${reg.host}/library/traced:x`,
      '--estargz-compression-level',
      '12',
    ]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--estargz-compression-level must be 0\.\.9/);
  });

  it('an index becomes an index of eStargz manifests (platforms kept, attestation entries left out); an eStargz source is refused', async () => {
    const arm = await buildOciImage({ layers: [join(work, 'root')], outDir: join(work, 'arm-layout'), architecture: 'arm64' });
    await pushImage(arm.layoutDir, `${reg.host}/library/traced:arm64`, { creds: `admin:${ADMIN_PASSWORD}` });
    const amd = await client.getManifest(parseReference(`${reg.host}/library/traced:v1`));
    const entry = (digest: string, size: number, architecture: string) => ({
      mediaType: MediaType.OCI_MANIFEST,
      digest,
      size,
      platform: { os: 'linux', architecture },
    });
    const index = {
      schemaVersion: 2,
      mediaType: MediaType.OCI_INDEX,
      manifests: [
        entry(amd.digest, amd.body.length, 'amd64'),
        entry(arm.manifestDigest, arm.manifestSize, 'arm64'),
        { ...entry(amd.digest, amd.body.length, 'unknown'), platform: { os: 'unknown', architecture: 'unknown' } },
      ],
    };
    await client.putManifest(parseReference(`${reg.host}/library/traced:multi`), Buffer.from(JSON.stringify(index)), MediaType.OCI_INDEX);
    const res = await convertImageToEstargz({
      source: `${reg.host}/library/traced:multi`,
      target: `${reg.host}/library/traced:multi-estargz`,
      sourceClient: client,
      prefetchFromTrace: false,
    });
    assert.equal(res.mediaType, MediaType.OCI_INDEX);
    const got = await client.getManifest(parseReference(`${reg.host}/library/traced:multi-estargz`));
    const out = parseImageIndex(got.body, got.mediaType, 'target');
    assert.deepEqual(
      out.manifests.map((m) => m.platform?.architecture),
      ['amd64', 'arm64'],
    );
    assert.equal(out.annotations?.[HarborAnnotation.ACCELERATION_SOURCE_DIGEST], res.sourceDigest);
    for (const m of out.manifests) {
      const child = await client.getManifest(withDigest(parseReference(`${reg.host}/library/traced:x`), m.digest));
      const man = parseImageManifest(child.body, child.mediaType, 'child');
      assert.ok(man.layers.every((l) => l.annotations?.[EstargzAnnotation.TOC_DIGEST]?.startsWith('sha256:')));
    }
    await assert.rejects(
      convertImageToEstargz({
        source: `${reg.host}/library/traced:plain`,
        target: `${reg.host}/library/traced:again`,
        sourceClient: client,
      }),
      /is already eStargz/,
    );
  });
});
