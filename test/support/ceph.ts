/**
 * A private S3 endpoint for one test: a one-node Ceph cluster built from nothing in a temp dir (one
 * mon, one OSD on memstore — object data lives in the OSD's RAM — and one radosgw), cephx on, all
 * on 127.0.0.1 at free ports, with an S3 user and optionally a bucket. Each instance has its own
 * fsid, ports, keys and dirs, so test files may start their own in parallel.
 *
 *   const s3 = await startRadosgw({ bucket: 'test' });
 *   try { … new S3Client({ endpoint: s3.endpoint, region: s3.region, forcePathStyle: true, … }) … }
 *   finally { await s3.stop(); }
 *
 * Talking to it with @aws-sdk/client-s3 (radosgw 16.2): set requestChecksumCalculation and
 * responseChecksumValidation to 'WHEN_REQUIRED' (otherwise streamed bodies fail with 411
 * MissingContentLength), forcePathStyle: true; CompleteMultipartUpload answers an empty ETag
 * (HeadObject afterwards has the right one). `s3ClientConfig()` returns such a config.
 *
 * Startup, in order: keys (made here, no ceph-authtool) and ceph.conf → monmaptool + ceph-mon --mkfs
 * → ceph-mon → one `ceph` CLI call (osd new + the 7 radosgw pools, created up front because radosgw
 * would create them one by one, slowly) in parallel with ceph-osd --mkfs → ceph-osd and radosgw →
 * radosgw answers HTTP → radosgw-admin user create → bucket. Stop, in order: radosgw (it hangs on
 * SIGTERM once the OSD is gone), OSD, mon; SIGKILL after a grace period; temp dir removed.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Daemon,
  isAlive,
  logTails,
  onProcessExit,
  processesMentioning,
  removeDir,
  requireExecutables,
  runTool,
  sleep,
  waitFor,
  freePort,
  type ProcRef,
} from './daemons.js';

export interface RadosgwOptions {
  /** Create this bucket (path-style) for the test. */
  bucket?: string;
  /** Region clients sign with (default `us-east-1`). */
  region?: string;
  /** Bound on the whole start (default 90 s; about 3 s on an idle machine). */
  startTimeoutMs?: number;
  /** Capacity of the memstore OSD (default 1 GiB; RAM is used only for what is stored). */
  memstoreBytes?: number;
  /** Extra ceph.conf lines for [global], e.g. `{ 'rgw gc obj min wait': 1 }`. */
  settings?: Record<string, string | number | boolean>;
  /** Directory with ceph-mon, ceph-osd, radosgw, radosgw-admin, ceph, monmaptool (default: $FERRY_CEPH_BINDIR, else /usr/bin). */
  binDir?: string;
}

export interface RadosgwInstance {
  /** `http://127.0.0.1:PORT` (path-style S3). */
  readonly endpoint: string;
  readonly region: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** The bucket created at start, when `bucket` was given. */
  readonly bucket?: string;
  /** The private temp dir (ceph.conf, keyring, mon/osd data, logs in `log/`); removed by stop(). */
  readonly dir: string;
  readonly fsid: string;
  /** Milliseconds start took, and per step (config, mon, cluster, osd+rgw, user, bucket). */
  readonly startMs: number;
  readonly phases: Readonly<Record<string, number>>;
  /** The live processes of this cluster (ceph-mon, ceph-osd, radosgw and any tool still running on it). */
  processes(): ProcRef[];
  /** Runs `radosgw-admin ARGS` against this cluster (e.g. `['gc', 'process', '--include-all']`); stdout. */
  admin(args: string[]): Promise<string>;
  /** Runs `ceph ARGS` against this cluster (e.g. `['osd', 'pool', 'ls']`); stdout. */
  ceph(args: string[]): Promise<string>;
  /** The last lines of each daemon's log, for failure messages. */
  logTails(lines?: number): string;
  /** Stops radosgw, the OSD, then the mon (SIGTERM, SIGKILL after 5 s each) and removes the temp dir. Idempotent. */
  stop(): Promise<void>;
}

/** S3 client settings radosgw 16.2 needs (see the module comment); spread into `new S3Client(…)`. */
export function s3ClientConfig(s3: RadosgwInstance): {
  endpoint: string;
  region: string;
  forcePathStyle: true;
  credentials: { accessKeyId: string; secretAccessKey: string };
  requestChecksumCalculation: 'WHEN_REQUIRED';
  responseChecksumValidation: 'WHEN_REQUIRED';
} {
  return {
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  };
}

const RGW_NAME = 'client.rgw.a';
/** The pools radosgw 16.2 creates lazily for the default zone; created up front in one CLI call. */
const RGW_POOLS = [
  '.rgw.root',
  'default.rgw.log',
  'default.rgw.control',
  'default.rgw.meta',
  'default.rgw.buckets.index',
  'default.rgw.buckets.data',
  'default.rgw.buckets.non-ec',
];

/** A cephx secret as ceph-authtool writes it: le16 type (1 = AES), le32 sec, le32 nsec, le16 len, 16 bytes. */
function cephxKey(): string {
  const b = Buffer.alloc(28);
  b.writeUInt16LE(1, 0);
  b.writeUInt32LE(Math.floor(Date.now() / 1000), 2);
  b.writeUInt32LE(0, 6);
  b.writeUInt16LE(16, 10);
  randomBytes(16).copy(b, 12);
  return b.toString('base64');
}

function keyring(): string {
  const entities: Array<[string, Record<string, string>]> = [
    ['mon.', { mon: 'allow *' }],
    ['client.admin', { mon: 'allow *', osd: 'allow *', mgr: 'allow *', mds: 'allow *' }],
    ['osd.0', { mon: 'allow profile osd', osd: 'allow *', mgr: 'allow profile osd' }],
    [RGW_NAME, { mon: 'allow rw', osd: 'allow rwx', mgr: 'allow rw' }],
  ];
  return entities
    .map(
      ([name, caps]) =>
        `[${name}]\n\tkey = ${cephxKey()}\n${Object.entries(caps)
          .map(([k, v]) => `\tcaps ${k} = "${v}"\n`)
          .join('')}`,
    )
    .join('');
}

function confLine(k: string, v: string | number | boolean): string {
  return `${k} = ${typeof v === 'boolean' ? String(v) : v}`;
}

interface Layout {
  dir: string;
  conf: string;
  logDir: string;
  monPort: number;
  rgwPort: number;
  fsid: string;
}

function writeConfig(l: Layout, opts: RadosgwOptions): void {
  const d = l.dir;
  const global: Record<string, string | number | boolean> = {
    fsid: l.fsid,
    'mon host': `[v2:127.0.0.1:${l.monPort}]`,
    'mon initial members': 'a',
    // loopback only, messenger v2 only (one port per role), no IPv6
    'public addr': '127.0.0.1',
    'cluster addr': '127.0.0.1',
    'public network': '127.0.0.0/8',
    'cluster network': '127.0.0.0/8',
    'ms bind ipv6': false,
    'ms bind msgr1': false,
    // a port taken between our probe and the bind fails at once (default: 3 tries 5 s apart); we retry with new ports
    'ms bind retry count': 1,
    // cephx stays on: without it radosgw waits 300 s on get_initial_auth_request (-13)
    'auth cluster required': 'cephx',
    'auth service required': 'cephx',
    'auth client required': 'cephx',
    keyring: join(d, 'keyring'),
    // everything a daemon or tool writes stays in the temp dir
    'run dir': join(d, 'run'),
    'admin socket': join(d, 'run', '$name.$pid.asok'),
    'pid file': join(d, 'run', '$name.pid'),
    'crash dir': join(d, 'crash'),
    'log file': join(l.logDir, '$name.log'),
    'mon cluster log file': join(l.logDir, 'cluster.log'),
    'log to stderr': false,
    'err to stderr': true,
    'log max recent': 500,
    // one OSD: size-1 pools, CRUSH over OSDs not hosts, few PGs, no autoscaler (no mgr anyway)
    'osd pool default size': 1,
    'osd pool default min size': 1,
    'mon allow pool size one': true,
    'osd crush chooseleaf type': 0,
    'osd pool default pg num': 8,
    'osd pool default pgp num': 8,
    'osd pool default pg autoscale mode': 'off',
    'mon warn on pool no redundancy': false,
    'mon allow pool delete': true,
    // a test machine's disk may be fuller than a server's: do not warn, never shut the mon down
    'mon data avail warn': 1,
    'mon data avail crit': 0,
    // fast map changes: each pool create is one paxos round
    'paxos propose interval': 0.02,
    'paxos min wait': 0.01,
    // clients (radosgw, radosgw-admin) re-ask for the osdmap every 0.2 s while an op has no OSD
    // (default 5 s: a client started before the OSD is up would sit idle for up to 5 s)
    'objecter tick interval': 0.2,
    // bounded client waits instead of blocking forever
    'rados osd op timeout': 30,
    'rados mon op timeout': 30,
    'client mount timeout': 30,
    'mon warn on insecure global id reclaim allowed': false,
    // deleted objects are collected within seconds, not hours
    'rgw gc obj min wait': 5,
    'rgw gc processor period': 10,
    ...opts.settings,
  };
  const sections: Record<string, Record<string, string | number | boolean>> = {
    global,
    mon: { 'mon data': join(d, 'mon') },
    osd: {
      'osd data': join(d, 'osd'),
      'osd objectstore': 'memstore',
      'memstore device bytes': opts.memstoreBytes ?? 1024 ** 3,
    },
    [RGW_NAME]: {
      'rgw frontends': `beast endpoint=127.0.0.1:${l.rgwPort}`,
      'rgw data': join(d, 'rgw'),
      'rgw thread pool size': 32,
      'rgw dynamic resharding': false,
      'rgw enable usage log': false,
    },
  };
  writeFileSync(
    l.conf,
    Object.entries(sections)
      .map(
        ([name, kv]) =>
          `[${name}]\n${Object.entries(kv)
            .map(([k, v]) => confLine(k, v))
            .join('\n')}\n`,
      )
      .join('\n'),
  );
  writeFileSync(join(d, 'keyring'), keyring(), { mode: 0o600 });
  for (const sub of ['mon', 'osd', 'rgw', 'run', 'crash']) mkdirSync(join(d, sub));
}

/** GET / answered by radosgw (anonymous ListBuckets → 200) within 2 s, else undefined. */
function httpStatus(url: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = request(url, { method: 'GET', timeout: 2000, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('timeout', () => {
      req.destroy();
      resolve(undefined);
    });
    req.on('error', () => resolve(undefined));
    req.end();
  });
}

/** Starts a private one-node Ceph cluster with radosgw; see the module comment. */
export async function startRadosgw(opts: RadosgwOptions = {}): Promise<RadosgwInstance> {
  const BIN = opts.binDir ?? process.env.FERRY_CEPH_BINDIR ?? '/usr/bin';
  requireExecutables('ceph', [
    { path: join(BIN, 'ceph-mon'), pkg: 'ceph-mon' },
    { path: join(BIN, 'ceph-osd'), pkg: 'ceph-osd' },
    { path: join(BIN, 'radosgw'), pkg: 'radosgw' },
    { path: join(BIN, 'radosgw-admin'), pkg: 'ceph-common' },
    { path: join(BIN, 'ceph'), pkg: 'ceph-common' },
    { path: join(BIN, 'monmaptool'), pkg: 'ceph-base' },
  ]);
  const t0 = Date.now();
  const timeoutMs = opts.startTimeoutMs ?? 90_000;
  // A free port can be taken between our probe and the daemon's bind: start again with new ports.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(BIN, opts, t0, t0 + timeoutMs);
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      if (attempt >= 3 || !/address already in use|unable to bind|failed to bind/i.test(msg) || Date.now() > t0 + timeoutMs) throw err;
      await sleep(100);
    }
  }
}

async function startOnce(BIN: string, opts: RadosgwOptions, t0: number, deadline: number): Promise<RadosgwInstance> {
  const remaining = (): number => Math.max(1000, deadline - Date.now());
  const dir = mkdtempSync(join(tmpdir(), 'ferry-ceph-'));
  const l: Layout = {
    dir,
    conf: join(dir, 'ceph.conf'),
    logDir: join(dir, 'log'),
    monPort: await freePort(),
    rgwPort: 0,
    fsid: randomUUID(),
  };
  while (l.rgwPort === 0 || l.rgwPort === l.monPort) l.rgwPort = await freePort();
  mkdirSync(l.logDir);
  const daemons: Daemon[] = [];
  const allLogs = (n = 20): string =>
    logTails(
      [
        ['ceph-mon', join(l.logDir, 'mon.a.log')],
        ['ceph-mon stderr', join(l.logDir, 'mon.out')],
        ['ceph-osd', join(l.logDir, 'osd.0.log')],
        ['ceph-osd stderr', join(l.logDir, 'osd.out')],
        ['radosgw', join(l.logDir, `${RGW_NAME}.log`)],
        ['radosgw stderr', join(l.logDir, 'rgw.out')],
      ],
      n,
    );
  const strays = (): ProcRef[] => processesMentioning(l.conf);
  const killAllNow = (): void => {
    for (const d of daemons) d.killNow();
    for (const p of strays()) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  };
  const unregister = onProcessExit(() => {
    killAllNow();
    removeDir(dir);
  });
  const tool = (cmd: string, args: string[], input?: string, timeoutMs = remaining()): Promise<{ stdout: string; stderr: string }> =>
    runTool(join(BIN, cmd), ['-c', l.conf, ...args], {
      timeoutMs,
      cwd: dir,
      details: () => allLogs(),
      ...(input !== undefined ? { input } : {}),
    });

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      try {
        // radosgw first: once the OSD is gone its SIGTERM handler waits on I/O that never completes.
        for (const d of [...daemons].reverse()) await d.stop('SIGTERM', 5000);
        for (const p of strays()) {
          try {
            process.kill(p.pid, 'SIGKILL');
          } catch {
            /* gone */
          }
        }
        await waitFor('ceph processes to exit', () => (strays().length === 0 ? true : undefined), {
          timeoutMs: 5000,
          details: () =>
            ` still alive: ${strays()
              .map((p) => `${p.pid} ${p.name}`)
              .join('; ')}`,
        });
      } finally {
        killAllNow();
        removeDir(dir);
        unregister();
      }
    })();
    return stopping;
  };

  const phases: Record<string, number> = {};
  let mark = Date.now();
  const phase = (name: string): void => {
    const now = Date.now();
    phases[name] = now - mark;
    mark = now;
  };
  try {
    writeConfig(l, opts);
    await tool('monmaptool', ['--create', '--fsid', l.fsid, '--addv', 'a', `[v2:127.0.0.1:${l.monPort}]`, join(dir, 'monmap')]);
    await tool('ceph-mon', ['--mkfs', '-i', 'a', '--monmap', join(dir, 'monmap'), '--keyring', join(dir, 'keyring')]);
    phase('config');
    const mon = await Daemon.start('ceph-mon', join(BIN, 'ceph-mon'), ['-c', l.conf, '-i', 'a', '-f'], join(l.logDir, 'mon.out'), dir);
    daemons.push(mon);

    // One CLI process for every map change (each `ceph` start costs ~0.3 s of Python); it waits for
    // the mon itself (--connect-timeout). The CLI exits 0 even when a command fails: check its output.
    const osdUuid = randomUUID();
    // No `osd pool application enable … rgw`: the tag only feeds a health warning (POOL_APP_NOT_ENABLED;
    // `ceph health` stays OK without a mgr) and would cost 7 more map changes (~1 s under load).
    const cmds = [`osd new ${osdUuid} 0`, ...RGW_POOLS.map((p) => `osd pool create ${p} 8 8`)];
    const monDied = mon.exited.then(() => {
      throw new Error(`ceph-mon exited during start${allLogs()}`);
    });
    const [cli] = await Promise.race([
      Promise.all([
        tool('ceph', ['--connect-timeout', String(Math.ceil(remaining() / 1000))], `${cmds.join('\n')}\n`),
        // the OSD's mkfs reads its config from the mon too, so it runs beside the CLI
        tool('ceph-osd', ['-i', '0', '--mkfs', '--osd-uuid', osdUuid]),
      ]),
      monDied,
    ]);
    phase('mon+cluster');
    const cliOut = `${cli.stdout}\n${cli.stderr}`;
    if (/^Error /m.test(cliOut)) throw new Error(`ceph: setting up the cluster failed:\n${cliOut.trim()}${allLogs()}`);

    daemons.push(await Daemon.start('ceph-osd', join(BIN, 'ceph-osd'), ['-c', l.conf, '-i', '0', '-f'], join(l.logDir, 'osd.out'), dir));
    const rgw = await Daemon.start('radosgw', join(BIN, 'radosgw'), ['-c', l.conf, '-n', RGW_NAME, '-f'], join(l.logDir, 'rgw.out'), dir);
    daemons.push(rgw);
    const endpoint = `http://127.0.0.1:${l.rgwPort}`;
    await waitFor(
      `radosgw at ${endpoint}`,
      async () => {
        for (const d of daemons) d.assertRunning();
        return (await httpStatus(`${endpoint}/`)) === 200 ? true : undefined;
      },
      { timeoutMs: remaining(), intervalMs: 100, details: () => allLogs() },
    );

    phase('osd+rgw');
    const accessKeyId = `FERRY${randomBytes(8).toString('hex').toUpperCase()}`;
    const secretAccessKey = randomBytes(20).toString('base64url');
    await tool('radosgw-admin', [
      'user',
      'create',
      '--uid',
      'ferry-test',
      '--display-name',
      'ferry test',
      '--access-key',
      accessKeyId,
      '--secret-key',
      secretAccessKey,
    ]);

    phase('user');
    const instance: RadosgwInstance = {
      endpoint,
      region: opts.region ?? 'us-east-1',
      accessKeyId,
      secretAccessKey,
      ...(opts.bucket !== undefined ? { bucket: opts.bucket } : {}),
      dir,
      fsid: l.fsid,
      startMs: 0,
      phases,
      processes: () => [
        ...daemons.filter((d) => d.exit === undefined && isAlive(d.ref)).map((d) => d.ref),
        ...strays().filter((p) => !daemons.some((d) => d.ref.pid === p.pid)),
      ],
      admin: async (args) => (await tool('radosgw-admin', args, undefined, 60_000)).stdout,
      ceph: async (args) => (await tool('ceph', args, undefined, 60_000)).stdout,
      logTails: (n = 20) => allLogs(n),
      stop,
    };
    if (opts.bucket !== undefined) {
      await createBucket(instance, opts.bucket, remaining());
      phase('bucket');
    }
    return { ...instance, startMs: Date.now() - t0 };
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
}

/** CreateBucket through the S3 API (radosgw-admin 16.2 cannot create buckets). */
async function createBucket(s3: RadosgwInstance, bucket: string, timeoutMs: number): Promise<void> {
  const { S3Client, CreateBucketCommand } = await import('@aws-sdk/client-s3');
  const client = new S3Client({ ...s3ClientConfig(s3), maxAttempts: 1 });
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }), { abortSignal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    throw new Error(
      `radosgw: CreateBucket ${bucket} failed: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}${s3.logTails()}`,
      { cause: err },
    );
  } finally {
    client.destroy();
  }
}
