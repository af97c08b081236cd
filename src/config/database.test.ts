import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRegistryConfig } from './registry.js';
import { pgSettingsOf } from './database.js';

const refused = (input: unknown, re: RegExp): void => {
  assert.throws(
    () => parseRegistryConfig(input),
    (err: unknown) => (err as { code?: string }).code === 'INVALID_ARGUMENT' && re.test((err as Error).message),
  );
};

test('registry database: sqlite path or postgres URL / block; the password never in the URL', () => {
  assert.equal(parseRegistryConfig({}).database, undefined, 'embedded default');
  assert.deepEqual(parseRegistryConfig({ database: { sqlite: '/var/lib/ferry/registry.db' } }).database, {
    sqlite: '/var/lib/ferry/registry.db',
  });
  const pg = parseRegistryConfig({
    database: { postgres: { url: 'postgres://ferry@db:5432/registry', password_env: 'DB_PW', max_connections: 8 } },
  });
  assert.ok(pg.database && 'postgres' in pg.database);
  assert.deepEqual(pgSettingsOf(pg.database.postgres), {
    url: 'postgres://ferry@db:5432/registry',
    passwordEnv: 'DB_PW',
    maxConnections: 8,
  });
  const short = parseRegistryConfig({ database: { postgres: 'postgres://ferry@db/registry' } });
  assert.deepEqual(short.database, { postgres: { url: 'postgres://ferry@db/registry' } });
  refused({ database: { postgres: 'postgres://ferry:hunter2@db/registry' } }, /carries a password/);
  refused({ database: { postgres: { url: 'postgres://db/r', password_file: '/x', password_env: 'X' } } }, /not both/);
  refused({ database: { sqlite: '/a', postgres: 'postgres://db/r' } }, /database/);
});

test('registry storage: filesystem or s3 with defaults; no credentials in the file', () => {
  const s = parseRegistryConfig({ storage: { s3: { bucket: 'blobs', endpoint: 'http://127.0.0.1:7480' } } }).storage;
  assert.ok(s && 's3' in s);
  assert.equal(s.s3.region, 'us-east-1');
  assert.equal(s.s3.path_style, true);
  assert.equal(s.s3.redirect, false);
  assert.equal(s.s3.redirect_expiry, 20 * 60_000);
  assert.deepEqual(parseRegistryConfig({ storage: { filesystem: { path: '/srv/blobs' } } }).storage, {
    filesystem: { path: '/srv/blobs' },
  });
  refused({ storage: { s3: { bucket: 'b', prefix: 'no-slash' } } }, /prefix/);
  refused({ storage: { s3: { bucket: 'b', secret_access_key: 'x' } } }, /secret_access_key/);
  refused({ storage: { s3: { bucket: 'b' }, filesystem: {} } }, /storage/);
});
