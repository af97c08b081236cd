/**
 * @module bench/publish
 * Puts each workload's images into every registry of the run, before the link is shaped: the OCI
 * image (skopeo, from the cached layout); with `ferry convert` the Nydus image, its prefetch-table
 * variant and, for lazy-trace, a copy in a repository of its own; with `ferry convert --oci-ref` a
 * zran index attached to the OCI image itself (oci-ref mode); with ctr-remote the eStargz image
 * and its optimized variant (converted once, pushed to every registry).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../observe/index.js';
import { exec, execCheck, pushImage, type Star } from './env/index.js';
import { convertToEstargz } from './estargz.js';
import { ferryBin } from './procs.js';
import type { BenchRegistry } from './registry.js';
import type { ImageRefs, WorkloadInfo } from './types.js';
import { prepareWorkloadImage, type Workload } from './workloads.js';

export interface PublishWants {
  nydus: boolean;
  trace: boolean;
  estargz: boolean;
  estargzOpt: boolean;
  ociRef: boolean;
}

export interface PreparedImages {
  infos: WorkloadInfo[];
  notes: string[];
  /** Registries where `ferry convert` failed (their lazy modes cannot run). */
  nydusFailed: Set<string>;
  /** Registries where `ferry convert --oci-ref` failed (the oci-ref mode cannot run there). */
  ociRefFailed: Set<string>;
}

function credsOf(reg: BenchRegistry): string | undefined {
  return reg.creds ? `${reg.creds.username}:${reg.creds.password}` : undefined;
}

function lastLines(r: { stdout: string; stderr: string }, n: number): string {
  return (r.stderr || r.stdout).trim().split('\n').slice(-n).join(' ');
}

/**
 * `ferry convert` of one registry's OCI image into `target` (optionally with a prefetch table), or
 * without a target `ferry convert --oci-ref`: the zran index attached to the source image.
 */
async function ferryConvert(o: {
  reg: BenchRegistry;
  source: string;
  target?: string;
  netns: string;
  dir: string;
  prefetchFile?: string;
}): Promise<{ ok: boolean; error: string }> {
  const creds = credsOf(o.reg);
  // in a 0600 file: a password on ferry's command line would be readable by every user (ps)
  const credsFile = join(o.dir, `creds-${o.reg.kind}`);
  if (creds) await writeFile(credsFile, creds, { mode: 0o600 });
  const r = await exec(
    process.execPath,
    [
      ferryBin(),
      'convert',
      '--source',
      o.source,
      '--source-plain-http',
      ...(o.target
        ? [
            '--target',
            o.target,
            '--target-plain-http',
            // one cache per registry: a cached layer's blob must be in the registry the image goes to
            '--cache',
            join(o.dir, `convert-cache-${o.reg.kind}.db`),
          ]
        : ['--oci-ref']),
      ...(creds ? ['--source-creds-file', credsFile, ...(o.target ? ['--target-creds-file', credsFile] : [])] : []),
      ...(o.prefetchFile ? ['--prefetch-patterns', o.prefetchFile] : []),
    ],
    { netns: o.netns, timeoutMs: 30 * 60_000 },
  );
  return { ok: r.code === 0, error: r.code === 0 ? '' : lastLines(r, 2) };
}

/** Sum of layer sizes of an image manifest (fetched with skopeo inside the namespace). */
async function imageSize(netns: string, reg: BenchRegistry, ref: string): Promise<number> {
  const creds = credsOf(reg);
  const args = ['inspect', '--raw', '--tls-verify=false', ...(creds ? [`--creds=${creds}`] : []), `docker://${ref}`];
  const raw = JSON.parse(await execCheck('skopeo', args, { netns })) as { layers?: Array<{ size: number }> };
  return (raw.layers ?? []).reduce((a, l) => a + l.size, 0);
}

/** Pushes and converts every workload's images into every registry. */
export async function publishImages(o: {
  workloads: Workload[];
  registries: BenchRegistry[];
  star: Star;
  dir: string;
  wants: PublishWants;
  log: Logger;
  onStep?: (label: string) => void;
}): Promise<PreparedImages> {
  const notes: string[] = [];
  const infos: WorkloadInfo[] = [];
  const nydusFailed = new Set<string>();
  const ociRefFailed = new Set<string>();
  const pushNs = o.star.nodes[0]!.netns;
  for (const w of o.workloads) {
    o.onStep?.(`building and publishing images: ${w.id}`);
    const built = await prepareWorkloadImage(w, o.log);
    const repo = `library/bench-${w.id}`;
    const info: WorkloadInfo = {
      id: w.id,
      title: w.title,
      command: w.command,
      ready: w.ready,
      imageBytes: built.compressedSize,
      uncompressedBytes: built.uncompressedSize,
      ...(w.reportsReadBytes ? { reportsReadBytes: w.reportsReadBytes } : {}),
      refs: {},
    };
    for (const reg of o.registries) {
      const refs: ImageRefs = { oci: `${reg.host}/${repo}:oci` };
      await pushImage(built.layoutDir, refs.oci, { netns: pushNs, ...(reg.creds ? { creds: reg.creds } : {}) });
      info.refs[reg.kind] = refs;
      if (o.wants.ociRef && !ociRefFailed.has(reg.kind)) {
        o.onStep?.(`attaching an OCI-ref index to ${w.id} (${reg.kind})`);
        const oc = await ferryConvert({ reg, source: refs.oci, netns: pushNs, dir: o.dir });
        if (oc.ok) refs.ociRef = refs.oci;
        else {
          ociRefFailed.add(reg.kind);
          notes.push(`ferry convert --oci-ref failed for ${w.id} (${reg.kind}): ${oc.error}`);
        }
      }
      if (!o.wants.nydus || nydusFailed.has(reg.kind)) continue;
      o.onStep?.(`converting ${w.id} to Nydus (${reg.kind})`);
      const conv = { reg, source: refs.oci, netns: pushNs, dir: o.dir };
      const plain = await ferryConvert({ ...conv, target: `${reg.host}/${repo}:nydus` });
      if (!plain.ok) {
        nydusFailed.add(reg.kind);
        notes.push(`ferry convert failed for ${w.id} (${reg.kind}): ${plain.error}`);
        continue;
      }
      refs.nydus = `${reg.host}/${repo}:nydus`;
      const pf = join(o.dir, `prefetch-${w.id}.txt`);
      await writeFile(pf, `${w.prefetch.join('\n')}\n`);
      const pre = await ferryConvert({ ...conv, target: `${reg.host}/${repo}:nydus-prefetch`, prefetchFile: pf });
      if (pre.ok) refs.nydusPrefetch = `${reg.host}/${repo}:nydus-prefetch`;
      else notes.push(`ferry convert --prefetch-patterns failed for ${w.id} (${reg.kind}): ${pre.error}`);
      if (o.wants.trace) {
        // its own repository: the trace (a referrer) must not reach the other lazy modes' pulls
        const target = `${reg.host}/${repo}-trace:nydus`;
        const tr = await ferryConvert({ ...conv, target });
        if (tr.ok) refs.nydusTrace = target;
        else notes.push(`ferry convert for the trace image failed for ${w.id} (${reg.kind}): ${tr.error}`);
      }
      if (info.nydusBytes === undefined) {
        const size = await imageSize(pushNs, reg, refs.nydus).catch(() => 0);
        if (size) info.nydusBytes = size;
      }
    }
    if ((o.wants.estargz || o.wants.estargzOpt) && o.registries.length) {
      o.onStep?.(`converting ${w.id} to eStargz (ctr-remote)`);
      await mkdir(join(o.dir, `estargz-${w.id}`), { recursive: true });
      const c = await convertToEstargz({
        dir: join(o.dir, `estargz-${w.id}`),
        netns: pushNs,
        registries: o.registries,
        repo,
        plain: o.wants.estargz,
        optimize: o.wants.estargzOpt,
        log: o.log,
      });
      notes.push(...c.notes);
      for (const reg of o.registries) {
        const refs = info.refs[reg.kind];
        if (!refs) continue;
        const e = c.estargz.get(reg.host);
        const eo = c.estargzOpt.get(reg.host);
        if (e) refs.estargz = e;
        if (eo) refs.estargzOpt = eo;
        if (info.estargzBytes === undefined && (e ?? eo)) {
          const size = await imageSize(pushNs, reg, (e ?? eo)!).catch(() => 0);
          if (size) info.estargzBytes = size;
        }
      }
    }
    infos.push(info);
  }
  return { infos, notes, nydusFailed, ociRefFailed };
}
