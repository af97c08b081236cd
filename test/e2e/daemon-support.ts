/**
 * Helpers of the daemon e2e tests: a full-tree description (content digests, modes, owners,
 * links, devices, xattrs) made with async I/O only — the tests read FUSE mounts served by their
 * own process, so a synchronous call on the mount would deadlock it.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';

const pexec = promisify(execFile);

async function fileDigest(p: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(p)) h.update(c as Buffer);
  return h.digest('hex');
}

/** xattrs of every entry under dir (getfattr -R, not following symlinks), keyed by relative path. */
async function allXattrs(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  // No `cwd: dir`: the child's chdir into a FUSE mount served by this very process would happen
  // while the parent is suspended in vfork, and deadlock it.
  const { stdout } = await pexec('getfattr', ['-R', '-d', '-m', '-', '-h', '-e', 'hex', '--absolute-names', dir], {
    maxBuffer: 256 * 1024 * 1024,
  }).catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? '' }));
  const prefix = dir.replace(/\/+$/, '');
  let cur = '';
  let acc: string[] = [];
  const flush = (): void => {
    if (cur && acc.length) out.set(cur, acc.sort().join(','));
    acc = [];
  };
  for (const line of stdout.split('\n')) {
    if (line.startsWith('# file: ')) {
      flush();
      cur = line.slice(8).slice(prefix.length).replace(/^\//, '');
      continue;
    }
    if (line.includes('=')) acc.push(line.trim());
  }
  flush();
  return out;
}

/** One line per entry, sorted: path, type+mode, uid:gid, size/digest or link target or rdev, hardlink group, xattrs. */
export async function describeTree(dir: string, opts: { xattrs?: boolean; mtime?: boolean } = {}): Promise<string[]> {
  const lines: string[] = [];
  const firstPath = new Map<string, string>();
  const xa = opts.xattrs === false ? new Map<string, string>() : await allXattrs(dir);
  async function walk(rel: string): Promise<void> {
    const names = (await readdir(join(dir, rel))).sort();
    for (const n of names) {
      const r = rel ? `${rel}/${n}` : n;
      const p = join(dir, r);
      const st = await lstat(p);
      let what: string;
      if (st.isFile()) {
        const key = String(st.ino);
        const prev = st.nlink > 1 ? firstPath.get(key) : undefined;
        if (prev) what = `hardlink:${prev}`;
        else {
          if (st.nlink > 1) firstPath.set(key, r);
          what = `${st.size}:${await fileDigest(p)}`;
        }
      } else if (st.isSymbolicLink()) what = `-> ${await readlink(p)}`;
      else if (st.isCharacterDevice() || st.isBlockDevice()) what = `dev ${st.rdev}`;
      else what = '';
      lines.push(
        `${r} ${st.mode.toString(8)} ${st.uid}:${st.gid} ${what}${opts.mtime ? ` m${Math.floor(st.mtimeMs / 1000)}` : ''} ${xa.get(r) ?? ''}`.trimEnd(),
      );
      if (st.isDirectory()) await walk(r);
    }
  }
  await walk('');
  return lines;
}

export async function sh(cmd: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  return pexec(cmd, args, { maxBuffer: 64 * 1024 * 1024 });
}

import { createHash as _h } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { buildLayer } from '../../src/builder/index.js';
import { packBootstrapLayer } from '../../src/format/rafs/index.js';
import { MediaType, NydusAnnotation } from '../../src/oci/index.js';
import { RegistryClient, parseReference } from '../../src/remote/index.js';

export interface PushedImage {
  ref: string;
  repo: string;
  blobId: string;
  blobSize: number;
  blobPath: string;
  bootstrapPath: string;
  /** the blob's `<blob id>.blob.meta` (nydusd cache form of its CI table) */
  blobMeta: Buffer;
  buildMs: number;
}

/** rootfs dir → buildLayer (one RAFS v6 layer) → blob + bootstrap layer + manifest pushed to the registry. */
export async function buildAndPush(o: {
  rootfs: string;
  host: string;
  repo: string;
  tag: string;
  password: string;
  workDir: string;
  chunkSize?: number;
  digester?: 'sha256' | 'blake3';
}): Promise<PushedImage> {
  const t0 = Date.now();
  const r = await buildLayer({
    source: { dir: o.rootfs },
    blobDir: o.workDir,
    fsVersion: 6,
    compressor: 'zstd',
    chunkSize: o.chunkSize ?? 1024 * 1024,
    digester: o.digester ?? 'blake3',
  });
  const buildMs = Date.now() - t0;
  const bootstrapPath = join(o.workDir, 'image.boot');
  await writeFile(bootstrapPath, r.bootstrap);
  const client = new RegistryClient({ credentials: () => ({ username: 'admin', password: o.password }) });
  await client.pushBlob(o.host, o.repo, `sha256:${r.blobId}`, r.blobSize, () => createReadStream(r.blobPath));
  const bl = await packBootstrapLayer(r.bootstrap);
  const blDigest = `sha256:${_h('sha256').update(bl.blob).digest('hex')}`;
  await client.pushBlob(o.host, o.repo, blDigest, bl.blob.length, bl.blob);
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: {},
      rootfs: { type: 'layers', diff_ids: [`sha256:${r.blobId}`, bl.diffId] },
    }),
  );
  const cfgDigest = `sha256:${_h('sha256').update(config).digest('hex')}`;
  await client.pushBlob(o.host, o.repo, cfgDigest, config.length, config);
  const manifest = {
    schemaVersion: 2,
    mediaType: MediaType.OCI_MANIFEST,
    config: { mediaType: MediaType.OCI_CONFIG, digest: cfgDigest, size: config.length },
    layers: [
      { mediaType: MediaType.NYDUS_BLOB, digest: `sha256:${r.blobId}`, size: r.blobSize, annotations: { [NydusAnnotation.BLOB]: 'true' } },
      {
        mediaType: MediaType.OCI_LAYER_GZIP,
        digest: blDigest,
        size: bl.blob.length,
        annotations: { [NydusAnnotation.BOOTSTRAP]: 'true', [NydusAnnotation.FS_VERSION]: '6' },
      },
    ],
  };
  const ref = `${o.host}/${o.repo}:${o.tag}`;
  await client.putManifest(parseReference(ref), Buffer.from(JSON.stringify(manifest)), MediaType.OCI_MANIFEST);
  return { ref, repo: o.repo, blobId: r.blobId, blobSize: r.blobSize, blobPath: r.blobPath, bootstrapPath, blobMeta: r.blobMeta, buildMs };
}
