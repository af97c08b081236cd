/**
 * `ferry build` against the two-step way to the same result: a Dockerfile (FROM a debootstrap
 * bookworm minbase image that already has its Nydus form in the registry, RUN writing 24 MiB, COPY of
 * an 8 MiB context file) to a runnable Nydus image in `ferry registry`.
 *
 * - baseline: `buildah build` + `buildah push docker://…` (the OCI image) + `ferry convert` of it
 *   (convertImage, its own layer cache, no chunk dictionary — what a user does without `ferry build`);
 * - ferry build: `buildImage` (`--nydus`; the base's Nydus form as chunk dictionary, its layer cache).
 *
 * Each from a cold buildah store and cold caches, then a rebuild after a change in the last
 * instruction (COPY) with warm stores and caches. Reported as wall time and the baseline/ferry ratio,
 * both measured in this run, with the bytes each pushed. Rounds alternate which one runs first.
 *
 * Run (root, buildah): `npx tsc -p . && node dist/bench/build/run.js [--rounds N] [--json FILE]`
 */
import { writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { debootstrapRootfs, buildOciImage, execCheck, pushImage } from '../../src/bench/env/index.js';
import { startRegistry, type RegistryHandle } from '../../src/registry/index.js';
import { metricValue } from '../../src/observe/index.js';
import { RegistryClient } from '../../src/remote/index.js';
import { convertImage, SqliteLayerCache } from '../../src/convert/index.js';
import { buildImage } from '../../src/build/index.js';

const PASSWORD = 'BenchAdmin1';

interface Sample {
  way: 'baseline' | 'ferry build';
  phase: 'cold' | 'rebuild';
  wallS: number;
  pushedMB: number;
}

async function timed(reg: RegistryHandle, fn: () => Promise<unknown>): Promise<{ wallS: number; pushedMB: number }> {
  const b0 = await metricValue(reg.metrics, 'ferry_registry_blob_bytes_received_total');
  const t0 = process.hrtime.bigint();
  await fn();
  const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
  const pushed = (await metricValue(reg.metrics, 'ferry_registry_blob_bytes_received_total')) - b0;
  return { wallS: +wallS.toFixed(2), pushedMB: +(pushed / 1e6).toFixed(1) };
}

/** buildah as a child, asynchronously: the registry it pulls from and pushes to runs in this process. */
async function buildah(storage: string, args: string[], env: Record<string, string> = {}): Promise<void> {
  await execCheck('buildah', ['--root', join(storage, 'root'), '--runroot', join(storage, 'run'), '--storage-driver', 'overlay', ...args], {
    env: { ...process.env, ...env },
    timeoutMs: 600_000,
  });
}

async function main(): Promise<void> {
  const arg = (k: string): string | undefined => (process.argv.includes(k) ? process.argv[process.argv.indexOf(k) + 1] : undefined);
  const rounds = Number(arg('--rounds') ?? 2);
  const work = await mkdtemp(join(tmpdir(), 'ferry-bench-build-'));
  const reg = await startRegistry({
    listen: '127.0.0.1:0',
    dataDir: join(work, 'registry'),
    adminPassword: PASSWORD,
    config: { fsync: false },
  });
  const samples: Sample[] = [];
  try {
    const client = new RegistryClient({ credentials: () => ({ username: 'admin', password: PASSWORD }) });
    const base = `${reg.host}/library/debian:bookworm`;
    const image = await buildOciImage({ layers: [await debootstrapRootfs()], outDir: join(work, 'base') });
    await pushImage(image.layoutDir, base, { creds: `admin:${PASSWORD}` });
    await convertImage({ source: base, target: `${base}-nydus`, sourceClient: client });
    const ctx = join(work, 'ctx');
    await mkdir(ctx);
    await writeFile(
      join(ctx, 'Dockerfile'),
      `FROM ${base}\nRUN head -c 25165824 /dev/urandom > /opt/run.bin && echo ran > /opt/ran\nCOPY app.bin /opt/app.bin\n`,
    );
    const auth = join(work, 'auth.json');
    await writeFile(auth, JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from(`admin:${PASSWORD}`).toString('base64') } } }), {
      mode: 0o600,
    });
    const change = (): Promise<void> => writeFile(join(ctx, 'app.bin'), randomBytes(8 << 20));

    for (let r = 0; r < rounds; r++) {
      const ways = r % 2 === 0 ? (['baseline', 'ferry build'] as const) : (['ferry build', 'baseline'] as const);
      for (const way of ways) {
        const dir = join(work, `r${r}-${way.replace(' ', '-')}`);
        const repo = `${reg.host}/r${r}/${way.replace(' ', '-')}`;
        const once = async (tag: string): Promise<void> => {
          if (way === 'baseline') {
            await buildah(dir, ['build', '--format', 'oci', '--layers', '--tls-verify=false', '-t', `${repo}:${tag}`, ctx]);
            await buildah(dir, ['push', '--tls-verify=false', '--format', 'oci', `${repo}:${tag}`, `docker://${repo}:${tag}`], {
              REGISTRY_AUTH_FILE: auth,
            });
            const cache = new SqliteLayerCache(join(dir, 'convert-cache.db'));
            try {
              await convertImage({ source: `${repo}:${tag}`, target: `${repo}:${tag}-nydus`, sourceClient: client, cache });
            } finally {
              cache.close();
            }
          } else {
            await buildImage({
              context: ctx,
              tag: `${repo}:${tag}`,
              push: true,
              output: 'nydus',
              client,
              buildahCredentials: () => ({ username: 'admin', password: PASSWORD }),
              insecure: true,
              storage: { root: join(dir, 'root'), runroot: join(dir, 'run') },
              cacheDir: join(dir, 'cache'),
            });
          }
        };
        await change();
        samples.push({ way, phase: 'cold', ...(await timed(reg, () => once('v1'))) });
        await change();
        samples.push({ way, phase: 'rebuild', ...(await timed(reg, () => once('v2'))) });
      }
    }
  } finally {
    await reg.close();
    await rm(work, { recursive: true, force: true });
  }
  const median = (xs: number[]): number => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  };
  const summary = (['cold', 'rebuild'] as const).map((phase) => {
    const of = (way: Sample['way']): Sample[] => samples.filter((s) => s.phase === phase && s.way === way);
    const b = median(of('baseline').map((s) => s.wallS));
    const f = median(of('ferry build').map((s) => s.wallS));
    return {
      phase,
      baselineS: b,
      ferryBuildS: f,
      ratio: +(b / f).toFixed(2),
      baselinePushedMB: median(of('baseline').map((s) => s.pushedMB)),
      ferryBuildPushedMB: median(of('ferry build').map((s) => s.pushedMB)),
    };
  });
  for (const s of samples) console.log(`${s.phase.padEnd(8)} ${s.way.padEnd(12)} ${s.wallS.toFixed(2)} s  pushed ${s.pushedMB} MB`);
  console.table(summary);
  const out = arg('--json');
  if (out) writeFileSync(out, JSON.stringify({ samples, summary }, null, 2));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
