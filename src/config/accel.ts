/**
 * @module config/accel
 * acceld's `config.yaml`, read as it is: the v0.1.1 layout (`provider.containerd`,
 * `converter.harbor_annotation`) and the current one (`provider.work_dir`, `gcpolicy`, `cache_size`,
 * `converter.platforms`, `driver.config.*`, `rules[].cache_tag`). Unknown keys are an error naming the
 * key (acceld silently ignores typos); keys Ferry has no use for are accepted and reported by
 * `ignoredKeys()` so the service can log them. Ferry-only extensions: `converter.retry_limit`,
 * `converter.retry_backoff`, `converter.task_retention`, `converter.task_lease`, `converter.poll_interval`,
 * `converter.attestation` (signed conversion attestations, convert-accel.md), and `database` (where
 * the task queue lives: `{sqlite: path}`, the default `<work_dir>/accel.db`, or
 * `{postgres: URL}` / `{postgres: {url, password_file | password_env, max_connections}}` for many
 * workers; the password never in the URL).
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { FerryError, parseDuration, parseSize } from '../core/index.js';
import { DatabaseSchema } from './database.js';
import { parseConfig } from './parse.js';

/** acceld's driver config map holds strings; YAML may give numbers/booleans: normalise to strings. */
const str = z.union([z.string(), z.number(), z.boolean()]).transform((v) => String(v));
const boolStr = z.union([z.string(), z.boolean()]).transform((v, ctx) => {
  if (typeof v === 'boolean') return v;
  const s = v.trim().toLowerCase();
  if (['1', 't', 'true'].includes(s)) return true;
  if (['0', 'f', 'false', ''].includes(s)) return false;
  ctx.addIssue({ code: 'custom', message: `invalid boolean ${JSON.stringify(v)}` });
  return z.NEVER;
});

const NydusDriverConfig = z.strictObject({
  work_dir: str.optional(),
  builder: str.optional(),
  fs_version: str.optional(),
  rafs_version: str.optional(),
  compressor: str.optional(),
  rafs_compressor: str.optional(),
  chunk_dict_ref: str.optional(),
  merge_manifest: boolStr.optional(),
  oci_ref: boolStr.optional(),
  with_referrer: boolStr.optional(),
  docker2oci: boolStr.optional(),
  fs_align_chunk: boolStr.optional(),
  fs_chunk_size: str.optional(),
  batch_size: str.optional(),
  prefetch_patterns: str.optional(),
  backend_type: str.optional(),
  backend_config: str.optional(),
  backend_force_push: boolStr.optional(),
  encrypt_recipients: str.optional(),
  /** Ferry extension: chunk digest algorithm (nydus-image's --digester). */
  digester: str.optional(),
  /** Ferry extension: keep the v6 chunk table in image bootstraps (for upstream nydus-image check/merge). */
  chunk_table: boolStr.optional(),
  /** Ferry extension, estargz driver: largest file payload per gzip member (default 4 MiB, ctr-remote's --estargz-chunk-size). */
  estargz_chunk_size: str.optional(),
  /** Ferry extension, estargz driver: gzip level 0..9 (default 9, ctr-remote's --estargz-compression-level). */
  estargz_compression_level: str.optional(),
  /** Ferry extension: convert against the project's automatic chunk dictionary (accel/chunk-dict.ts); default false. */
  chunk_dict_auto: boolStr.optional(),
  /** Ferry extension: how many of the project's latest converted images make up that dictionary (default 4, 1..32). */
  chunk_dict_images: str.optional(),
});

/** The drivers Ferry converts with (acceld's `converter.driver.type`). */
export const ACCEL_DRIVERS = ['nydus', 'estargz'] as const;
export type AccelDriverType = (typeof ACCEL_DRIVERS)[number];
/** Tag suffix of a driver's conversions when no `rules[].tag_suffix` is configured. */
export const DEFAULT_TAG_SUFFIX: Record<AccelDriverType, string> = { nydus: '-nydus', estargz: '-estargz' };
/** Driver config keys only the nydus driver reads (accepted, logged as ignored with estargz). */
const NYDUS_ONLY_KEYS = [
  'builder',
  'fs_version',
  'rafs_version',
  'compressor',
  'rafs_compressor',
  'chunk_dict_ref',
  'merge_manifest',
  'oci_ref',
  'with_referrer',
  'fs_align_chunk',
  'fs_chunk_size',
  'batch_size',
  'backend_type',
  'backend_config',
  'backend_force_push',
  'encrypt_recipients',
  'digester',
  'chunk_table',
] as const;

const SourceSchema = z.strictObject({
  /** base64 `user:password` (e.g. a Harbor robot). Empty → ~/.docker/config.json. */
  auth: z.string().optional(),
  /** acceld: skip TLS verification. Ferry: talk plain HTTP (or unverified HTTPS) to this host. */
  insecure: z.boolean().optional(),
  webhook: z.strictObject({ auth_header: z.string().optional() }).optional(),
});

const duration = (def: number) =>
  z
    .union([z.string(), z.number()])
    .transform((v) => parseDuration(v))
    .default(def);

/** Where the task queue lives (the block shared with the registry: config/database.ts). */
export const AccelDatabaseSchema = DatabaseSchema;
export type AccelDatabase = z.output<typeof AccelDatabaseSchema>;

export const AccelConfigSchema = z.strictObject({
  /** Ferry extension: the task queue's database (default: SQLite in provider.work_dir). */
  database: AccelDatabaseSchema.optional(),
  server: z
    .strictObject({
      name: z.string().default('API'),
      host: z.string().default('0.0.0.0'),
      port: z
        .union([z.string(), z.number()])
        .transform((v) => Number(v))
        .pipe(z.number().int().min(0).max(65535))
        .default(2077),
      uds: z.string().optional(),
    })
    .prefault({}),
  metric: z.strictObject({ enabled: z.boolean().default(true) }).prefault({}),
  provider: z
    .strictObject({
      source: z
        .record(
          z.string(),
          SourceSchema.nullable().transform((v) => v ?? {}),
        )
        .default({}),
      work_dir: z.string().optional(),
      gcpolicy: z.strictObject({ threshold: z.union([z.string(), z.number()]).optional() }).optional(),
      cache_size: z.number().int().min(0).optional(),
      cache_version: z.string().optional(),
      /** v0.1.1 only: Ferry needs no containerd to convert. */
      containerd: z.strictObject({ address: z.string().optional(), snapshotter: z.string().optional() }).optional(),
    })
    .prefault({}),
  converter: z
    .strictObject({
      worker: z.number().int().min(1).max(64).default(5),
      /** v0.1.1: add io.goharbor.artifact.v1alpha1.acceleration.* annotations (Ferry honours it). */
      harbor_annotation: z.boolean().default(false),
      /** "linux/amd64,linux/arm64"; empty = all platforms. */
      platforms: z.string().default(''),
      driver: z
        .strictObject({
          type: z.string().default('nydus'),
          config: NydusDriverConfig.nullable()
            .transform((v) => v ?? {})
            .default({}),
        })
        .prefault({}),
      rules: z.array(z.strictObject({ tag_suffix: z.string().optional(), cache_tag: z.string().optional() })).default([]),
      /** Ferry extension: attempts before a task is FAILED for good. */
      retry_limit: z.number().int().min(1).max(100).default(3),
      /** Ferry extension: first retry delay (doubles per attempt). */
      retry_backoff: z
        .union([z.string(), z.number()])
        .transform((v) => parseDuration(v))
        .default(5000),
      /** Ferry extension: finished tasks older than this are removed from the list (acceld: 24 h). */
      task_retention: z
        .union([z.string(), z.number()])
        .transform((v) => parseDuration(v))
        .default(7 * 24 * 3_600_000),
      /** Ferry extension: how long a worker holds a task without a heartbeat (renewed every third of it). */
      task_lease: duration(30_000).pipe(z.number().min(1000)),
      /** Ferry extension: how often a worker looks for tasks other processes queued (PostgreSQL). */
      poll_interval: duration(1000).pipe(z.number().min(10)),
      /**
       * Ferry extension: sign an in-toto attestation of each conversion (DSSE; Ed25519 or ECDSA P-256
       * key file, mode 0600; an encrypted PKCS#8 key's passphrase from the environment variable named by
       * passphrase_env) and push it as a referrer of the Nydus manifest. Off when absent.
       */
      attestation: z.strictObject({ sign_key_file: z.string().min(1), passphrase_env: z.string().min(1).optional() }).optional(),
    })
    .prefault({}),
});

export type AccelConfig = z.output<typeof AccelConfigSchema>;
export type AccelConfigInput = z.input<typeof AccelConfigSchema>;

/** Resolved conversion options derived from the driver config. */
export interface AccelDriverOptions {
  /** `converter.driver.type` */
  format: AccelDriverType;
  /** estargz: largest payload per gzip member, and the gzip level */
  estargzChunkSize?: number;
  estargzCompressionLevel?: number;
  fsVersion: 5 | 6;
  compressor: 'none' | 'lz4_block' | 'gzip' | 'zstd';
  chunkSize: number;
  digester: 'sha256' | 'blake3';
  chunkDictRef?: string;
  /**
   * the project's automatic chunk dictionary: its size in images (0 = off, the default);
   * `chunkDictRef` overrides it
   */
  chunkDictImages: number;
  /** keep the v6 chunk table in image bootstraps (default: left out when blobs carry their tables) */
  chunkTable: boolean;
  mergeManifest: boolean;
  withReferrer: boolean;
  /** `oci_ref`: no conversion; an OCI-ref (zran) index is attached to the source image (convert/oci-ref) */
  ociRef: boolean;
  docker2oci: boolean;
  prefetchPatterns?: string[];
  backend?: { type: 'localfs'; dir: string };
  tagSuffix: string;
  cacheTag?: string;
  workDir?: string;
  platforms: string[];
  harborAnnotation: boolean;
}

/** Images in the automatic chunk dictionary unless told. */
export const DEFAULT_CHUNK_DICT_IMAGES = 4;

function chunkDictImages(auto: boolean, n: string | undefined): number {
  const v = n === undefined ? DEFAULT_CHUNK_DICT_IMAGES : Number(n);
  if (!Number.isInteger(v) || v < 1 || v > 32)
    throw new FerryError(
      'INVALID_ARGUMENT',
      `accel config: converter.driver.config.chunk_dict_images: must be an integer in 1..32, got ${n}`,
    );
  return auto ? v : 0;
}

/** Validates a config object; throws INVALID_ARGUMENT naming every problem (unknown keys by full path). */
export function parseAccelConfig(input: unknown): AccelConfig {
  const cfg = parseConfig(AccelConfigSchema, input, 'accel');
  if (!(ACCEL_DRIVERS as readonly string[]).includes(cfg.converter.driver.type)) {
    throw new FerryError(
      'NOT_IMPLEMENTED',
      `accel config: converter.driver.type: unsupported driver ${JSON.stringify(cfg.converter.driver.type)} (Ferry converts with ${ACCEL_DRIVERS.join(' or ')})`,
    );
  }
  if (cfg.provider.gcpolicy?.threshold !== undefined) parseSize(String(cfg.provider.gcpolicy.threshold).replace(/B$/i, 'B'));
  resolveDriverOptions(cfg); // validates the driver values
  return cfg;
}

/** Reads and validates a YAML (or JSON) config file. */
export function loadAccelConfig(path: string): AccelConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new FerryError('NOT_FOUND', `accel config ${path}: ${(err as Error).message}`, { cause: err });
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new FerryError('INVALID_ARGUMENT', `accel config ${path}: not valid YAML: ${(err as Error).message}`, { cause: err });
  }
  return parseAccelConfig(doc);
}

/** Keys present in the config that Ferry accepts but does not use, with the reason. */
export function ignoredKeys(cfg: AccelConfig): Array<{ key: string; reason: string }> {
  const out: Array<{ key: string; reason: string }> = [];
  const d = cfg.converter.driver.config;
  if (cfg.converter.driver.type === 'estargz') {
    for (const k of NYDUS_ONLY_KEYS)
      if (d[k] !== undefined)
        out.push({ key: `converter.driver.config.${k}`, reason: 'a nydus driver key; the estargz driver does not read it' });
    if (d.docker2oci !== undefined)
      out.push({ key: 'converter.driver.config.docker2oci', reason: 'eStargz manifests are always written as OCI' });
    return out;
  }
  for (const k of ['estargz_chunk_size', 'estargz_compression_level'] as const)
    if (d[k] !== undefined)
      out.push({ key: `converter.driver.config.${k}`, reason: 'an estargz driver key; the nydus driver does not read it' });
  if (cfg.provider.containerd) out.push({ key: 'provider.containerd', reason: 'Ferry converts without containerd (v0.1.1 key)' });
  if (cfg.provider.gcpolicy)
    out.push({ key: 'provider.gcpolicy', reason: 'Ferry keeps no local content store; work files are removed after each task' });
  if (cfg.provider.cache_size !== undefined && !cfg.converter.rules.some((r) => r.cache_tag))
    out.push({ key: 'provider.cache_size', reason: 'no rules[].cache_tag set' });
  if (d.builder !== undefined) out.push({ key: 'converter.driver.config.builder', reason: 'Ferry builds RAFS itself (no nydus-image)' });
  if (d.fs_align_chunk !== undefined)
    out.push({ key: 'converter.driver.config.fs_align_chunk', reason: 'v6 chunks are always 4 KiB aligned' });
  if (d.batch_size !== undefined) out.push({ key: 'converter.driver.config.batch_size', reason: 'chunk batching is not implemented' });
  if (d.backend_force_push !== undefined)
    out.push({ key: 'converter.driver.config.backend_force_push', reason: 'blobs are always written to the localfs backend' });
  if (d.encrypt_recipients !== undefined)
    out.push({ key: 'converter.driver.config.encrypt_recipients', reason: 'bootstrap encryption is not implemented' });
  if (d.docker2oci !== undefined)
    out.push({ key: 'converter.driver.config.docker2oci', reason: 'Nydus manifests are always written as OCI' });
  if (d.fs_version === undefined && d.rafs_version === undefined)
    out.push({ key: 'converter.driver.config.fs_version', reason: 'unset: Ferry defaults to 6 (acceld v0.1.1 defaulted to 5)' });
  return out;
}

/**
 * Chunk size of Ferry's conversions (`ferry convert`, `ferry accel`) when none is given: 32 KiB,
 * where nydus-image and nydusify default to 1 MiB (as `ferry rafs create` does). Lazy loading
 * fetches whole chunks, and a starting program touches scattered pages: measured on a cold
 * `python3 -c print` at 100 Mbit, 32 KiB chunks fetched 2.4 MiB (5.0 % of the OCI image) vs
 * 4.2 MiB (7.5 %) and started in 1.07 s vs 1.19 s; the bootstrap grows ~18 % and the blob ~3 %.
 */
export const DEFAULT_CONVERT_CHUNK_SIZE = 0x8000;

/**
 * zstd level of Ferry's conversions when none is given: 6, where nydus-image uses zstd's default 3
 * (as `ferry rafs create` does). Decompression costs the same at any level; measured on the chunks a
 * cold `python3 -c print` reads (32 KiB chunks): 2.50 MB at level 3, 2.36 MB at 6 (−5.4 %), 2.35 MB
 * at 9, 2.21 MB at 19; conversion of the 175 MB tree took 2.4 s, 2.5 s, 4.1 s and 28.7 s.
 */
export const DEFAULT_CONVERT_ZSTD_LEVEL = 6;

/** The conversion options a config asks for (acceld's string map → typed values). */
export function resolveDriverOptions(cfg: AccelConfig): AccelDriverOptions {
  const d = cfg.converter.driver.config;
  const fv = d.fs_version ?? d.rafs_version ?? '6';
  if (fv !== '5' && fv !== '6')
    throw new FerryError('INVALID_ARGUMENT', `accel config: converter.driver.config.fs_version: must be 5 or 6, got ${JSON.stringify(fv)}`);
  const comp = d.compressor ?? d.rafs_compressor ?? 'zstd';
  if (!['none', 'lz4_block', 'gzip', 'zstd'].includes(comp)) {
    throw new FerryError(
      'INVALID_ARGUMENT',
      `accel config: converter.driver.config.compressor: must be none|lz4_block|gzip|zstd, got ${JSON.stringify(comp)}`,
    );
  }
  const chunkSize = d.fs_chunk_size ? parseSize(d.fs_chunk_size) : DEFAULT_CONVERT_CHUNK_SIZE;
  if (!(chunkSize >= 0x1000 && chunkSize <= 0x1000000 && (chunkSize & (chunkSize - 1)) === 0)) {
    throw new FerryError(
      'INVALID_ARGUMENT',
      `accel config: converter.driver.config.fs_chunk_size: must be a power of two in 0x1000..0x1000000, got ${d.fs_chunk_size}`,
    );
  }
  const digester = d.digester ?? 'blake3';
  if (digester !== 'blake3' && digester !== 'sha256')
    throw new FerryError('INVALID_ARGUMENT', `accel config: converter.driver.config.digester: must be blake3|sha256`);
  const format = cfg.converter.driver.type as AccelDriverType;
  const out: AccelDriverOptions = {
    format,
    fsVersion: fv === '5' ? 5 : 6,
    compressor: comp as AccelDriverOptions['compressor'],
    chunkSize,
    digester,
    chunkTable: d.chunk_table ?? false,
    chunkDictImages: chunkDictImages(d.chunk_dict_auto ?? false, d.chunk_dict_images),
    mergeManifest: d.merge_manifest ?? false,
    withReferrer: d.with_referrer ?? false,
    ociRef: d.oci_ref ?? false,
    docker2oci: d.docker2oci ?? false,
    tagSuffix: cfg.converter.rules.find((r) => r.tag_suffix)?.tag_suffix ?? DEFAULT_TAG_SUFFIX[format],
    platforms: cfg.converter.platforms
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
    harborAnnotation: cfg.converter.harbor_annotation,
  };
  if (d.estargz_chunk_size !== undefined) {
    const n = parseSize(d.estargz_chunk_size);
    if (!(n >= 512 && n <= 1 << 30))
      throw new FerryError(
        'INVALID_ARGUMENT',
        `accel config: converter.driver.config.estargz_chunk_size: must be 512 B..1 GiB, got ${d.estargz_chunk_size}`,
      );
    out.estargzChunkSize = n;
  }
  if (d.estargz_compression_level !== undefined) {
    const n = Number(d.estargz_compression_level);
    if (!(Number.isInteger(n) && n >= 0 && n <= 9))
      throw new FerryError(
        'INVALID_ARGUMENT',
        `accel config: converter.driver.config.estargz_compression_level: must be 0..9, got ${d.estargz_compression_level}`,
      );
    out.estargzCompressionLevel = n;
  }
  const cacheTag = cfg.converter.rules.find((r) => r.cache_tag)?.cache_tag;
  if (cacheTag) out.cacheTag = cacheTag;
  if (d.chunk_dict_ref) out.chunkDictRef = d.chunk_dict_ref;
  if (d.work_dir) out.workDir = d.work_dir;
  if (d.prefetch_patterns)
    out.prefetchPatterns = d.prefetch_patterns
      .split('\n')
      .map((s) => s.trim())
      .filter(Boolean);
  if (d.backend_type) {
    if (d.backend_type !== 'localfs') {
      throw new FerryError(
        'NOT_IMPLEMENTED',
        `accel config: converter.driver.config.backend_type: ${JSON.stringify(d.backend_type)} is not supported (localfs only)`,
      );
    }
    let bc: { dir?: unknown };
    try {
      bc = JSON.parse(d.backend_config ?? '{}') as { dir?: unknown };
    } catch {
      throw new FerryError('INVALID_ARGUMENT', 'accel config: converter.driver.config.backend_config: not valid JSON');
    }
    if (typeof bc.dir !== 'string' || !bc.dir)
      throw new FerryError('INVALID_ARGUMENT', 'accel config: converter.driver.config.backend_config: localfs needs {"dir": "…"}');
    out.backend = { type: 'localfs', dir: bc.dir };
  }
  return out;
}
