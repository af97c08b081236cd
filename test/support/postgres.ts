/**
 * A private PostgreSQL server for one test: an initdb'd data dir in a fresh temp dir, listening on
 * 127.0.0.1 at a free port (plus a unix socket inside the temp dir), with a database and a
 * password-authenticated (scram-sha-256) non-superuser role made for the test. Instances share
 * nothing but a read-only initdb template they copy their data dir from (see prepareDataDir), so
 * test files may each start their own in parallel. Durability is off (fsync, synchronous_commit,
 * full_page_writes): the data dir is thrown away at stop().
 *
 * As root, the server runs as the `postgres` system user (`runuser -u postgres --`), which
 * PostgreSQL requires; as another user, as that user.
 *
 *   const pg = await startPostgres();
 *   try { … new pg.Client({ connectionString: pg.url }) … } finally { await pg.stop(); }
 */
import { createHash, randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import {
  MissingPrerequisiteError,
  childrenOf,
  isAlive,
  logTails,
  onProcessExit,
  procRef,
  removeDir,
  requireExecutables,
  runTool,
  sleep,
  waitFor,
  freePort,
  type ProcRef,
} from './daemons.js';

export interface PostgresOptions {
  /** Database created for the test, owned by `user` (default `ferry_test`). */
  database?: string;
  /** Login role created for the test, password-authenticated, not a superuser (default `ferry`). */
  user?: string;
  /** Its password (default: 24 random hex characters). */
  password?: string;
  /** Extra server settings (`postgresql.conf` lines), e.g. `{ max_connections: 50 }`. */
  settings?: Record<string, string | number | boolean>;
  /** Bound on the whole start (default 60 s). */
  startTimeoutMs?: number;
  /** Directory with initdb/pg_ctl/postgres/psql (default: $FERRY_PG_BINDIR, else the newest /usr/lib/postgresql/N/bin). */
  binDir?: string;
}

export interface PostgresInstance {
  /** `postgres://user:password@127.0.0.1:port/database` */
  readonly url: string;
  readonly host: '127.0.0.1';
  readonly port: number;
  readonly database: string;
  readonly user: string;
  readonly password: string;
  /** Superuser role (`postgres`), reachable only through the unix socket in `socketDir` (trust). */
  readonly superuser: string;
  readonly socketDir: string;
  /** The private temp dir (data dir, socket, log); removed by stop(). */
  readonly dir: string;
  readonly logPath: string;
  /** Server version, e.g. "15.18". */
  readonly version: string;
  /** Milliseconds start took, and per step (datadir: template copy or initdb; server; setup: role/database). */
  readonly startMs: number;
  readonly phases: Readonly<Record<string, number>>;
  /** The live processes of this server (postmaster and its children). */
  processes(): ProcRef[];
  /** Stops the server (pg_ctl stop -m fast; SIGKILL if that fails) and removes the temp dir. Idempotent. */
  stop(): Promise<void>;
}

const IDENT = /^[a-z_][a-z0-9_]{0,62}$/;

function pgBinDir(opts: PostgresOptions): string {
  if (opts.binDir) return opts.binDir;
  const fromEnv = process.env.FERRY_PG_BINDIR;
  if (fromEnv) return fromEnv;
  const base = '/usr/lib/postgresql';
  const versions = existsSync(base)
    ? readdirSync(base)
        .filter((v) => /^\d+$/.test(v) && existsSync(join(base, v, 'bin', 'initdb')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  const newest = versions[0];
  if (!newest) {
    throw new MissingPrerequisiteError(
      'postgres: missing prerequisite: no PostgreSQL server in /usr/lib/postgresql/*/bin (Debian package postgresql-15, ' +
        'or set FERRY_PG_BINDIR); install with scripts/install-deps.sh (as root)',
    );
  }
  return join(base, newest, 'bin');
}

/** The uid/gid the server runs as: `postgres` when we are root, else ourselves. */
function serverAccount(): Account {
  const uid = process.getuid?.() ?? -1;
  if (uid !== 0) return { asRoot: false, uid, gid: process.getgid?.() ?? -1 };
  requireExecutables('postgres', [{ path: '/usr/sbin/runuser', pkg: 'util-linux' }]);
  let ids: string[];
  try {
    ids = execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .concat(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
  } catch {
    throw new MissingPrerequisiteError(
      'postgres: missing prerequisite: system user `postgres` (created by Debian package postgresql-common, ' +
        'a dependency of postgresql-15); install with scripts/install-deps.sh (as root)',
    );
  }
  return { asRoot: true, uid: Number(ids[0]), gid: Number(ids[1]) };
}

/** Environment without PG* variables (a developer's PGHOST/PGPORT must not redirect our tools). */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v;
  env.LC_ALL = 'C';
  return env;
}

function confValue(v: string | number | boolean): string {
  if (typeof v === 'number') return String(v);
  if (typeof v === 'boolean') return v ? 'on' : 'off';
  return `'${v.replace(/'/g, "''")}'`;
}

const INITDB_ARGS = [
  '-U',
  'postgres',
  '--wal-segsize=1',
  '--auth-local=trust',
  '--auth-host=scram-sha-256',
  '-E',
  'UTF8',
  '--locale=C',
  '--no-sync',
  '--no-instructions',
];

type Account = { asRoot: boolean; uid: number; gid: number };

/** initdb into `dataDir` (whose parent exists and is the server account's). */
async function runInitdb(
  dataDir: string,
  asServer: (tool: string, args: string[]) => [string, string[]],
  account: Account,
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
): Promise<void> {
  // scram host auth needs a superuser password; the superuser is only used over the private socket (trust)
  const pwfile = `${dataDir}.pw`;
  writeFileSync(pwfile, `${randomBytes(12).toString('hex')}\n`, { mode: 0o600 });
  if (account.asRoot) chownSync(pwfile, account.uid, account.gid);
  try {
    const [cmd, args] = asServer('initdb', ['-D', dataDir, '--pwfile', pwfile, ...INITDB_ARGS]);
    await runTool(cmd, args, { timeoutMs, env, cwd: dirname(dataDir) });
  } finally {
    rmSync(pwfile, { force: true });
  }
}

/**
 * Fills `dataDir` with an initdb'd cluster. initdb costs 1.5–2.5 s, copying its result ~0.1 s, so
 * the first start on a machine publishes a template — $TMPDIR/ferry-pg-template-KEY/data, KEY from
 * the binaries, the initdb options and the account — with an atomic rename (parallel starters never
 * see half of one) and later starts copy it (`cp -a`, keeping the owner). FERRY_PG_TEMPLATE=off
 * runs initdb every time. Returns the template's data dir when copied from one.
 */
async function prepareDataDir(
  dataDir: string,
  bin: string,
  account: Account,
  initdb: (into: string) => Promise<void>,
  timeoutMs: number,
): Promise<string | undefined> {
  if (process.env.FERRY_PG_TEMPLATE === 'off') {
    await initdb(dataDir);
    return undefined;
  }
  const ident = ['initdb', 'postgres'].map((b) => {
    const st = statSync(join(bin, b));
    return `${b}:${st.size}:${st.mtimeMs}`;
  });
  const key = createHash('sha256')
    .update(JSON.stringify([bin, ident, INITDB_ARGS, account.uid]))
    .digest('hex')
    .slice(0, 16);
  const root = join(tmpdir(), `ferry-pg-template-${key}`);
  const template = join(root, 'data');
  if (!existsSync(join(root, 'READY'))) {
    const work = mkdtempSync(`${root}.tmp-`);
    const unregister = onProcessExit(() => removeDir(work));
    try {
      if (account.asRoot) chownSync(work, account.uid, account.gid);
      await initdb(join(work, 'data'));
      writeFileSync(join(work, 'READY'), '');
      // a root without READY is never a publisher at work (publishing is one rename of a finished dir): garbage
      if (existsSync(root) && !existsSync(join(root, 'READY'))) removeDir(root);
      try {
        renameSync(work, root);
      } catch {
        // another starter published first (or a broken leftover is in the way): use our own copy
        if (!existsSync(join(root, 'READY'))) {
          renameSync(join(work, 'data'), dataDir);
          return undefined;
        }
      }
    } finally {
      removeDir(work);
      unregister();
    }
  }
  try {
    await runTool('cp', ['-a', template, dataDir], { timeoutMs });
    return template;
  } catch {
    // removed under us (another starter found it damaged): initdb afresh
    removeDir(dataDir);
    await initdb(dataDir);
    return undefined;
  }
}

/** Starts a private PostgreSQL server; see the module comment. */
export async function startPostgres(opts: PostgresOptions = {}): Promise<PostgresInstance> {
  const t0 = Date.now();
  const database = opts.database ?? 'ferry_test';
  const user = opts.user ?? 'ferry';
  const password = opts.password ?? randomBytes(12).toString('hex');
  if (!IDENT.test(database) || !IDENT.test(user)) throw new Error(`postgres: database and user must match ${IDENT}`);
  const superuser = 'postgres';
  const timeoutMs = opts.startTimeoutMs ?? 60_000;
  const deadline = t0 + timeoutMs;
  const remaining = (): number => Math.max(1000, deadline - Date.now());

  const bin = pgBinDir(opts);
  const pkg = `postgresql-${bin.split('/').at(-2) ?? '15'}`;
  requireExecutables('postgres', [
    { path: join(bin, 'initdb'), pkg },
    { path: join(bin, 'pg_ctl'), pkg },
    { path: join(bin, 'postgres'), pkg },
    { path: join(bin, 'psql'), pkg: pkg.replace('postgresql-', 'postgresql-client-') },
  ]);
  const account = serverAccount();
  const env = cleanEnv();
  // As root every server-side tool runs as `postgres`; its cwd is the temp dir (root's may be unreadable).
  const asServer = (tool: string, args: string[]): [string, string[]] =>
    account.asRoot ? ['/usr/sbin/runuser', ['-u', 'postgres', '--', join(bin, tool), ...args]] : [join(bin, tool), args];

  const dir = mkdtempSync(join(tmpdir(), 'ferry-pg-'));
  const dataDir = join(dir, 'data');
  const logPath = join(dir, 'postgres.log');
  if (account.asRoot) chownSync(dir, account.uid, account.gid);
  writeFileSync(logPath, '');
  if (account.asRoot) chownSync(logPath, account.uid, account.gid);
  const details = (): string => logTails([['postgres log', logPath]]);

  let postmaster: ProcRef | undefined;
  const known = new Map<number, ProcRef>(); // every server process seen, for the kill path
  const remember = (): ProcRef[] => {
    if (!postmaster || !isAlive(postmaster)) return [];
    const live = [postmaster, ...childrenOf(postmaster)];
    for (const p of live) known.set(p.pid, p);
    return live;
  };
  const killAll = (): void => {
    remember();
    for (const p of known.values()) {
      if (isAlive(p)) {
        try {
          process.kill(p.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
  };
  const unregister = onProcessExit(() => {
    killAll();
    removeSysvShm(dataDir);
    removeDir(dir);
  });

  const phases: Record<string, number> = {};
  let mark = Date.now();
  const phase = (name: string): void => {
    const now = Date.now();
    phases[name] = now - mark;
    mark = now;
  };
  try {
    const initdb = (into: string): Promise<void> => runInitdb(into, asServer, account, env, remaining());
    let fromTemplate = await prepareDataDir(dataDir, bin, account, initdb, remaining());
    phase(fromTemplate ? 'datadir (template copy)' : 'datadir (initdb)');

    const settings: Record<string, string | number | boolean> = {
      listen_addresses: '127.0.0.1',
      unix_socket_directories: dir,
      unix_socket_permissions: '0700',
      fsync: false,
      synchronous_commit: false,
      full_page_writes: false,
      max_connections: 30,
      shared_buffers: '32MB',
      // segments in the data dir (removed with it), not /dev/shm, even after a SIGKILL
      dynamic_shared_memory_type: 'mmap',
      logging_collector: false,
      log_min_messages: 'warning',
      log_connections: false,
      ...opts.settings,
    };
    const conf = Object.entries(settings)
      .map(([k, v]) => `${k} = ${confValue(v)}`)
      .join('\n');
    const configure = (): void =>
      writeFileSync(
        join(dataDir, 'postgresql.conf'),
        `${readFileSync(join(dataDir, 'postgresql.conf'), 'utf8')}\n# ferry test settings\n${conf}\n`,
      );
    configure();

    // A free port can be taken by someone else between our probe and the bind: retry with a new one.
    let port = 0;
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      const [ctlCmd, ctlArgs] = asServer('pg_ctl', [
        'start',
        '-D',
        dataDir,
        '-l',
        logPath,
        '-w',
        '-t',
        String(Math.ceil(remaining() / 1000)),
        '-o',
        `-p ${port}`,
      ]);
      try {
        await runTool(ctlCmd, ctlArgs, { timeoutMs: remaining() + 2000, env, cwd: dir, details });
        break;
      } catch (err) {
        const portTaken = /could not (bind|create listen)|already in use/i.test(readFileSync(logPath, 'utf8'));
        if (portTaken && attempt < 3) {
          await sleep(100);
          continue;
        }
        if (!fromTemplate) throw err;
        // A damaged template (e.g. files removed by a /tmp cleaner): drop it, initdb afresh once.
        removeDir(dirname(fromTemplate));
        removeDir(dataDir);
        await initdb(dataDir);
        configure();
        fromTemplate = undefined;
        writeFileSync(logPath, '');
      }
    }
    phase('server');
    const pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    postmaster = procRef(pid, 'postgres');
    if (!postmaster) throw new Error(`postgres: postmaster (pid ${pid}) not running after pg_ctl start${details()}`);
    remember();

    // one psql run, each -c its own transaction (CREATE DATABASE cannot run inside one)
    const setup = await runTool(
      join(bin, 'psql'),
      [
        '-X',
        '-q',
        '-A',
        '-t',
        '-v',
        'ON_ERROR_STOP=1',
        '-h',
        dir,
        '-p',
        String(port),
        '-U',
        superuser,
        '-d',
        'postgres',
        '-c',
        `CREATE ROLE ${user} LOGIN PASSWORD '${password.replace(/'/g, "''")}'`,
        '-c',
        `CREATE DATABASE ${database} OWNER ${user}`,
        '-c',
        'SHOW server_version',
      ],
      { timeoutMs: remaining(), env, cwd: dir, details },
    );
    const version = setup.stdout.trim().split(' ')[0] ?? '?';
    phase('setup');

    let stopping: Promise<void> | undefined;
    const stop = (): Promise<void> => {
      stopping ??= (async () => {
        remember();
        const [stopCmd, stopArgs] = asServer('pg_ctl', ['stop', '-D', dataDir, '-m', 'fast', '-w', '-t', '10']);
        let problem: Error | undefined;
        try {
          await runTool(stopCmd, stopArgs, { timeoutMs: 15_000, env, cwd: dir, details });
        } catch (err) {
          problem = err instanceof Error ? err : new Error(String(err));
          killAll();
          removeSysvShm(dataDir);
        }
        try {
          await waitFor('postgres processes to exit', () => ([...known.values()].some(isAlive) ? undefined : true), {
            timeoutMs: 5000,
            details: () =>
              ` still alive: ${[...known.values()]
                .filter(isAlive)
                .map((p) => p.pid)
                .join(', ')}`,
          });
        } finally {
          removeDir(dir);
          unregister();
        }
        // pg_ctl failing but the kill path cleaning up is worth knowing, not worth failing a test for.
        if (problem) process.emitWarning(`postgres: pg_ctl stop failed, processes were killed: ${problem.message.split('\n')[0]}`);
      })();
      return stopping;
    };

    return {
      url: `postgres://${user}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`,
      host: '127.0.0.1',
      port,
      database,
      user,
      password,
      superuser,
      socketDir: dir,
      dir,
      logPath,
      version,
      startMs: Date.now() - t0,
      phases,
      processes: () => remember(),
      stop,
    };
  } catch (err) {
    killAll();
    removeSysvShm(dataDir);
    removeDir(dir);
    unregister();
    throw err;
  }
}

/**
 * After a SIGKILL the postmaster's small System V segment (its interlock) stays behind; its id is
 * on line 7 of postmaster.pid. Best effort.
 */
function removeSysvShm(dataDir: string): void {
  let id: string | undefined;
  try {
    id = readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[6]?.trim().split(/\s+/)[1];
  } catch {
    return;
  }
  if (!id || !/^\d+$/.test(id)) return;
  try {
    execFileSync('ipcrm', ['-m', id], { stdio: 'ignore', timeout: 5000 });
  } catch {
    /* already removed */
  }
}
