/**
 * @module config/database
 * The configuration blocks shared by servers that can run on PostgreSQL and S3 (registry, accel):
 * `{sqlite: path}` | `{postgres: URL}` / `{postgres: {url, password_file | password_env,
 * max_connections}}` — the password never in the URL — and `{filesystem: {path}}` | `{s3: {…}}`.
 * S3 credentials come from the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or the
 * variables named by `access_key_env` / `secret_key_env`) or the SDK's usual files, never from the
 * config file.
 */
import { z } from 'zod';
import { durationSchema } from './parse.js';

function urlHasPassword(url: string): boolean {
  try {
    return new URL(url).password !== '';
  } catch {
    return false; // not a URL: the pool says so at start
  }
}

export const PostgresSchema = z
  .union([
    z.string(),
    z.strictObject({
      url: z.string(),
      /** A file holding the password (mode 0600). */
      password_file: z.string().optional(),
      /** An environment variable holding the password. */
      password_env: z.string().optional(),
      max_connections: z.number().int().min(1).max(100).optional(),
    }),
  ])
  .transform((v) => (typeof v === 'string' ? { url: v } : v))
  .refine((v) => !(v.password_file && v.password_env), { message: 'give password_file or password_env, not both' })
  .refine((v) => !urlHasPassword(v.url), {
    message: 'the URL carries a password: put it in a file (password_file) or an environment variable (password_env)',
  });
export type PostgresConfig = z.output<typeof PostgresSchema>;

/** Where a server's metadata lives. */
export const DatabaseSchema = z.union([z.strictObject({ sqlite: z.string().min(1) }), z.strictObject({ postgres: PostgresSchema })]);
export type DatabaseConfig = z.output<typeof DatabaseSchema>;

/** The pool settings (db/PgSettings) of a `postgres` block. */
export function pgSettingsOf(c: PostgresConfig): {
  url: string;
  passwordFile?: string;
  passwordEnv?: string;
  maxConnections?: number;
} {
  return {
    url: c.url,
    ...(c.password_file ? { passwordFile: c.password_file } : {}),
    ...(c.password_env ? { passwordEnv: c.password_env } : {}),
    ...(c.max_connections ? { maxConnections: c.max_connections } : {}),
  };
}

export const S3Schema = z.strictObject({
  bucket: z.string().min(1),
  /** `http://host:port` of an S3-compatible store (radosgw, MinIO); absent = AWS. */
  endpoint: z.string().url().optional(),
  region: z.string().default('us-east-1'),
  /** Key prefix inside the bucket ('' or ending in '/'). */
  prefix: z
    .string()
    .default('')
    .refine((p) => p === '' || p.endsWith('/'), { message: 'must be empty or end with /' }),
  /** Path-style addressing (`endpoint/bucket/key`), what radosgw and MinIO need. */
  path_style: z.boolean().default(true),
  /** Environment variables holding the access key id and secret (default AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY). */
  access_key_env: z.string().optional(),
  secret_key_env: z.string().optional(),
  /** Blob GETs answer 307 to a presigned URL (distribution's `redirect`): replicas move no blob bytes. */
  redirect: z.boolean().default(false),
  /** How long a presigned URL stays valid. */
  redirect_expiry: durationSchema.default(20 * 60_000),
  /** Largest object one upload request writes at a time (≥ 5 MiB). */
  chunk_size: z
    .number()
    .int()
    .min(5 * 1024 * 1024)
    .optional(),
});
export type S3Config = z.output<typeof S3Schema>;

/** Where a server's blobs live. */
export const StorageSchema = z.union([
  z.strictObject({ filesystem: z.strictObject({ path: z.string().min(1).optional() }) }),
  z.strictObject({ s3: S3Schema }),
]);
export type StorageConfig = z.output<typeof StorageSchema>;
