/**
 * @module convert/check
 * Verifies a conversion (the role of `nydusify check`): the Nydus image's file tree, read through the
 * RAFS reader with file data decoded from its blobs (every chunk digest verified), must equal the
 * source image's layers applied with OCI semantics (whiteouts, opaque directories, hardlinks): the
 * same names, types, permission bits, owners, sizes, content digests, symlink targets, device
 * numbers, xattrs, and hardlinked paths sharing one inode. Also checks the manifest's shape (blob
 * layers then the bootstrap layer, diff_ids matching, every bootstrap blob present).
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, open, rm, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { FerryError, S_IFMT, typeOfMode } from '../core/index.js';
import { NydusAnnotation, MediaType, isIndexMediaType, type ImageConfig, type ImageIndex, type ImageManifest } from '../oci/index.js';
import { silentLogger, type Logger } from '../observe/index.js';
import {
  RegistryClient,
  parseReference,
  withDigest,
  formatReference,
  platformMatches,
  formatPlatform,
  parsePlatform,
  isNydusEntry,
  type ImageReference,
} from '../remote/index.js';
import { readLayer, whiteoutOf, type TarEntry } from '../format/tar/index.js';
import {
  PLAN_STRIDE,
  openBootstrap,
  blobsCarryTables,
  ciFromMetaFile,
  loadBlobTables,
  planFileRead,
  tilingProblem,
  type RafsBootstrap,
  type BlobInfo,
} from '../format/rafs/index.js';
import { decodeChunk } from '../format/compress/index.js';
import { unpackBootstrapLayerFiles } from './streams.js';
import { ConvertAnnotation } from './convert.js';

export interface Difference {
  platform?: string;
  path: string;
  what: string;
  source?: string;
  target?: string;
}

export interface CheckOptions {
  source: string | ImageReference;
  target: string | ImageReference;
  sourceClient?: RegistryClient;
  targetClient?: RegistryClient;
  /** Blobs stored in a localfs backend instead of the registry. */
  backend?: { type: 'localfs'; dir: string };
  /** Platforms to check (default: every Nydus manifest of the target). */
  platforms?: string[];
  workDir?: string;
  log?: Logger;
  /** Stop listing after this many differences (default 200). */
  maxDifferences?: number;
}

export interface CheckResult {
  ok: boolean;
  differences: Difference[];
  checked: Array<{ platform?: string; sourceDigest: string; targetDigest: string; entries: number; files: number; bytes: number }>;
}

interface SrcNode {
  type: 'file' | 'dir' | 'symlink' | 'char' | 'block' | 'fifo';
  mode: number;
  uid: number;
  gid: number;
  size: number;
  digest?: string;
  linkname?: string;
  rdev?: number;
  xattrs: Record<string, Buffer>;
  /** nodes created as hardlinks of each other share this object */
  group: object;
}

function newEncodeDev(major: number, minor: number): number {
  return ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12)) >>> 0;
}

function isUnder(path: string, dir: string): boolean {
  return dir === '' ? path !== '' : path.startsWith(`${dir}/`);
}

/** The source image's tree: layers applied in order with OCI whiteout semantics. */
async function sourceTree(layers: Array<() => Promise<Readable>>): Promise<Map<string, SrcNode>> {
  const tree = new Map<string, SrcNode>();
  tree.set('', { type: 'dir', mode: 0o755, uid: 0, gid: 0, size: 0, xattrs: {}, group: {} });
  const removeUnder = (dir: string, keep?: Set<string>): void => {
    for (const p of [...tree.keys()]) if (isUnder(p, dir) && !keep?.has(p)) tree.delete(p);
  };
  for (const open of layers) {
    const entries: Array<{ entry: TarEntry; digest?: string }> = [];
    const whiteouts: string[] = [];
    const opaques: string[] = [];
    for await (const { entry, body } of readLayer(await open())) {
      const wh = whiteoutOf(entry.path);
      if (wh) {
        body.resume();
        if (wh.kind === 'whiteout') whiteouts.push(wh.target);
        else opaques.push(wh.dir);
        continue;
      }
      if (entry.type === 'file') {
        const h = createHash('sha256');
        for await (const c of body) h.update(c as Buffer);
        entries.push({ entry, digest: `sha256:${h.digest('hex')}` });
      } else {
        body.resume();
        entries.push({ entry });
      }
    }
    // Whiteouts and opaque markers hide lower entries only; then this layer's entries go on top.
    for (const d of opaques) removeUnder(d);
    for (const t of whiteouts) {
      tree.delete(t);
      removeUnder(t);
    }
    const layerNodes = new Map<string, SrcNode>();
    for (const { entry, digest } of entries) {
      const path = entry.path;
      // missing parents appear as plain directories
      const parts = path.split('/');
      for (let i = 1; i < parts.length; i++) {
        const pp = parts.slice(0, i).join('/');
        const cur = tree.get(pp);
        if (cur?.type !== 'dir') {
          if (cur) removeUnder(pp);
          tree.set(pp, { type: 'dir', mode: 0o755, uid: 0, gid: 0, size: 0, xattrs: {}, group: {} });
        }
      }
      let node: SrcNode;
      if (entry.type === 'hardlink') {
        const target = layerNodes.get(entry.linkname ?? '') ?? tree.get(entry.linkname ?? '');
        if (!target) throw new FerryError('INVALID_ARGUMENT', `source layer: hardlink ${path} → missing ${entry.linkname}`);
        node = target;
      } else {
        node = {
          type: entry.type,
          mode: entry.mode & 0o7777,
          uid: entry.uid,
          gid: entry.gid,
          size: entry.type === 'file' ? entry.size : 0,
          xattrs: entry.xattrs,
          group: {},
        };
        if (digest) node.digest = digest;
        if (entry.type === 'symlink') node.linkname = entry.linkname ?? '';
        if (entry.type === 'char' || entry.type === 'block') node.rdev = newEncodeDev(entry.devmajor ?? 0, entry.devminor ?? 0);
      }
      const prev = tree.get(path);
      if (prev && (prev.type !== 'dir' || node.type !== 'dir')) removeUnder(path);
      tree.set(path, node);
      layerNodes.set(path, node);
    }
  }
  return tree;
}

function fmtMode(m: number): string {
  return `0${m.toString(8)}`;
}

function xattrText(x: Map<string, Buffer> | Record<string, Buffer>): string {
  const entries = x instanceof Map ? [...x.entries()] : Object.entries(x);
  return entries
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${v.toString('hex')}`)
    .join(',');
}

/** Downloads the blobs of a bootstrap into `dir` (verified), returning open handles by blob index. */
async function openBlobs(
  boot: RafsBootstrap,
  dst: ImageReference,
  tc: RegistryClient,
  dir: string,
  backend?: { dir: string },
): Promise<Map<number, FileHandle>> {
  const handles = new Map<number, FileHandle>();
  for (const b of boot.blobs) {
    let path: string;
    if (backend) {
      path = join(backend.dir, b.blobId);
    } else {
      path = join(dir, b.blobId);
      const s = await tc.getBlob(dst.registry, dst.repository, `sha256:${b.blobId}`);
      await pipeline(s, createWriteStream(path));
    }
    handles.set(b.index, await open(path, 'r'));
  }
  return handles;
}

async function fileDigest(
  boot: RafsBootstrap,
  ino: number,
  size: number,
  blobs: Map<number, FileHandle>,
  infos: Map<number, BlobInfo>,
): Promise<string> {
  const chunks = boot.chunks(ino);
  // a converted file's chunks tile it exactly: no holes, no overlaps
  const problem = tilingProblem(chunks, size);
  if (problem) throw new FerryError('DATA_LOSS', problem);
  const h = createHash('sha256');
  const plan = planFileRead(chunks, size, 0, size);
  const seg = plan.segments;
  for (let p = 0; p < plan.count * PLAN_STRIDE; p += PLAN_STRIDE) {
    const c = chunks[seg[p]!]!;
    const fh = blobs.get(c.blobIndex);
    const info = infos.get(c.blobIndex);
    if (!fh || !info) throw new FerryError('DATA_LOSS', `chunk refers to blob ${c.blobIndex} not in the blob table`);
    const raw = Buffer.alloc(c.compressedSize);
    const { bytesRead } = await fh.read(raw, 0, raw.length, c.compressedOffset);
    if (bytesRead !== raw.length) throw new FerryError('DATA_LOSS', `blob ${info.blobId} too short for chunk ${c.chunkIndex}`);
    const from = seg[p + 1]!;
    h.update(decodeChunk(info, c, raw).subarray(from, from + seg[p + 2]!));
  }
  return `sha256:${h.digest('hex')}`;
}

/** Compares one Nydus manifest with its source manifest. */
async function checkPair(o: {
  src: ImageReference;
  dst: ImageReference;
  sc: RegistryClient;
  tc: RegistryClient;
  srcBody: Buffer;
  dstBody: Buffer;
  platform?: string;
  work: string;
  backend?: { dir: string };
  diffs: Difference[];
  max: number;
}): Promise<{ entries: number; files: number; bytes: number }> {
  const { src, dst, sc, tc, platform } = o;
  const add = (d: Omit<Difference, 'platform'>): void => {
    if (o.diffs.length < o.max) o.diffs.push(platform ? { platform, ...d } : d);
  };
  const sman = JSON.parse(o.srcBody.toString('utf8')) as ImageManifest;
  const nman = JSON.parse(o.dstBody.toString('utf8')) as ImageManifest;
  const last = nman.layers[nman.layers.length - 1];
  if (last?.annotations?.[NydusAnnotation.BOOTSTRAP] !== 'true') {
    add({ path: '', what: 'manifest: last layer is not a nydus bootstrap layer' });
    return { entries: 0, files: 0, bytes: 0 };
  }
  const blobLayers = nman.layers.slice(0, -1);
  for (const l of blobLayers) {
    if (l.mediaType !== MediaType.NYDUS_BLOB || l.annotations?.[NydusAnnotation.BLOB] !== 'true')
      add({ path: '', what: `manifest: layer ${l.digest} lacks the nydus blob media type/annotation` });
  }
  const ncfg = JSON.parse(
    (await tc.getBlobBuffer(dst.registry, dst.repository, nman.config.digest, 16 << 20)).toString('utf8'),
  ) as ImageConfig;
  if (ncfg.rootfs.diff_ids.length !== nman.layers.length)
    add({
      path: '',
      what: 'config: diff_ids count differs from layers',
      source: String(nman.layers.length),
      target: String(ncfg.rootfs.diff_ids.length),
    });
  blobLayers.forEach((l, i) => {
    if (ncfg.rootfs.diff_ids[i] !== l.digest)
      add({ path: '', what: `config: diff_id ${i} is not the blob digest`, source: l.digest, target: ncfg.rootfs.diff_ids[i] ?? '' });
  });
  const { bootstrap, blobMeta } = await unpackBootstrapLayerFiles(
    await tc.getBlobBuffer(dst.registry, dst.repository, last.digest, 1 << 30),
  );
  const boot = openBootstrap(bootstrap);
  if (!o.backend) {
    const layerDigests = new Set(blobLayers.map((l) => l.digest));
    for (const b of boot.blobs)
      if (!layerDigests.has(`sha256:${b.blobId}`)) add({ path: '', what: `bootstrap blob ${b.blobId} is not a layer of the manifest` });
  }
  const tree = await sourceTree(sman.layers.map((l) => () => sc.getBlob(src.registry, src.repository, l.digest)));
  const blobs = await openBlobs(boot, dst, tc, o.work, o.backend);
  const infos = new Map(boot.blobs.map((b) => [b.index, b]));
  // A bootstrap without a chunk table maps chunks through the blobs' own tables (verified through
  // their ToCs); the CI tables the bootstrap layer ships must agree with them.
  const readBlob = async (b: BlobInfo, off: number, len: number): Promise<Buffer> => {
    const buf = Buffer.alloc(len);
    const { bytesRead } = await blobs.get(b.index)!.read(buf, 0, len, off);
    if (bytesRead !== len) throw new FerryError('DATA_LOSS', `blob ${b.blobId}: short read at ${off}`);
    return buf;
  };
  const tableless = !boot.canMapChunks();
  for (const b of boot.blobs) {
    if (!blobsCarryTables([b])) {
      if (tableless)
        throw new FerryError(
          'FAILED_PRECONDITION',
          `bootstrap has no chunk table and blob ${b.blobId} carries no CI table, digest array or ToC`,
        );
      continue;
    }
    const shipped = blobMeta.get(b.blobId);
    if (!tableless && !shipped) continue;
    const own = await loadBlobTables(b, readBlob);
    if (tableless) boot.setCiTable(b.index, own.entries, own.digests);
    if (!shipped) continue;
    let ok: boolean;
    try {
      const ci = ciFromMetaFile(b, shipped);
      ok =
        ci.length === own.entries.length &&
        ci.every((e, i) => {
          const x = own.entries[i]!;
          return (
            e.compressedOffset === x.compressedOffset &&
            e.compressedSize === x.compressedSize &&
            e.uncompressedOffset === x.uncompressedOffset &&
            e.uncompressedSize === x.uncompressedSize &&
            e.compressed === x.compressed
          );
        });
    } catch {
      ok = false;
    }
    if (!ok) add({ path: '', what: `bootstrap layer: ${b.blobId}.blob.meta disagrees with the blob's CI table` });
  }
  let entries = 0;
  let files = 0;
  let bytes = 0;
  try {
    const seen = new Set<string>();
    const inoOfGroup = new Map<object, { ino: number; path: string }>();
    for (const e of boot.walk()) {
      entries++;
      const path = e.path;
      seen.add(path);
      const s = tree.get(path);
      if (!s) {
        add({ path, what: 'only in the Nydus image' });
        continue;
      }
      const st = e.stat;
      const ttype = typeOfMode(st.mode) ?? `0${(st.mode & S_IFMT).toString(8)}`;
      if (ttype !== s.type) {
        add({ path, what: 'type', source: s.type, target: ttype });
        continue;
      }
      if (path !== '' && (st.mode & 0o7777) !== s.mode)
        add({ path, what: 'mode', source: fmtMode(s.mode), target: fmtMode(st.mode & 0o7777) });
      if (path !== '' && (st.uid !== s.uid || st.gid !== s.gid))
        add({ path, what: 'owner', source: `${s.uid}:${s.gid}`, target: `${st.uid}:${st.gid}` });
      const sx = xattrText(s.xattrs);
      const tx = xattrText(boot.xattrs(e.ino));
      if (sx !== tx) add({ path, what: 'xattrs', source: sx, target: tx });
      if (s.type === 'symlink') {
        const t = boot.readlink(e.ino);
        if (t !== s.linkname) add({ path, what: 'symlink target', source: s.linkname ?? '', target: t });
      } else if (s.type === 'char' || s.type === 'block') {
        if (st.rdev !== s.rdev) add({ path, what: 'device', source: String(s.rdev), target: String(st.rdev) });
      } else if (s.type === 'file') {
        files++;
        if (st.size !== s.size) {
          add({ path, what: 'size', source: String(s.size), target: String(st.size) });
          continue;
        }
        // stat().ino is what hardlinks share (v6: the nid; v5: the on-disk i_ino, not the table index)
        const prev = inoOfGroup.get(s.group);
        if (prev && prev.ino !== st.ino) add({ path, what: `hardlink of ${prev.path} is a separate inode` });
        if (prev && prev.ino === st.ino) continue; // same data, checked once
        inoOfGroup.set(s.group, { ino: st.ino, path });
        try {
          const d = await fileDigest(boot, e.ino, st.size, blobs, infos);
          bytes += st.size;
          if (d !== s.digest) add({ path, what: 'content digest', source: s.digest ?? '', target: d });
        } catch (err) {
          add({ path, what: 'content unreadable', target: (err as Error).message });
        }
      }
    }
    for (const p of tree.keys()) if (!seen.has(p)) add({ path: p, what: 'missing from the Nydus image' });
  } finally {
    for (const fh of blobs.values()) await fh.close();
  }
  return { entries, files, bytes };
}

/** Checks `target` (a Nydus image or index) against `source`. */
export async function checkImage(opts: CheckOptions): Promise<CheckResult> {
  const src = typeof opts.source === 'string' ? parseReference(opts.source) : opts.source;
  const dst = typeof opts.target === 'string' ? parseReference(opts.target) : opts.target;
  const sc = opts.sourceClient ?? new RegistryClient();
  const tc = opts.targetClient ?? sc;
  const log = opts.log ?? silentLogger();
  const max = opts.maxDifferences ?? 200;
  const diffs: Difference[] = [];
  const checked: CheckResult['checked'] = [];
  if (opts.workDir) await mkdir(opts.workDir, { recursive: true });
  const work = await mkdtemp(join(opts.workDir ?? tmpdir(), 'ferry-check-'));
  try {
    const top = await tc.getManifest(dst);
    const srcTop = await sc.getManifest(src);
    const pairs: Array<{ platform?: string; dstDigest: string; dstBody: Buffer; srcDigest: string; srcBody: Buffer }> = [];
    const srcIndex = isIndexMediaType(srcTop.mediaType) ? (JSON.parse(srcTop.body.toString('utf8')) as ImageIndex) : undefined;
    const wanted = (opts.platforms ?? []).map(parsePlatform);
    const sourceFor = async (annot: string | undefined, platform: string | undefined): Promise<{ digest: string; body: Buffer }> => {
      if (!srcIndex) return { digest: srcTop.digest, body: srcTop.body };
      let digest = annot && srcIndex.manifests.some((d) => d.digest === annot) ? annot : undefined;
      if (!digest && platform)
        digest = srcIndex.manifests.find((d) => !isNydusEntry(d) && platformMatches(d.platform, parsePlatform(platform)))?.digest;
      if (!digest) throw new FerryError('NOT_FOUND', `no source manifest for platform ${platform ?? '?'} in ${formatReference(src)}`);
      const m = await sc.getManifest(withDigest(src, digest));
      return { digest: m.digest, body: m.body };
    };
    if (isIndexMediaType(top.mediaType)) {
      const idx = JSON.parse(top.body.toString('utf8')) as ImageIndex;
      const merged = idx.manifests.some(isNydusEntry);
      for (const d of idx.manifests) {
        if (merged && !isNydusEntry(d)) continue;
        if (wanted.length && !wanted.some((w) => platformMatches(d.platform, w))) continue;
        const m = await tc.getManifest(withDigest(dst, d.digest));
        const man = JSON.parse(m.body.toString('utf8')) as ImageManifest;
        const platform = d.platform ? formatPlatform(d.platform) : undefined;
        const s = await sourceFor(man.annotations?.[ConvertAnnotation.SOURCE_DIGEST], platform);
        pairs.push({ ...(platform ? { platform } : {}), dstDigest: m.digest, dstBody: m.body, srcDigest: s.digest, srcBody: s.body });
      }
    } else {
      const man = JSON.parse(top.body.toString('utf8')) as ImageManifest;
      const s = await sourceFor(man.annotations?.[ConvertAnnotation.SOURCE_DIGEST], opts.platforms?.[0]);
      pairs.push({ dstDigest: top.digest, dstBody: top.body, srcDigest: s.digest, srcBody: s.body });
    }
    if (pairs.length === 0) throw new FerryError('NOT_FOUND', `${formatReference(dst)}: no Nydus manifest to check`);
    for (const p of pairs) {
      log.info({ platform: p.platform, source: p.srcDigest, target: p.dstDigest }, 'checking');
      const pairOpts: Parameters<typeof checkPair>[0] = {
        src,
        dst,
        sc,
        tc,
        srcBody: p.srcBody,
        dstBody: p.dstBody,
        work,
        diffs,
        max,
      };
      if (p.platform) pairOpts.platform = p.platform;
      if (opts.backend) pairOpts.backend = { dir: opts.backend.dir };
      const r = await checkPair(pairOpts);
      checked.push({ ...(p.platform ? { platform: p.platform } : {}), sourceDigest: p.srcDigest, targetDigest: p.dstDigest, ...r });
    }
    return { ok: diffs.length === 0, differences: diffs, checked };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
