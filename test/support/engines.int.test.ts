/**
 * The engine helpers start REAL servers privately on 127.0.0.1 and leave nothing behind:
 * PostgreSQL (startPostgres) driven through `pg`, and Ceph radosgw (startRadosgw) driven through
 * `@aws-sdk/client-s3`. Each test stops its engines and then checks that no process of that instance
 * is alive and its temp dir is gone. Timings and memory are printed as diagnostics.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import pg from 'pg';
import {
  S3Client,
  PutObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  DeleteObjectCommand,
  CreateMultipartUploadCommand,
  UploadPartCommand,
  CompleteMultipartUploadCommand,
  DeleteBucketCommand,
  CreateBucketCommand,
  ListBucketsCommand,
  S3ServiceException,
  type UploadPartCommandOutput,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { startPostgres, type PostgresInstance } from './postgres.js';
import { startRadosgw, s3ClientConfig, type RadosgwInstance } from './ceph.js';
import { MissingPrerequisiteError, isAlive, processesMentioning, type ProcRef } from './daemons.js';

// @aws-sdk/client-s3 is pinned to a release that supports Node 20 (see docs/development.md); it
// still prints a multi-line notice that later releases will need Node 22. Known, so not repeated here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

const TEST_TIMEOUT = 180_000;

function rssMiB(procs: ProcRef[]): number {
  let kb = 0;
  for (const p of procs) {
    try {
      kb += Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${p.pid}/status`, 'utf8'))?.[1] ?? 0);
    } catch {
      /* exited */
    }
  }
  return Math.round(kb / 1024);
}

/** After stop(): every process seen before is gone, nothing mentions the dir, the dir is removed. */
function assertGone(what: string, before: ProcRef[], dir: string): void {
  const alive = before.filter(isAlive);
  assert.deepEqual(
    alive.map((p) => `${p.pid} ${p.name}`),
    [],
    `${what}: processes still alive after stop()`,
  );
  assert.deepEqual(
    processesMentioning(dir).map((p) => `${p.pid} ${p.name}`),
    [],
    `${what}: processes still mention ${dir}`,
  );
  assert.equal(existsSync(dir), false, `${what}: ${dir} still exists after stop()`);
}

function pgClient(db: PostgresInstance, password = db.password): pg.Client {
  return new pg.Client({
    host: db.host,
    port: db.port,
    database: db.database,
    user: db.user,
    password,
    connectionTimeoutMillis: 10_000,
    statement_timeout: 10_000,
    query_timeout: 15_000,
  });
}

function s3Client(s3: RadosgwInstance): S3Client {
  return new S3Client({
    ...s3ClientConfig(s3),
    maxAttempts: 1,
    requestHandler: { connectionTimeout: 5000, requestTimeout: 30_000 },
  });
}

function md5(b: Buffer): string {
  return createHash('md5').update(b).digest('hex');
}

test('startPostgres: a private server with a password user; SKIP LOCKED hands two workers different rows; stop leaves nothing', {
  timeout: TEST_TIMEOUT,
}, async (t) => {
  const db = await startPostgres();
  let procs: ProcRef[] = [];
  try {
    procs = db.processes();
    t.diagnostic(
      `postgres ${db.version} started in ${db.startMs} ms (${JSON.stringify(db.phases)}) on 127.0.0.1:${db.port}; ${procs.length} processes, RSS ${rssMiB(procs)} MiB`,
    );
    assert.ok(procs.length >= 2, 'postmaster and its children are listed');
    assert.match(db.url, /^postgres:\/\/ferry:[0-9a-f]+@127\.0\.0\.1:\d+\/ferry_test$/);

    // password authentication is real: a wrong password is refused (28P01 invalid_password)
    const bad = pgClient(db, 'not-the-password');
    await assert.rejects(bad.connect(), (err: unknown) => err instanceof pg.DatabaseError && err.code === '28P01');
    await bad.end().catch(() => undefined);

    const a = pgClient(db);
    const b = new pg.Client({ connectionString: db.url, connectionTimeoutMillis: 10_000, statement_timeout: 10_000 });
    await a.connect();
    await b.connect();
    try {
      const who = await a.query<{ addr: string; superuser: boolean; db: string }>(
        'SELECT host(inet_server_addr()) AS addr, rolsuper AS superuser, current_database() AS db FROM pg_roles WHERE rolname = current_user',
      );
      assert.deepEqual(who.rows[0], { addr: '127.0.0.1', superuser: false, db: 'ferry_test' });

      await a.query(`CREATE TABLE jobs (id serial PRIMARY KEY, state text NOT NULL DEFAULT 'queued', worker text)`);
      await a.query(`INSERT INTO jobs (state) SELECT 'queued' FROM generate_series(1, 5)`);
      const take = `SELECT id FROM jobs WHERE state = 'queued' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED`;
      await a.query('BEGIN');
      await b.query('BEGIN');
      const ra = await a.query<{ id: number }>(take);
      const rb = await b.query<{ id: number }>(take); // does not wait for a's lock: skips row 1
      assert.equal(ra.rows[0]?.id, 1);
      assert.equal(rb.rows[0]?.id, 2);
      // the lock is real: b cannot take a's row without waiting (55P03 lock_not_available)
      await b.query('SAVEPOINT s');
      await assert.rejects(
        b.query('SELECT id FROM jobs WHERE id = 1 FOR UPDATE NOWAIT'),
        (err: unknown) => err instanceof pg.DatabaseError && err.code === '55P03',
      );
      await b.query('ROLLBACK TO SAVEPOINT s');
      await a.query(`UPDATE jobs SET state = 'running', worker = 'a' WHERE id = $1`, [ra.rows[0]?.id]);
      await b.query(`UPDATE jobs SET state = 'running', worker = 'b' WHERE id = $1`, [rb.rows[0]?.id]);
      await a.query('COMMIT');
      await b.query('COMMIT');
      const rows = await a.query<{ id: number; worker: string | null }>('SELECT id, worker FROM jobs ORDER BY id');
      assert.deepEqual(
        rows.rows.map((r) => r.worker),
        ['a', 'b', null, null, null],
      );
    } finally {
      await a.end();
      await b.end();
    }
  } finally {
    const t0 = Date.now();
    await db.stop();
    t.diagnostic(`postgres stopped in ${Date.now() - t0} ms`);
  }
  assertGone('postgres', procs, db.dir);
});

test('startRadosgw: put/get/range/multipart/list/delete/presigned GET through @aws-sdk/client-s3; stop leaves nothing', {
  timeout: TEST_TIMEOUT,
}, async (t) => {
  const s3 = await startRadosgw({ bucket: 'ferry-test' });
  const bucket = s3.bucket;
  assert.equal(bucket, 'ferry-test');
  if (bucket === undefined) return;
  let procs: ProcRef[] = [];
  const client = s3Client(s3);
  try {
    procs = s3.processes();
    t.diagnostic(
      `radosgw started in ${s3.startMs} ms (${JSON.stringify(s3.phases)}) at ${s3.endpoint}; ${procs.map((p) => p.name).join(', ')}; RSS ${rssMiB(procs)} MiB`,
    );
    assert.deepEqual(procs.map((p) => p.name).sort(), ['ceph-mon', 'ceph-osd', 'radosgw']);
    assert.match(s3.endpoint, /^http:\/\/127\.0\.0\.1:\d+$/);

    const buckets = await client.send(new ListBucketsCommand({}));
    assert.deepEqual(
      buckets.Buckets?.map((b) => b.Name),
      [bucket],
    );

    // put + get (Buffer body); the ETag of a simple PUT is the MD5 of the body
    const small = Buffer.from('hello, ferry: 0123456789');
    const put = await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'a/small.txt', Body: small, ContentType: 'text/plain' }));
    assert.equal(put.ETag, `"${md5(small)}"`);
    const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: 'a/small.txt' }));
    assert.equal(await got.Body?.transformToString(), small.toString());
    assert.equal(got.ContentType, 'text/plain');

    // ranged get
    const ranged = await client.send(new GetObjectCommand({ Bucket: bucket, Key: 'a/small.txt', Range: 'bytes=7-11' }));
    assert.equal(await ranged.Body?.transformToString(), 'ferry');
    assert.equal(ranged.ContentRange, `bytes 7-11/${small.length}`);

    // a stream body (the case that needs requestChecksumCalculation: 'WHEN_REQUIRED')
    const streamed = randomBytes(256 * 1024);
    await client.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: 'a/streamed.bin',
        Body: Readable.from([streamed.subarray(0, 100_000), streamed.subarray(100_000)]),
        ContentLength: streamed.length,
      }),
    );
    const gotStreamed = Buffer.from(
      await (await client.send(new GetObjectCommand({ Bucket: bucket, Key: 'a/streamed.bin' }))).Body!.transformToByteArray(),
    );
    assert.ok(gotStreamed.equals(streamed), 'streamed object reads back byte for byte');

    // multipart: 5 MiB + 2 MiB (S3's minimum part size is 5 MiB except for the last part)
    const parts = [randomBytes(5 * 1024 * 1024), randomBytes(2 * 1024 * 1024)];
    const whole = Buffer.concat(parts);
    const mpu = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'b/big.bin' }));
    const uploadId = mpu.UploadId;
    assert.ok(uploadId, 'multipart upload id');
    const etags: string[] = [];
    for (const [i, body] of parts.entries()) {
      const up: UploadPartCommandOutput = await client.send(
        new UploadPartCommand({ Bucket: bucket, Key: 'b/big.bin', UploadId: uploadId, PartNumber: i + 1, Body: body }),
      );
      assert.equal(up.ETag, `"${md5(body)}"`);
      etags.push(up.ETag);
    }
    await client.send(
      new CompleteMultipartUploadCommand({
        Bucket: bucket,
        Key: 'b/big.bin',
        UploadId: uploadId,
        MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
      }),
    );
    // radosgw 16.2 answers CompleteMultipartUpload with an empty ETag; HeadObject has the S3 one
    const expectedEtag = `"${md5(Buffer.concat(parts.map((p) => createHash('md5').update(p).digest())))}-${parts.length}"`;
    const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'b/big.bin' }));
    assert.equal(head.ContentLength, whole.length);
    assert.equal(head.ETag, expectedEtag);
    const big = Buffer.from(
      await (await client.send(new GetObjectCommand({ Bucket: bucket, Key: 'b/big.bin' }))).Body!.transformToByteArray(),
    );
    assert.equal(createHash('sha256').update(big).digest('hex'), createHash('sha256').update(whole).digest('hex'));
    const across = await client.send(
      new GetObjectCommand({ Bucket: bucket, Key: 'b/big.bin', Range: `bytes=${5 * 1024 * 1024 - 4}-${5 * 1024 * 1024 + 3}` }),
    );
    assert.ok(
      Buffer.from(await across.Body!.transformToByteArray()).equals(whole.subarray(5 * 1024 * 1024 - 4, 5 * 1024 * 1024 + 4)),
      'range across the part boundary',
    );

    // list (all, and by prefix)
    const all = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
    assert.deepEqual(
      all.Contents?.map((o) => o.Key),
      ['a/small.txt', 'a/streamed.bin', 'b/big.bin'],
    );
    const underA = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'a/', MaxKeys: 1 }));
    assert.deepEqual(
      underA.Contents?.map((o) => o.Key),
      ['a/small.txt'],
    );
    assert.equal(underA.IsTruncated, true);

    // presigned GET, fetched without the SDK
    const url = await getSignedUrl(client, new GetObjectCommand({ Bucket: bucket, Key: 'a/small.txt' }), { expiresIn: 300 });
    assert.ok(url.startsWith(`${s3.endpoint}/${bucket}/a/small.txt?`), url);
    const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
    assert.equal(res.status, 200);
    assert.equal(await res.text(), small.toString());
    const tampered = await fetch(url.replace('small.txt', 'streamed.bin'), { signal: AbortSignal.timeout(10_000) });
    assert.equal(tampered.status, 403, 'the signature covers the key');
    await tampered.body?.cancel();

    // delete
    for (const key of ['a/small.txt', 'a/streamed.bin', 'b/big.bin'])
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    await assert.rejects(
      client.send(new GetObjectCommand({ Bucket: bucket, Key: 'a/small.txt' })),
      (err: unknown) => err instanceof S3ServiceException && err.name === 'NoSuchKey',
    );
    assert.equal((await client.send(new ListObjectsV2Command({ Bucket: bucket }))).KeyCount, 0);
    await client.send(new DeleteBucketCommand({ Bucket: bucket }));
    t.diagnostic(`radosgw RSS after 7.3 MiB of objects written and deleted: ${rssMiB(s3.processes())} MiB`);
  } finally {
    client.destroy();
    const t0 = Date.now();
    await s3.stop();
    t.diagnostic(`radosgw stopped in ${Date.now() - t0} ms`);
  }
  assertGone('radosgw', procs, s3.dir);
});

test('instances started in parallel are independent (own ports, dirs, data) and all stop cleanly', { timeout: TEST_TIMEOUT }, async (t) => {
  const t0 = Date.now();
  const [pgs, rgws] = await Promise.all([
    Promise.allSettled([startPostgres(), startPostgres()]),
    Promise.allSettled([startRadosgw(), startRadosgw()]),
  ]);
  const dbs = pgs.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const gws = rgws.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const procs = new Map<string, ProcRef[]>();
  try {
    for (const r of [...pgs, ...rgws]) if (r.status === 'rejected') throw r.reason;
    const [db1, db2] = dbs;
    const [gw1, gw2] = gws;
    assert.ok(db1 && db2 && gw1 && gw2);
    t.diagnostic(`2 postgres + 2 radosgw started in parallel in ${Date.now() - t0} ms`);
    for (const e of [db1, db2]) procs.set(e.dir, e.processes());
    for (const e of [gw1, gw2]) procs.set(e.dir, e.processes());
    assert.notEqual(db1.port, db2.port);
    assert.notEqual(gw1.endpoint, gw2.endpoint);
    assert.notEqual(gw1.fsid, gw2.fsid);
    assert.equal(new Set([db1.dir, db2.dir, gw1.dir, gw2.dir]).size, 4);

    const c1 = pgClient(db1);
    const c2 = pgClient(db2);
    await c1.connect();
    await c2.connect();
    try {
      await c1.query('CREATE TABLE only_in_one (x int)');
      const seen = await c2.query(`SELECT count(*)::int AS n FROM pg_tables WHERE tablename = 'only_in_one'`);
      assert.equal(seen.rows[0]?.n, 0);
    } finally {
      await c1.end();
      await c2.end();
    }

    const s1 = s3Client(gw1);
    const s2 = s3Client(gw2);
    try {
      await s1.send(new CreateBucketCommand({ Bucket: 'only-in-one' }));
      assert.deepEqual((await s2.send(new ListBucketsCommand({}))).Buckets ?? [], []);
      // the other cluster's keys are unknown here
      const foreign = s3Client({ ...gw2, accessKeyId: gw1.accessKeyId, secretAccessKey: gw1.secretAccessKey });
      await assert.rejects(
        foreign.send(new ListBucketsCommand({})),
        (err: unknown) => err instanceof S3ServiceException && err.name === 'InvalidAccessKeyId',
      );
      foreign.destroy();
    } finally {
      s1.destroy();
      s2.destroy();
    }
  } finally {
    const t1 = Date.now();
    await Promise.all([...dbs.map((d) => d.stop()), ...gws.map((g) => g.stop())]);
    t.diagnostic(`all stopped in parallel in ${Date.now() - t1} ms`);
  }
  for (const [dir, before] of procs) assertGone(dir, before, dir);
});

test('a missing engine fails at once naming the binary and the Debian package to install', async () => {
  await assert.rejects(
    startPostgres({ binDir: '/nonexistent/postgresql/15/bin' }),
    (err: unknown) =>
      err instanceof MissingPrerequisiteError &&
      /initdb \(Debian package postgresql-15\)/.test(err.message) &&
      /psql \(Debian package postgresql-client-15\)/.test(err.message) &&
      /scripts\/install-deps\.sh/.test(err.message),
  );
  await assert.rejects(
    startRadosgw({ binDir: '/nonexistent' }),
    (err: unknown) =>
      err instanceof MissingPrerequisiteError &&
      /ceph-mon \(Debian package ceph-mon\)/.test(err.message) &&
      /radosgw \(Debian package radosgw\)/.test(err.message) &&
      /radosgw-admin \(Debian package ceph-common\)/.test(err.message),
  );
});
