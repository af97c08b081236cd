/**
 * @module storage/backend
 * Where blob bytes come from: a registry (ranged GETs through the shared registry client: token
 * auth with refresh, redirects, retries with backoff, a per-request timeout), a local directory of
 * blob files, or a P2P proxy (Dragonfly-style forward proxy) that falls back to the registry when
 * it fails — each fallback is counted.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { FerryError, systemClock, type Clock } from '../core/index.js';
import { silentLogger, type Logger } from '../observe/index.js';
import { cutAtGrid } from './fetch-plan.js';
import {
  CredentialChain,
  RegistryClient,
  collectRange,
  decodeBasicAuth,
  type CredentialSource,
  type Credentials,
} from '../remote/index.js';

/**
 * Called as a read's bytes arrive: `buf` is the buffer the read resolves with (or, after a
 * fallback, its replacement), its first `filled` bytes are final.
 */
export type ReadProgress = (buf: Buffer, filled: number) => void;

/** A source of compressed blob bytes. */
export interface Backend {
  readonly kind: string;
  /**
   * Exactly `length` bytes at `offset` of blob `blobId` (64 hex), or a FerryError. `progress`, when
   * the backend streams, is told as the bytes arrive (the device decodes chunks before the whole
   * range is in).
   */
  read(blobId: string, offset: number, length: number, signal: AbortSignal, progress?: ReadProgress): Promise<Buffer>;
  /** Reads that went to the fallback because the primary failed (P2P proxy backends). */
  fallbacks(): number;
  close(): Promise<void>;
}

function abortError(signal: AbortSignal, what: string): FerryError {
  const r = signal.reason as unknown;
  if (FerryError.is(r)) return r;
  return new FerryError('DEADLINE_EXCEEDED', `${what}: aborted`);
}

export interface RegistryBackendOptions {
  host: string;
  repo: string;
  insecure?: boolean;
  /** base64 `user:password` (nydusd `auth`; the mount request's credentials), replaceable with `setAuth` */
  auth?: string;
  /** Sources asked after the mount's own credentials (the daemon's credential chain: pull secrets, config.json). */
  credentialSources?: readonly CredentialSource[];
  /** The image, for the log line that says its credentials were refused. */
  image?: string;
  clock?: Clock;
  /** plain http or https; default: http for `insecure` and loopback hosts */
  scheme?: 'http' | 'https';
  /** per-request timeout (until headers and between body chunks), ms */
  timeoutMs?: number;
  /** extra attempts after a failed one */
  retries?: number;
  log?: Logger;
  client?: RegistryClient;
}

/** How often the "credentials refused" error is logged per mount. */
const REFUSED_LOG_EVERY_MS = 60_000;

/**
 * Ranged GETs on `/v2/<repo>/blobs/sha256:<id>`. Credentials: the mount's own (replaceable while
 * mounted), then the daemon's chain, then anonymous — asked at every token request, so an expired
 * token is renewed with whatever the chain holds then. A refusal (401/403) fails the read at once
 * as FAILED_PRECONDITION (EIO at the file system) with an error line naming the image, never a
 * retry loop.
 */
export class RegistryBackend implements Backend {
  readonly kind = 'registry';
  readonly host: string;
  readonly repo: string;
  readonly client: RegistryClient;
  private creds: Credentials | undefined;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly image: string | undefined;
  private lastRefusedLog = Number.NEGATIVE_INFINITY;

  constructor(o: RegistryBackendOptions) {
    this.host = o.host;
    this.repo = o.repo;
    this.creds = o.auth ? decodeBasicAuth(o.auth) : undefined;
    this.log = o.log ?? silentLogger();
    this.clock = o.clock ?? systemClock;
    this.image = o.image;
    const plain = o.scheme ? o.scheme === 'http' : o.insecure;
    const own: CredentialSource = { name: 'mount', get: async (h) => (h === o.host ? this.creds : undefined) };
    this.client =
      o.client ??
      new RegistryClient({
        ...(plain !== undefined ? { insecure: (h: string) => (h === o.host ? plain : /^(localhost|127\.|\[::1\])/.test(h)) } : {}),
        credentials: new CredentialChain([own, ...(o.credentialSources ?? [])], { log: this.log, clock: this.clock }),
        log: this.log,
        retries: o.retries ?? 2,
        timeoutMs: o.timeoutMs ?? 10_000,
        backoffMs: 100,
        clock: this.clock,
      });
  }

  /** Replaces the mount's own credentials (base64 `user:password`; undefined: none). */
  setAuth(auth: string | undefined): void {
    this.creds = auth ? decodeBasicAuth(auth) : undefined;
  }

  async read(blobId: string, offset: number, length: number, signal: AbortSignal, progress?: ReadProgress): Promise<Buffer> {
    const what = `blob ${blobId} [${offset}, +${length})`;
    try {
      return await this.client.readBlobRange(this.host, this.repo, `sha256:${blobId}`, offset, length, { signal, progress });
    } catch (err) {
      if (signal.aborted) throw abortError(signal, what);
      if (FerryError.is(err) && (err.code === 'UNAUTHENTICATED' || err.code === 'PERMISSION_DENIED')) {
        this.refused(err);
        // a read the registry refuses is an I/O error of the file (EIO), not a permission of it (EACCES)
        throw new FerryError('FAILED_PRECONDITION', `${this.image ?? `${this.host}/${this.repo}`}: ${err.message}`, { cause: err });
      }
      throw err;
    }
  }

  private refused(err: FerryError): void {
    const now = this.clock.now();
    if (now - this.lastRefusedLog < REFUSED_LOG_EVERY_MS) return;
    this.lastRefusedLog = now;
    this.log.error(
      { image: this.image ?? `${this.host}/${this.repo}`, registry: this.host, repository: this.repo, err: err.message },
      'registry refused the credentials of this image: its uncached reads fail with EIO until new credentials arrive ' +
        '(ferry pull --user, CRI PullImage auth, a pull secret or config.json)',
    );
  }

  fallbacks(): number {
    return 0;
  }
  async close(): Promise<void> {
    /* the client holds no sockets of its own */
  }
}

/** Blob files named by blob id (optionally `sha256:`-prefixed) in a directory. */
export class LocalFsBackend implements Backend {
  readonly kind = 'localfs';
  private readonly files = new Map<string, Promise<FileHandle>>();
  constructor(readonly dir: string) {}

  private handle(blobId: string): Promise<FileHandle> {
    let h = this.files.get(blobId);
    if (!h) {
      h = open(join(this.dir, blobId), 'r')
        .catch(async (err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOENT') throw err;
          return open(join(this.dir, `sha256:${blobId}`), 'r');
        })
        .catch((err: NodeJS.ErrnoException) => {
          this.files.delete(blobId);
          throw new FerryError(err.code === 'ENOENT' ? 'NOT_FOUND' : 'UNAVAILABLE', `blob ${blobId} in ${this.dir}: ${err.message}`, {
            cause: err,
          });
        });
      this.files.set(blobId, h);
    }
    return h;
  }

  async read(blobId: string, offset: number, length: number): Promise<Buffer> {
    const fh = await this.handle(blobId);
    const buf = Buffer.allocUnsafe(length);
    let n = 0;
    while (n < length) {
      const { bytesRead } = await fh.read(buf, n, length - n, offset + n);
      if (bytesRead === 0) throw new FerryError('DATA_LOSS', `blob ${blobId}: ends before ${offset + length} (read ${offset + n})`);
      n += bytesRead;
    }
    return buf;
  }

  fallbacks(): number {
    return 0;
  }
  async close(): Promise<void> {
    const all = [...this.files.values()];
    this.files.clear();
    for (const p of all)
      await p.then(
        (h) => h.close(),
        () => undefined,
      );
  }
}

export interface ProxyBackendOptions {
  /** the P2P proxy (`http://127.0.0.1:PORT`), spoken to as an HTTP forward proxy (absolute-URI GET) */
  proxyUrl: string;
  registry: RegistryBackend;
  /** go to the registry when the proxy fails (nydusd `proxy.fallback`, default true) */
  fallback?: boolean;
  timeoutMs?: number;
  log?: Logger;
  /**
   * the peers' range-task grid (`download.rangeGrid`; 0, the default = requests not cut): a read is
   * cut at its multiples and the pieces read in parallel, so every request is one grid-aligned
   * range task that other nodes' reads of the same cells share
   */
  rangeGrid?: number;
}

/**
 * Reads through a P2P proxy, cut at the peers' range grid (the pieces in parallel); on any proxy
 * failure a piece goes straight to the registry.
 */
export class ProxyBackend implements Backend {
  readonly kind = 'proxy';
  private nFallbacks = 0;
  private readonly proxy: URL;
  private readonly log: Logger;
  constructor(private readonly o: ProxyBackendOptions) {
    this.proxy = new URL(o.proxyUrl);
    this.log = (o.log ?? silentLogger()).child({ component: 'proxy-backend' });
  }

  async read(blobId: string, offset: number, length: number, signal: AbortSignal, progress?: ReadProgress): Promise<Buffer> {
    const cuts = cutAtGrid(offset, length, this.o.rangeGrid ?? 0);
    if (cuts.length === 1) return this.readCell(blobId, offset, length, signal, progress);
    const out = Buffer.allocUnsafe(length);
    const filled = cuts.map(() => 0);
    // progress: the prefix of `out` whose cells (in order) have arrived
    const took = (i: number, buf: Buffer, n: number): void => {
      if (n <= filled[i]!) return;
      buf.copy(out, cuts[i]![0] - offset + filled[i]!, filled[i]!, n);
      filled[i] = n;
      let prefix = 0;
      for (let k = 0; k < cuts.length; k++) {
        prefix += filled[k]!;
        if (filled[k]! < cuts[k]![1]) break;
      }
      progress?.(out, prefix);
    };
    await Promise.all(cuts.map(async ([o, l], i) => took(i, await this.readCell(blobId, o, l, signal, (buf, n) => took(i, buf, n)), l)));
    return out;
  }

  private async readCell(blobId: string, offset: number, length: number, signal: AbortSignal, progress?: ReadProgress): Promise<Buffer> {
    try {
      return await this.viaProxy(blobId, offset, length, signal, progress);
    } catch (err) {
      if (signal.aborted || this.o.fallback === false) throw err;
      this.nFallbacks++;
      this.log.warn({ err: (err as Error).message, blob: blobId }, 'p2p proxy failed, falling back to the registry');
      return this.o.registry.read(blobId, offset, length, signal, progress);
    }
  }

  private async viaProxy(blobId: string, offset: number, length: number, signal: AbortSignal, progress?: ReadProgress): Promise<Buffer> {
    const reg = this.o.registry;
    const scheme = reg.client.baseUrl(reg.host).startsWith('https') ? 'https' : 'http';
    if (scheme !== 'http') throw new FerryError('FAILED_PRECONDITION', 'the P2P proxy path is used for plain-http registries only');
    const auth = await reg.client.authorize(reg.host, reg.repo);
    const target = `http://${reg.host}/v2/${reg.repo}/blobs/sha256:${blobId}`;
    const what = `proxy ${this.proxy.host} ${target} [${offset}, +${length})`;
    const timeoutMs = this.o.timeoutMs ?? 10_000;
    return new Promise<Buffer>((resolve, reject) => {
      const req = httpRequest(
        {
          host: this.proxy.hostname,
          port: this.proxy.port || 80,
          method: 'GET',
          path: target,
          headers: { host: reg.host, range: `bytes=${offset}-${offset + length - 1}`, ...auth },
          signal,
        },
        (res) => {
          if (res.statusCode !== 206 && res.statusCode !== 200) {
            res.resume();
            reject(new FerryError('UNAVAILABLE', `${what}: status ${res.statusCode}`));
            return;
          }
          if (res.statusCode === 200 && offset !== 0) {
            res.resume();
            reject(new FerryError('UNAVAILABLE', `${what}: range ignored`));
            return;
          }
          res.setTimeout(timeoutMs, () => res.destroy(new FerryError('DEADLINE_EXCEEDED', `${what}: stalled`)));
          collectRange(res, length, what, progress).then(resolve, reject);
        },
      );
      req.setTimeout(timeoutMs, () => req.destroy(new FerryError('DEADLINE_EXCEEDED', `${what}: no response in ${timeoutMs} ms`)));
      req.on('error', (err) => reject(FerryError.is(err) ? err : new FerryError('UNAVAILABLE', `${what}: ${err.message}`, { cause: err })));
      req.end();
    });
  }

  fallbacks(): number {
    return this.nFallbacks;
  }
  async close(): Promise<void> {
    await this.o.registry.close();
  }
}
