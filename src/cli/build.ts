/**
 * @module cli/build
 * `ferry build [-f Dockerfile] [--build-arg K=V]… [--target T] [--platform P] -t REG/REPO:TAG [--push]
 * [--oci|--nydus|--both] CONTEXT`: builds with buildah and pushes an OCI image, a Nydus image or the
 * merged index of both. Progress on stderr when it is a terminal; `--json` prints the result.
 * Credentials: `--user NAME` with the password in FERRY_REGISTRY_PASSWORD (never on the command
 * line), else ~/.docker/config.json.
 */
import { homedir } from 'node:os';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { FerryError } from '../core/index.js';
import { createLogger } from '../observe/index.js';
import { buildImage, type BuildOutput, type BuildProgress, type BuildResult } from '../build/index.js';
import type { Credentials } from '../remote/index.js';
import { progressReporter, sideClient } from './convert.js';
import { parseArgs } from './lifecycle.js';
import { plainHttpFlag } from './plain-http.js';

function collectArg(v: string, prev: Map<string, string>): Map<string, string> {
  const i = v.indexOf('=');
  if (i <= 0) throw new FerryError('INVALID_ARGUMENT', `--build-arg ${v}: expected KEY=VALUE`);
  prev.set(v.slice(0, i), v.slice(i + 1));
  return prev;
}

function credentials(user: unknown): Credentials | undefined {
  if (typeof user !== 'string' || !user) return undefined;
  const password = process.env.FERRY_REGISTRY_PASSWORD;
  if (!password) throw new FerryError('INVALID_ARGUMENT', '--user needs the password in the environment variable FERRY_REGISTRY_PASSWORD');
  return { username: user, password };
}

/** Progress lines on stderr: buildah's steps, blobs pushed, then the conversion bars. */
function reporter(enabled: boolean): { onProgress?: (p: BuildProgress) => void; stop(): void } {
  if (!enabled) return { stop: () => {} };
  const bars = progressReporter(true);
  const onProgress = (p: BuildProgress): void => {
    if (p.phase === 'step') process.stderr.write(`${p.text}\n`);
    else if (p.phase === 'push') process.stderr.write(`pushed OCI image ${p.digest}\n`);
    else if (p.phase === 'unchanged')
      process.stderr.write(`unchanged: the tag already holds the acceleration of ${p.digest.slice(0, 19)}\n`);
    else bars.onProgress?.(p.event);
  };
  return { onProgress, stop: () => bars.stop() };
}

function summary(r: BuildResult): string {
  const lines = [`built ${r.target}: image ${r.oci.configDigest}`];
  if (r.digest) lines.push(`${r.unchanged ? 'unchanged' : 'pushed'} ${r.digest} (OCI manifest ${r.oci.digest})`);
  if (r.nydus) lines.push(`nydus ${r.nydus.digest}: ${r.nydus.layers.filter((l) => !l.cached).length} layer(s) converted`);
  return `${lines.join('\n')}\n`;
}

export async function run(argv: string[]): Promise<number> {
  const cmd = new Command('ferry build')
    .description('build a Dockerfile with buildah into an OCI image, a Nydus image or a merged index of both')
    .argument('<context>', 'build context directory')
    .option('-f, --file <path>', 'Dockerfile (default CONTEXT/Dockerfile)')
    .option('--build-arg <k=v>', 'build argument (repeatable)', collectArg, new Map<string, string>())
    .option('--target <stage>', 'stage to build')
    .option('--platform <os/arch>', 'platform to build for')
    .requiredOption('-t, --tag <ref>', 'REGISTRY/REPOSITORY:TAG')
    .option('--push', "push to the registry (and accelerate); without it the image stays in buildah's store")
    .addOption(new Option('--oci', 'push only the OCI image').conflicts(['nydus', 'both']))
    .addOption(new Option('--nydus', 'push only the Nydus image under the tag').conflicts(['oci', 'both']))
    .addOption(new Option('--both', 'tag a merged index of the OCI and Nydus images (default)').conflicts(['oci', 'nydus']))
    .option('--user <name>', 'registry user; the password comes from FERRY_REGISTRY_PASSWORD')
    .option('--chunk-dict <ref>', "Nydus image whose bootstrap is the chunk dictionary (default: the base image's Nydus form)")
    .option('--storage-driver <name>', 'buildah storage driver (overlay, or vfs where overlay does not work)', 'overlay')
    .option('--storage-root <dir>', "buildah storage directory (default: buildah's system store)")
    .option(
      '--cache-dir <dir>',
      'layer conversion cache and work files',
      join(process.env.FERRY_CACHE_DIR || join(homedir(), '.cache', 'ferry'), 'build'),
    )
    .option('-q, --quiet', 'no progress output')
    .option('--json', 'print the result as JSON on stdout');
  plainHttpFlag(cmd, 'plain-http', 'plain HTTP / no TLS verification (loopback registries are always plain HTTP)', ['insecure']);
  const parsed = parseArgs(cmd, argv);
  if (parsed !== undefined) return parsed;
  const o = cmd.opts<Record<string, unknown>>();
  const log = createLogger({ name: 'build', level: process.env.FERRY_LOG_LEVEL ?? 'warn' });
  const progress = reporter(!o.quiet && !o.json && process.stderr.isTTY === true);
  const ac = new AbortController();
  const stop = (): void => ac.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    const tag = String(o.tag);
    const host = tag.split('/')[0]!;
    const creds = credentials(o.user);
    const output: BuildOutput = o.oci ? 'oci' : o.nydus ? 'nydus' : 'both';
    const storageRoot = o.storageRoot as string | undefined;
    const insecure = Boolean(o.plainHttp);
    const res = await buildImage({
      context: cmd.args[0]!,
      ...(o.file ? { dockerfile: String(o.file) } : {}),
      buildArgs: o.buildArg as Map<string, string>,
      ...(o.target ? { target: String(o.target) } : {}),
      ...(o.platform ? { platform: String(o.platform) } : {}),
      tag,
      push: Boolean(o.push),
      output,
      client: sideClient(host, insecure, creds, log),
      ...(creds ? { buildahCredentials: (h: string) => (h === host ? creds : undefined) } : {}),
      insecure,
      storage: {
        driver: String(o.storageDriver),
        ...(storageRoot ? { root: join(storageRoot, 'root'), runroot: join(storageRoot, 'run') } : {}),
      },
      cacheDir: String(o.cacheDir),
      ...(o.chunkDict ? { chunkDictRef: String(o.chunkDict) } : {}),
      log,
      signal: ac.signal,
      ...(progress.onProgress ? { onProgress: progress.onProgress } : {}),
    });
    progress.stop();
    if (o.json) process.stdout.write(`${JSON.stringify(res, null, 2)}\n`);
    else if (!o.quiet) process.stdout.write(summary(res));
    return 0;
  } catch (err) {
    progress.stop();
    process.stderr.write(`ferry build: ${(err as Error).message}\n`);
    return 1;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}
