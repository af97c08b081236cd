import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'yaml';
import { readFileSync } from 'node:fs';
import { fixture } from '../../test/support/paths.js';
import { loadAccelConfig, parseAccelConfig, ignoredKeys, resolveDriverOptions } from './accel.js';

test('accel config: the v0.1.1 example file loads as it is', () => {
  const cfg = loadAccelConfig(fixture('acceld', 'config.yaml.nydus'));
  assert.equal(cfg.server.port, 2077);
  assert.equal(cfg.converter.worker, 5);
  assert.equal(cfg.provider.source['registry.anolis.com']?.webhook?.auth_header, 'header');
  const opts = resolveDriverOptions(cfg);
  assert.equal(opts.tagSuffix, '-nydus');
  assert.equal(opts.fsVersion, 6);
  const ignored = ignoredKeys(cfg).map((k) => k.key);
  assert.ok(ignored.includes('provider.containerd'));
  assert.ok(ignored.includes('converter.driver.config.builder'));
});

test('accel config: the HEAD layout with driver options and rules', () => {
  const cfg = parseAccelConfig(
    parse(`
server: {name: API, host: 127.0.0.1, port: "2078"}
metric: {enabled: true}
provider:
  source:
    harbor.local:5000: {auth: YWRtaW46eA==, insecure: true, webhook: {auth_header: s3cret}}
  work_dir: /tmp/accel
  gcpolicy: {threshold: 1000MB}
  cache_size: 200
  cache_version: v1
converter:
  worker: 2
  harbor_annotation: true
  platforms: linux/amd64,linux/arm64
  driver:
    type: nydus
    config:
      builder: nydus-image
      fs_version: 5
      compressor: lz4_block
      merge_manifest: "true"
      with_referrer: true
      fs_chunk_size: "0x200000"
      prefetch_patterns: "/bin\\n/etc"
      backend_type: localfs
      backend_config: '{"dir":"/tmp/blobs"}'
      chunk_table: "true"
  rules:
    - tag_suffix: -accel
    - cache_tag: nydus-cache
`),
  );
  const o = resolveDriverOptions(cfg);
  assert.equal(cfg.server.port, 2078);
  assert.deepEqual(
    [o.fsVersion, o.compressor, o.chunkSize, o.mergeManifest, o.withReferrer, o.tagSuffix, o.cacheTag],
    [5, 'lz4_block', 0x200000, true, true, '-accel', 'nydus-cache'],
  );
  assert.deepEqual(o.platforms, ['linux/amd64', 'linux/arm64']);
  assert.deepEqual(o.backend, { type: 'localfs', dir: '/tmp/blobs' });
  assert.equal(o.chunkTable, true);
  assert.equal(
    resolveDriverOptions(loadAccelConfig(fixture('acceld', 'config.yaml.nydus'))).chunkTable,
    false,
    'no chunk table by default',
  );
});

test('accel config: the automatic chunk dictionary is off unless asked for; its size is bounded', () => {
  const base = loadAccelConfig(fixture('acceld', 'config.yaml.nydus'));
  assert.equal(resolveDriverOptions(base).chunkDictImages, 0, 'off by default');
  const withDriver = (extra: Record<string, unknown>) => {
    const raw = parse(readFileSync(fixture('acceld', 'config.yaml.nydus'), 'utf8')) as {
      converter: { driver: { config: Record<string, unknown> } };
    };
    Object.assign(raw.converter.driver.config, extra);
    return resolveDriverOptions(parseAccelConfig(raw));
  };
  assert.equal(withDriver({ chunk_dict_auto: true }).chunkDictImages, 4);
  assert.equal(withDriver({ chunk_dict_auto: 'true', chunk_dict_images: '8' }).chunkDictImages, 8);
  assert.equal(withDriver({ chunk_dict_auto: false, chunk_dict_images: 8 }).chunkDictImages, 0);
  assert.throws(() => withDriver({ chunk_dict_auto: true, chunk_dict_images: 100 }), /chunk_dict_images: must be an integer in 1\.\.32/);
});

test('accel config: unknown keys are errors naming the key; bad values are explained', () => {
  assert.throws(() => parseAccelConfig({ converter: { wokrer: 3 } }), /unknown key converter\.wokrer/);
  assert.throws(
    () => parseAccelConfig({ converter: { driver: { config: { compresor: 'zstd' } } } }),
    /converter\.driver\.config\.compresor/,
  );
  assert.throws(
    () => parseAccelConfig({ converter: { driver: { type: 'soci' } } }),
    /unsupported driver "soci" \(Ferry converts with nydus or estargz\)/,
  );
  assert.throws(() => parseAccelConfig({ converter: { driver: { config: { fs_version: '7' } } } }), /fs_version/);
  assert.throws(() => parseAccelConfig({ converter: { worker: 0 } }), /converter\.worker/);
  const raw = readFileSync(fixture('acceld', 'config.yaml.nydus'), 'utf8');
  assert.ok(raw.includes('harbor_annotation'));
});

test('accel config: database — SQLite by default, PostgreSQL by URL or with a password file/variable; a password in the URL is refused', () => {
  assert.equal(parseAccelConfig({}).database, undefined);
  assert.deepEqual(parseAccelConfig({ database: { sqlite: '/var/lib/ferry/accel.db' } }).database, { sqlite: '/var/lib/ferry/accel.db' });
  assert.deepEqual(parseAccelConfig(parse('database: {postgres: "postgres://ferry@db:5432/ferry"}')).database, {
    postgres: { url: 'postgres://ferry@db:5432/ferry' },
  });
  const full = parseAccelConfig(
    parse(`
database:
  postgres:
    url: postgres://ferry@db:5432/ferry
    password_file: /run/secrets/accel-db
    max_connections: 4
converter: {task_lease: 45s, poll_interval: 250ms}
`),
  );
  assert.deepEqual(full.database, {
    postgres: { url: 'postgres://ferry@db:5432/ferry', password_file: '/run/secrets/accel-db', max_connections: 4 },
  });
  assert.deepEqual([full.converter.task_lease, full.converter.poll_interval], [45_000, 250]);
  assert.deepEqual([parseAccelConfig({}).converter.task_lease, parseAccelConfig({}).converter.poll_interval], [30_000, 1000]);
  const refused = (input: unknown, re: RegExp): void => {
    assert.throws(
      () => parseAccelConfig(input),
      (e: unknown) => {
        assert.match((e as Error).message, re);
        assert.doesNotMatch((e as Error).message, /hunter2/, 'the password is not repeated');
        return true;
      },
    );
  };
  refused(
    { database: { postgres: 'postgres://ferry:hunter2@db/ferry' } },
    /database\.postgres.*carries a password.*password_file.*password_env/,
  );
  refused({ database: { postgres: { url: 'postgres://db/f', password_file: '/x', password_env: 'X' } } }, /not both/);
  refused({ database: { sqlite: '/a', postgres: 'postgres://db/f' } }, /database/);
  refused({ database: { mysql: 'x' } }, /database/);
  refused({ converter: { task_lease: '10ms' } }, /converter\.task_lease/);
});

test('accel config: the estargz driver — its own defaults and keys; nydus keys are accepted and reported as ignored', () => {
  const cfg = parseAccelConfig({
    converter: { driver: { type: 'estargz', config: { estargz_chunk_size: '1MiB', estargz_compression_level: 6, compressor: 'zstd' } } },
  });
  const d = resolveDriverOptions(cfg);
  assert.equal(d.format, 'estargz');
  assert.equal(d.tagSuffix, '-estargz');
  assert.equal(d.estargzChunkSize, 1 << 20);
  assert.equal(d.estargzCompressionLevel, 6);
  assert.deepEqual(
    ignoredKeys(cfg).map((k) => k.key),
    ['converter.driver.config.compressor'],
  );
  const esgz = parseAccelConfig({ converter: { driver: { type: 'estargz' }, rules: [{ tag_suffix: '-esgz' }] } });
  assert.equal(resolveDriverOptions(esgz).tagSuffix, '-esgz');
  assert.equal(resolveDriverOptions(parseAccelConfig({})).tagSuffix, '-nydus');
  assert.throws(
    () => parseAccelConfig({ converter: { driver: { type: 'estargz', config: { estargz_compression_level: 11 } } } }),
    /estargz_compression_level: must be 0\.\.9/,
  );
});
