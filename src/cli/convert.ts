/**
 * @module cli/convert
 * `ferry convert --source REF --target REF …`: OCI image → Nydus image, registry to registry
 * (nydusify convert). Prints the result as JSON on stdout; progress bars on stderr when it is a TTY.
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import cliProgress from 'cli-progress';
import { DEFAULT_CONVERT_CHUNK_SIZE, DEFAULT_CONVERT_ZSTD_LEVEL } from '../config/accel.js';
import { checkCompressLevel } from '../format/compress/index.js';
import { FerryError, formatBytes, parseSize } from '../core/index.js';
import { createLogger, type Logger } from '../observe/index.js';
import {
  RegistryClient,
  parseReference,
  dockerConfigCredentials,
  currentPlatform,
  formatPlatform,
  type Credentials,
  type ImageReference,
} from '../remote/index.js';
import {
  buildOciRef,
  convertImage,
  loadSigningKey,
  convertImageToEstargz,
  type EstargzConvertOptions,
  SqliteLayerCache,
  RemoteLayerCache,
  TieredLayerCache,
  type ConvertOptions,
  type LayerCache,
  type ProgressEvent,
} from '../convert/index.js';
import { addSideCredentialOptions, sideCredentials } from './credentials.js';
import { parseArgs } from './lifecycle.js';
import { plainHttpFlag } from './plain-http.js';

/** `--backend-type localfs --backend-config '{"dir":"…"}'` as a backend option. */
export function localfsBackend(config: unknown): { type: 'localfs'; dir: string } {
  let bc: { dir?: unknown };
  try {
    bc = JSON.parse(String(config ?? '{}')) as { dir?: unknown };
  } catch {
    throw new FerryError('INVALID_ARGUMENT', '--backend-config is not valid JSON');
  }
  if (typeof bc.dir !== 'string') throw new FerryError('INVALID_ARGUMENT', '--backend-config for localfs needs {"dir": "…"}');
  return { type: 'localfs', dir: bc.dir };
}

/** A client for one side: its host is insecure when asked (or loopback), creds from the flag or docker config. */
export function sideClient(
  host: string,
  insecure: boolean,
  c: Credentials | undefined,
  log: ReturnType<typeof createLogger>,
): RegistryClient {
  return new RegistryClient({
    log,
    insecure: (h) => (h === host && insecure) || /^(localhost|127\.|\[::1\])/.test(h),
    credentials: (h) => (h === host && c ? c : dockerConfigCredentials(h)),
  });
}

export function progressReporter(enabled: boolean): { onProgress?: (ev: ProgressEvent) => void; stop(): void } {
  if (!enabled) return { stop: () => {} };
  const multi = new cliProgress.MultiBar(
    {
      format: '{name} |{bar}| {pct}% {done}/{size} {phase}',
      hideCursor: true,
      clearOnComplete: false,
      stream: process.stderr,
    },
    cliProgress.Presets.shades_classic,
  );
  const bars = new Map<string, cliProgress.SingleBar>();
  const onProgress = (ev: ProgressEvent): void => {
    const key = `${ev.platform ?? ''} ${ev.id}`;
    let bar = bars.get(key);
    const name = `${ev.platform ? `${ev.platform} ` : ''}${ev.id.replace(/^sha256:/, '').slice(0, 12)}`;
    if (!bar) {
      bar = multi.create(ev.total ?? 1, 0, { name, phase: ev.phase, pct: 0, done: '0 B', size: formatBytes(ev.total ?? 0) });
      bars.set(key, bar);
    }
    const total = ev.total ?? bar.getTotal();
    const v = ev.phase === 'cached' || ev.phase === 'done' ? total : (ev.bytes ?? bar.getProgress() * total);
    bar.setTotal(total || 1);
    bar.update(v, {
      phase: ev.phase === 'bytes' ? 'converting' : ev.phase,
      pct: total ? Math.floor((v / total) * 100) : 100,
      done: formatBytes(v),
      size: formatBytes(total),
    });
  };
  return { onProgress, stop: () => multi.stop() };
}

/** `--format estargz`: the options the eStargz converter reads (prefetch patterns are its prioritized files). */
function estargzOptions(opts: ConvertOptions, o: Record<string, string | boolean | undefined>): EstargzConvertOptions {
  const eo: EstargzConvertOptions = { source: opts.source, target: opts.target, log: opts.log ?? createLogger({ name: 'convert' }) };
  if (opts.sourceClient) eo.sourceClient = opts.sourceClient;
  if (opts.targetClient) eo.targetClient = opts.targetClient;
  if (opts.platforms) eo.platforms = opts.platforms;
  if (opts.workDir) eo.workDir = opts.workDir;
  if (opts.prefetchPatterns) eo.prioritizedFiles = opts.prefetchPatterns;
  if (o.estargzChunkSize !== undefined) eo.chunkSize = parseSize(String(o.estargzChunkSize));
  if (o.estargzCompressionLevel !== undefined) {
    const n = Number(o.estargzCompressionLevel);
    if (!(Number.isInteger(n) && n >= 0 && n <= 9)) throw new FerryError('INVALID_ARGUMENT', '--estargz-compression-level must be 0..9');
    eo.compressionLevel = n;
  }
  return eo;
}

export async function run(argv: string[]): Promise<number> {
  const cmd = new Command('ferry convert')
    .description('convert an OCI image to a Nydus (or eStargz) image, registry to registry')
    .requiredOption('--source <ref>', 'source image reference')
    .addOption(new Option('--format <name>', 'target format').choices(['nydus', 'estargz']).default('nydus'))
    .option('--estargz-chunk-size <size>', 'eStargz: largest file payload per gzip member (default 4MiB)')
    .option('--estargz-compression-level <n>', 'eStargz: gzip level 0–9 (default 9)')
    .option('--target <ref>', 'target image reference (needs a tag; not with --oci-ref)')
    .option(
      '--oci-ref',
      'no conversion: attach an OCI-ref (zran) index to the source image, which then runs lazily from its own gzip layers',
    )
    .option('--zran-spacing <size>', 'OCI-ref: uncompressed bytes between inflate checkpoints', '2MiB')
    .addOption(new Option('--fs-version <n>', 'RAFS version').choices(['5', '6']).default('6'))
    .addOption(new Option('--compressor <name>', 'chunk compressor').choices(['zstd', 'lz4_block', 'gzip', 'none']).default('zstd'))
    .option('--compression-level <n>', `chunk compression level (zstd 1–19, default ${DEFAULT_CONVERT_ZSTD_LEVEL}; gzip 1–9)`)
    .option('--chunk-size <size>', 'chunk size (power of two, 0x1000–0x1000000)', `0x${DEFAULT_CONVERT_CHUNK_SIZE.toString(16)}`)
    .addOption(new Option('--digester <name>', 'chunk digest').choices(['blake3', 'sha256']).default('blake3'))
    .option('--chunk-dict <ref>', 'Nydus image whose bootstrap is the chunk dictionary')
    .option('--chunk-table', 'keep the v6 chunk table in the bootstrap (upstream nydus-image check/merge need it; default: left out)')
    .option('--merge-platform', 'target index holds the source manifests and the Nydus ones')
    .option('--with-referrer', 'set the Nydus manifest subject to the source manifest')
    .option('--prefetch-patterns <file>', 'file of path patterns to prefetch, one per line ("-" = stdin)')
    .option('--platform <list>', 'os/arch[,os/arch…] of an index to convert (default: this machine)')
    .option('--all-platforms', 'convert every platform of an index')
    .addOption(new Option('--backend-type <type>', 'store blobs outside the registry').choices(['localfs']))
    .option('--backend-config <json>', 'backend config, e.g. {"dir":"/path"}')
    .option(
      '--cache <path>',
      'layer conversion cache (SQLite)',
      join(process.env.FERRY_CACHE_DIR || join(homedir(), '.cache', 'ferry'), 'convert-cache.db'),
    )
    .option('--no-cache', 'do not use the local layer conversion cache')
    .option(
      '--build-cache <ref>',
      'also keep the layer cache as an image in the target registry (acceld cache_tag / nydusify --build-cache)',
    )
    .option('--build-cache-version <v>', 'cache version; a cache image of another version is discarded', '')
    .option('--build-cache-max-records <n>', 'records kept in the cache image', '200')
    .option(
      '--sign-key <file>',
      'sign a conversion attestation (in-toto, DSSE) with this Ed25519/ECDSA P-256 key file (mode 0600; an encrypted key reads its passphrase from FERRY_SIGN_KEY_PASSPHRASE) and push it as a referrer of the Nydus manifest',
    )
    .option('--work-dir <dir>', 'parent of the temporary work directory')
    .option('--progress', 'force progress bars (default: when stderr is a terminal)')
    .option('--no-progress', 'no progress bars')
    .exitOverride();
  addSideCredentialOptions(cmd, '~/.docker/config.json');
  plainHttpFlag(cmd, 'source-plain-http', 'the source registry speaks plain HTTP', ['source-insecure']);
  plainHttpFlag(cmd, 'target-plain-http', 'the target registry speaks plain HTTP', ['target-insecure']);
  const parsed = parseArgs(cmd, argv);
  if (parsed !== undefined) return parsed;
  const o = cmd.opts<Record<string, string | boolean | undefined>>();
  const log = createLogger({ name: 'convert', level: process.env.FERRY_LOG_LEVEL ?? 'warn' });
  let cache: SqliteLayerCache | undefined;
  let progress: ReturnType<typeof progressReporter> | undefined;
  try {
    const src = parseReference(String(o.source));
    if (o.ociRef) return await ociRef(o, src, log);
    if (!o.target) throw new FerryError('INVALID_ARGUMENT', 'required option --target <ref> not specified');
    const dst = parseReference(String(o.target));
    const sourceCreds = sideCredentials(o, 'source');
    const targetCreds = sideCredentials(o, 'target');
    const sc = sideClient(src.registry, Boolean(o.sourcePlainHttp), sourceCreds, log);
    const tc =
      src.registry === dst.registry && !targetCreds && Boolean(o.sourcePlainHttp) === Boolean(o.targetPlainHttp)
        ? sc
        : sideClient(dst.registry, Boolean(o.targetPlainHttp), targetCreds, log);
    const opts: ConvertOptions = {
      source: src,
      target: dst,
      sourceClient: sc,
      targetClient: tc,
      log,
      fsVersion: o.fsVersion === '5' ? 5 : 6,
      compressor: o.compressor as ConvertOptions['compressor'] & string,
      chunkSize: parseSize(String(o.chunkSize)),
      digester: o.digester as 'blake3' | 'sha256',
    };
    if (o.compressionLevel !== undefined) {
      const n = Number(o.compressionLevel);
      checkCompressLevel(opts.compressor ?? 'zstd', n);
      opts.compressLevel = n;
    }
    if (o.chunkDict) opts.chunkDictRef = String(o.chunkDict);
    if (o.chunkTable) opts.chunkTable = true;
    if (o.mergePlatform) opts.mergePlatform = true;
    if (o.withReferrer) opts.withReferrer = true;
    if (o.workDir) opts.workDir = String(o.workDir);
    if (o.signKey) opts.signKey = loadSigningKey(String(o.signKey), process.env.FERRY_SIGN_KEY_PASSPHRASE || undefined);
    if (o.prefetchPatterns) {
      const text = readFileSync(o.prefetchPatterns === '-' ? 0 : String(o.prefetchPatterns), 'utf8');
      opts.prefetchPatterns = text
        .split('\n')
        .map((s) => s.trim())
        .filter(Boolean);
    }
    if (!o.allPlatforms)
      opts.platforms = o.platform
        ? String(o.platform)
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean)
        : [formatPlatform(currentPlatform())];
    if (o.format === 'estargz') {
      if (o.signKey) throw new FerryError('INVALID_ARGUMENT', '--sign-key signs Nydus conversions; it does not apply to --format estargz');
      const res = await convertImageToEstargz(estargzOptions(opts, o));
      process.stdout.write(`${JSON.stringify(res, null, 2)}\n`);
      return 0;
    }
    if (o.backendType) opts.backend = localfsBackend(o.backendConfig);
    const tiers: LayerCache[] = [];
    if (o.cache !== false && typeof o.cache === 'string') {
      cache = new SqliteLayerCache(o.cache);
      tiers.push(cache);
    }
    if (o.buildCache) {
      const ref = parseReference(String(o.buildCache));
      if (ref.registry !== dst.registry || ref.tag === undefined)
        throw new FerryError('INVALID_ARGUMENT', '--build-cache must be a tagged reference in the target registry');
      tiers.push(
        new RemoteLayerCache({
          client: tc,
          repo: ref,
          tag: ref.tag,
          version: String(o.buildCacheVersion ?? ''),
          maxRecords: Number(o.buildCacheMaxRecords ?? 200),
          log,
        }),
      );
    }
    if (tiers.length) opts.cache = tiers.length === 1 ? tiers[0]! : new TieredLayerCache(tiers);
    progress = progressReporter(o.progress === true || (o.progress !== false && process.stderr.isTTY === true));
    if (progress.onProgress) opts.onProgress = progress.onProgress;
    const res = await convertImage(opts);
    progress.stop();
    process.stdout.write(`${JSON.stringify(res, null, 2)}\n`);
    return 0;
  } catch (err) {
    progress?.stop();
    process.stderr.write(`ferry convert: ${(err as Error).message}\n`);
    return FerryError.hasCode(err, 'INVALID_ARGUMENT') ? 2 : 1;
  } finally {
    cache?.close();
  }
}

/** `--oci-ref`: the source image gets an OCI-ref index as a referrer (nothing converted, no data copied). */
async function ociRef(o: Record<string, string | boolean | undefined>, src: ImageReference, log: Logger): Promise<number> {
  if (o.target) throw new FerryError('INVALID_ARGUMENT', '--oci-ref attaches its index to --source: no --target');
  if (o.format !== 'nydus') throw new FerryError('INVALID_ARGUMENT', '--oci-ref builds a RAFS index of the gzip layers: not with --format');
  if (o.signKey) throw new FerryError('INVALID_ARGUMENT', '--sign-key signs Nydus conversions; an OCI-ref index is not one');
  const client = sideClient(src.registry, Boolean(o.sourcePlainHttp), sideCredentials(o, 'source'), log);
  const res = await buildOciRef({
    source: src,
    client,
    log,
    spacing: parseSize(String(o.zranSpacing)),
    chunkSize: parseSize(String(o.chunkSize)),
    digester: o.digester as 'blake3' | 'sha256',
    ...(o.workDir ? { workDir: String(o.workDir) } : {}),
  });
  process.stdout.write(`${JSON.stringify(res, null, 2)}\n`);
  return 0;
}
