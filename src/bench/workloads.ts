/**
 * @module bench/workloads
 * HelloBench-style workloads (each a command plus a readiness signal) and their images, built
 * from Debian packages with debootstrap (cached) or busybox, packaged as OCI layouts (cached under
 * $FERRY_CACHE_DIR/bench-images): layer 1 = the root filesystem, layer 2 = the application layer
 * (files, a jar compiled on the host with javac, incompressible data files).
 */
import { createCipheriv, createHash } from 'node:crypto';
import { createWriteStream, existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { once } from 'node:events';
import { FerryError } from '../core/index.js';
import type { Logger } from '../observe/index.js';
import { buildOciImage, busyboxRootfs, cacheDir, debootstrapRootfs, exec, withDirLock, type BuiltImage } from './env/index.js';
import type { ReadySignal } from './types.js';

export interface Workload {
  id: string;
  title: string;
  rootfs: { kind: 'busybox' } | { kind: 'debootstrap'; include: string[] };
  /** Files of the application layer: path → content; `bigFileBytes` adds an unused incompressible file. */
  appFiles?: Record<string, string>;
  bigFileBytes?: number;
  /** Incompressible files of the application layer: path → size in bytes. */
  dataFiles?: Record<string, number>;
  /** A jar compiled with the host's javac (`--release 17`) into the application layer. */
  jar?: { path: string; mainClass: string; sources: Record<string, string> };
  /**
   * The workload reads this many bytes and prints `read_ms=N` (how long the read took, by its own
   * clock); the harness keeps N per node and the report shows the throughput.
   */
  reportsReadBytes?: number;
  command: string[];
  ready: ReadySignal;
  /** Part of the --quick subset. */
  quick?: boolean;
  /** Paths the prefetch variant lists in its prefetch table (what start-up reads first). */
  prefetch: string[];
}

const JVM = '/usr/lib/jvm/java-17-openjdk-amd64';

/** The JVM workload's program: a little of what a service does at start (collections, streams, lambdas, a thread pool, regex, java.time). */
const JAVA_HELLO = `import java.net.URI;
import java.time.LocalDate;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import java.util.stream.IntStream;

public class Hello {
  public static void main(String[] args) throws Exception {
    long t0 = System.nanoTime();
    Map<String, Integer> counts = new TreeMap<>();
    for (String w : "the quick brown fox jumps over the lazy dog the end".split(" ")) counts.merge(w, 1, Integer::sum);
    String joined = counts.entrySet().stream().map(e -> e.getKey() + "=" + e.getValue()).collect(Collectors.joining(","));
    ExecutorService pool = Executors.newFixedThreadPool(2);
    Future<Integer> f = pool.submit(() -> IntStream.range(0, 1000).map(i -> i * i % 7).sum());
    int sum = f.get();
    pool.shutdown();
    Matcher m = Pattern.compile("(\\\\w+)=(\\\\d+)").matcher(joined);
    int pairs = 0;
    while (m.find()) pairs++;
    String host = URI.create("https://example.invalid/a?b=c").getHost();
    String day = LocalDate.of(2026, 1, 1).plusDays(sum % 30).toString();
    System.out.println("hello from java " + Runtime.version().feature() + " " + pairs + " " + host + " " + day
        + String.format(" %.1f ms", (System.nanoTime() - t0) / 1e6));
  }
}
`;

/** The import-heavy python workload: many stdlib modules plus numpy, yaml and requests, and a little work with them. */
const PY_IMPORTS = `import importlib, sys, time
t0 = time.perf_counter()
STDLIB = '''abc argparse array ast asyncio base64 bisect bz2 calendar cmath codecs collections colorsys
concurrent.futures configparser contextlib copy csv ctypes dataclasses datetime decimal difflib dis email
email.mime.text email.parser enum filecmp fnmatch fractions ftplib functools getopt gettext glob gzip hashlib
heapq hmac html html.parser http.client http.cookies http.server imaplib inspect io ipaddress itertools json
logging logging.handlers lzma mailbox mimetypes multiprocessing numbers operator optparse pathlib pickle pkgutil
platform plistlib poplib pprint queue quopri random re reprlib sched secrets selectors shelve shlex shutil signal
smtplib socket socketserver sqlite3 ssl statistics string stringprep struct subprocess tarfile tempfile textwrap
threading timeit tokenize tomllib traceback types typing unicodedata unittest urllib.parse urllib.request uuid
warnings weakref xml.dom.minidom xml.etree.ElementTree xml.sax xmlrpc.client zipfile zlib zoneinfo'''.split()
for name in STDLIB:
    importlib.import_module(name)
import numpy, yaml, requests
a = numpy.arange(10000, dtype=numpy.float64).reshape(100, 100)
total = float((a @ a.T).trace())
doc = yaml.safe_load('service: {name: bench, replicas: 3}')
req = requests.Request('GET', 'http://example.invalid/', params={'q': doc['service']['name']}).prepare()
print('hello', len(sys.modules), 'modules', int(total) % 1000, req.url, '%.0f ms' % ((time.perf_counter() - t0) * 1000))
`;

const SEQ_BYTES = 200 * 1024 * 1024;

/** The sequential-read workload: times cat FILE > /dev/null by its own clock (date +%s%N). */
const SEQ_READ = `t0=$(date +%s%N)
cat /data/seq.bin > /dev/null || exit 1
t1=$(date +%s%N)
echo "hello read_ms=$(( (t1 - t0) / 1000000 ))"
`;

export const WORKLOADS: Workload[] = [
  {
    id: 'hello',
    title: 'busybox echo hello (tiny)',
    quick: true,
    rootfs: { kind: 'busybox' },
    appFiles: { 'etc/motd': 'ferry bench\n' },
    command: ['/bin/echo', 'hello'],
    ready: { kind: 'exit', stdout: 'hello' },
    prefetch: ['/bin/busybox'],
  },
  {
    id: 'echo',
    title: 'Debian minbase: echo hello',
    rootfs: { kind: 'debootstrap', include: [] },
    command: ['/bin/echo', 'hello'],
    ready: { kind: 'exit', stdout: 'hello' },
    prefetch: ['/usr/bin/echo', '/usr/lib/x86_64-linux-gnu/libc.so.6', '/usr/lib64'],
  },
  {
    id: 'python',
    title: 'python3 -c print("hello")',
    rootfs: { kind: 'debootstrap', include: ['python3'] },
    command: ['/usr/bin/python3', '-c', 'print("hello")'],
    ready: { kind: 'exit', stdout: 'hello' },
    prefetch: ['/usr/bin/python3.11', '/usr/lib/python3.11', '/usr/lib/x86_64-linux-gnu', '/usr/lib64'],
  },
  {
    id: 'http',
    title: 'python3 http.server, polled every 10 ms',
    rootfs: { kind: 'debootstrap', include: ['python3'] },
    appFiles: { 'srv/index.html': '<h1>hello</h1>\n' },
    command: ['/usr/bin/python3', '-m', 'http.server', '8080', '--bind', '127.0.0.1', '--directory', '/srv'],
    ready: { kind: 'http', port: 8080, path: '/' },
    prefetch: ['/usr/bin/python3.11', '/usr/lib/python3.11', '/usr/lib/x86_64-linux-gnu', '/usr/lib64'],
  },
  {
    id: 'redis',
    title: 'redis-server until "Ready to accept connections"',
    rootfs: { kind: 'debootstrap', include: ['redis-server'] },
    command: ['/usr/bin/redis-server', '--port', '6380', '--save', '', '--appendonly', 'no', '--bind', '127.0.0.1'],
    ready: { kind: 'line', pattern: 'Ready to accept connections' },
    prefetch: ['/usr/bin/redis-server', '/usr/bin/redis-check-rdb', '/usr/lib/x86_64-linux-gnu', '/usr/lib64'],
  },
  {
    id: 'large',
    title: 'python3 hello + 512 MiB unused incompressible file',
    rootfs: { kind: 'debootstrap', include: ['python3'] },
    bigFileBytes: 512 * 1024 * 1024,
    command: ['/usr/bin/python3', '-c', 'print("hello")'],
    ready: { kind: 'exit', stdout: 'hello' },
    prefetch: ['/usr/bin/python3.11', '/usr/lib/python3.11', '/usr/lib/x86_64-linux-gnu', '/usr/lib64'],
  },
  {
    id: 'jvm',
    title: 'JVM start: java -jar hello.jar (Debian default JRE 17)',
    rootfs: { kind: 'debootstrap', include: ['default-jre-headless'] },
    jar: { path: 'app/hello.jar', mainClass: 'Hello', sources: { 'Hello.java': JAVA_HELLO } },
    command: ['/usr/bin/java', '-jar', '/app/hello.jar'],
    ready: { kind: 'exit', stdout: 'hello' },
    prefetch: [
      `${JVM}/bin/java`,
      `${JVM}/lib/libjli.so`,
      `${JVM}/lib/server/libjvm.so`,
      `${JVM}/lib/server/classes.jsa`,
      `${JVM}/lib/libjava.so`,
      `${JVM}/lib/modules`,
      '/app/hello.jar',
      '/usr/lib/x86_64-linux-gnu',
      '/usr/lib64',
    ],
  },
  {
    id: 'pyimport',
    title: 'python app importing ~130 modules (stdlib, numpy, yaml, requests)',
    rootfs: { kind: 'debootstrap', include: ['python3', 'python3-numpy', 'python3-requests', 'python3-yaml'] },
    appFiles: { 'app/imports.py': PY_IMPORTS },
    command: ['/usr/bin/python3', '/app/imports.py'],
    ready: { kind: 'exit', stdout: 'hello' },
    prefetch: [
      '/usr/bin/python3.11',
      '/usr/lib/python3.11',
      '/usr/lib/python3/dist-packages',
      '/usr/lib/x86_64-linux-gnu',
      '/usr/lib64',
      '/app',
    ],
  },
  {
    id: 'seqread',
    title: 'cat a 200 MiB incompressible file to /dev/null (sequential cold read)',
    rootfs: { kind: 'debootstrap', include: [] },
    appFiles: { 'app/seqread.sh': SEQ_READ },
    dataFiles: { 'data/seq.bin': SEQ_BYTES },
    reportsReadBytes: SEQ_BYTES,
    command: ['/bin/sh', '/app/seqread.sh'],
    ready: { kind: 'exit', stdout: 'hello' },
    prefetch: ['/usr/bin/dash', '/usr/bin/cat', '/usr/bin/date', '/usr/lib/x86_64-linux-gnu/libc.so.6', '/usr/lib64', '/app'],
  },
];

/** Workloads of a full run (hello is the --quick one). */
export const DEFAULT_WORKLOADS = ['echo', 'python', 'http', 'redis', 'large', 'jvm', 'pyimport', 'seqread'];

export function findWorkload(id: string): Workload {
  const w = WORKLOADS.find((x) => x.id === id);
  if (!w)
    throw new FerryError('INVALID_ARGUMENT', `unknown workload ${JSON.stringify(id)} (known: ${WORKLOADS.map((x) => x.id).join(', ')})`);
  return w;
}

/** Writes `bytes` of deterministic incompressible data (AES-CTR keystream of a fixed key). */
export async function writeIncompressible(path: string, bytes: number, seed = 'ferry-bench'): Promise<void> {
  const key = createHash('sha256').update(seed).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  const out = createWriteStream(path);
  const zero = Buffer.alloc(1024 * 1024);
  let left = bytes;
  while (left > 0) {
    const n = Math.min(left, zero.length);
    if (!out.write(cipher.update(zero.subarray(0, n)))) await once(out, 'drain');
    left -= n;
  }
  out.end();
  await once(out, 'finish');
}

/** Compiles a workload's Java sources with the host's javac (default-jdk-headless) into a runnable jar. */
async function compileJar(jar: NonNullable<Workload['jar']>, work: string, out: string): Promise<void> {
  const src = join(work, 'src');
  const classes = join(work, 'classes');
  await mkdir(src, { recursive: true });
  await mkdir(classes, { recursive: true });
  await mkdir(join(out, '..'), { recursive: true });
  const files: string[] = [];
  for (const [name, text] of Object.entries(jar.sources)) {
    await writeFile(join(src, name), text);
    files.push(join(src, name));
  }
  const run = async (cmd: string, args: string[]): Promise<void> => {
    const r = await exec(cmd, args, { timeoutMs: 5 * 60_000 }).catch((err: unknown) => {
      throw new FerryError(
        'FAILED_PRECONDITION',
        `${cmd} not found: the JVM workload compiles its jar on the host (install default-jdk-headless)`,
        { cause: err },
      );
    });
    if (r.code !== 0) throw new FerryError('INTERNAL', `${cmd} failed (${r.code}): ${(r.stderr || r.stdout).trim().slice(-500)}`);
  };
  await run('javac', ['--release', '17', '-d', classes, ...files]);
  await run('jar', ['--create', '--file', out, '--main-class', jar.mainClass, '-C', classes, '.']);
  await rm(work, { recursive: true, force: true });
}

function workloadKey(w: Workload): string {
  const desc = JSON.stringify({
    v: 1,
    rootfs: w.rootfs,
    appFiles: w.appFiles ?? {},
    big: w.bigFileBytes ?? 0,
    cmd: w.command,
    ...(w.dataFiles ? { data: w.dataFiles } : {}),
    ...(w.jar ? { jar: w.jar } : {}),
  });
  return `${w.id}-${createHash('sha256').update(desc).digest('hex').slice(0, 12)}`;
}

/** Builds (once, cached) the OCI layout of a workload's image. */
export async function prepareWorkloadImage(w: Workload, log?: Logger): Promise<BuiltImage> {
  const base = join(cacheDir(), 'bench-images', workloadKey(w));
  const meta = join(base, 'image.json');
  if (existsSync(meta)) return JSON.parse(await readFile(meta, 'utf8')) as BuiltImage;
  return withDirLock(`${base}.lock`, 30 * 60_000, async () => {
    if (existsSync(meta)) return JSON.parse(await readFile(meta, 'utf8')) as BuiltImage;
    await rm(base, { recursive: true, force: true });
    await mkdir(base, { recursive: true });
    log?.info({ workload: w.id }, 'building workload image');
    let rootfs: string;
    if (w.rootfs.kind === 'busybox') rootfs = await busyboxRootfs(join(base, 'rootfs'));
    else rootfs = await debootstrapRootfs({ include: w.rootfs.include, ...(log ? { log } : {}) });
    const app = join(base, 'app');
    await mkdir(app, { recursive: true });
    for (const [rel, text] of Object.entries(w.appFiles ?? {})) {
      await mkdir(join(app, rel, '..'), { recursive: true });
      await writeFile(join(app, rel), text);
    }
    if (w.bigFileBytes) {
      await mkdir(join(app, 'opt/data'), { recursive: true });
      await writeIncompressible(join(app, 'opt/data/unused.bin'), w.bigFileBytes);
    }
    for (const [rel, size] of Object.entries(w.dataFiles ?? {})) {
      await mkdir(join(app, rel, '..'), { recursive: true });
      await writeIncompressible(join(app, rel), size, `ferry-bench-${rel}`);
    }
    if (w.jar) await compileJar(w.jar, join(base, 'java'), join(app, w.jar.path));
    const built = await buildOciImage({
      layers: [rootfs, app],
      outDir: join(base, 'layout'),
      config: { Cmd: w.command },
      tag: w.id,
      gzipLevel: w.bigFileBytes || w.dataFiles ? 1 : 6,
    });
    // the app layer's source is no longer needed (the big file is inside the blob)
    await rm(app, { recursive: true, force: true });
    await writeFile(`${meta}.tmp`, JSON.stringify(built));
    await rename(`${meta}.tmp`, meta);
    return built;
  });
}
