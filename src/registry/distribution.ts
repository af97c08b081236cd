/**
 * @module registry/distribution
 * (Over 600 lines: the OCI Distribution API's handlers share its upload-session, range and auth checks.)
 * The OCI Distribution v1.1 API (`/v2/…`): pull, push (monolithic, single-POST, chunked, streamed,
 * mount), discovery (tags, catalog, referrers) and management (deletes). Every path value is
 * validated (names/names.ts) before it reaches storage; blob bytes stream straight between the
 * socket and the blob store.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomUUID, createHash } from 'node:crypto';
import { FerryError, parseDigest } from '../core/index.js';
import type { Logger } from '../observe/index.js';
import type { BlobStore } from '../content/index.js';
import { MediaType, manifestFacts, parseManifestDocument, type ManifestFacts } from '../oci/index.js';
import { OciError } from './errors.js';
import { checkDigest, checkName, isValidTag, projectOf } from './names.js';
import { readBody, sendJson } from '../httpx/index.js';
import { parseRange, queryOf, sendError } from './http-util.js';
import { MissingContentError, QuotaExceededError, type ManifestRecord, type RegistryMetadata } from './metadata/metadata.js';
import type { Action, Auth, Principal } from './auth.js';
import type { Webhooks } from './webhooks.js';
import type { AuditLog } from './audit.js';

export interface DistributionOptions {
  maxManifestSize: number;
  maxBlobSize: number;
  deleteEnabled: boolean;
  autoCreateProjects: boolean;
  service: string;
  /** Token realm URL; default `http://<request Host>/service/token` (Harbor derives it the same way). */
  realm?: string | undefined;
  /**
   * Blob GETs answer 307 to a presigned URL of the blob store valid this many seconds (distribution's
   * `redirect`), when the store can make one; 0 or absent serves the bytes.
   */
  redirectSeconds?: number;
}

/** The Bearer challenge's realm for a request. */
export function tokenRealm(opts: { realm?: string | undefined }, host: string | undefined): string {
  return opts.realm ?? `http://${host ?? 'localhost'}/service/token`;
}

export interface DistributionDeps {
  meta: RegistryMetadata;
  store: BlobStore;
  auth: Auth;
  webhooks: Webhooks;
  audit: AuditLog;
  log: Logger;
  counters: {
    blobBytesServed(n: number): void;
    blobBytesReceived(n: number): void;
  };
}

const API_VERSION = { 'docker-distribution-api-version': 'registry/2.0' };

type Route =
  | { kind: 'base' }
  | { kind: 'catalog' }
  | { kind: 'uploads'; name: string }
  | { kind: 'upload'; name: string; id: string }
  | { kind: 'blob'; name: string; digest: string }
  | { kind: 'manifest'; name: string; reference: string }
  | { kind: 'tags'; name: string }
  | { kind: 'referrers'; name: string; digest: string };

/** Matches a `/v2/…` path (raw, undecoded) to a route; undefined → 404. */
export function matchRoute(path: string): Route | undefined {
  if (path === '/v2/' || path === '/v2') return { kind: 'base' };
  if (path === '/v2/_catalog') return { kind: 'catalog' };
  let m = /^\/v2\/(.+)\/blobs\/uploads\/?$/.exec(path);
  if (m) return { kind: 'uploads', name: m[1]! };
  m = /^\/v2\/(.+)\/blobs\/uploads\/([^/]+)$/.exec(path);
  if (m) return { kind: 'upload', name: m[1]!, id: m[2]! };
  m = /^\/v2\/(.+)\/blobs\/([^/]+)$/.exec(path);
  if (m) return { kind: 'blob', name: m[1]!, digest: m[2]! };
  m = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(path);
  if (m) return { kind: 'manifest', name: m[1]!, reference: m[2]! };
  m = /^\/v2\/(.+)\/tags\/list$/.exec(path);
  if (m) return { kind: 'tags', name: m[1]! };
  m = /^\/v2\/(.+)\/referrers\/([^/]+)$/.exec(path);
  if (m) return { kind: 'referrers', name: m[1]!, digest: m[2]! };
  return undefined;
}

const UPLOAD_ID = /^[A-Za-z0-9-]{8,64}$/;
/** Blobs up to this size are served from one buffer. */
const SMALL_BLOB = 4 * 1024 * 1024;

function acceptsType(accept: string | undefined, type: string): boolean {
  if (!accept) return true;
  const types = accept
    .split(',')
    .map((s) => s.split(';')[0]!.trim().toLowerCase())
    .filter(Boolean);
  if (types.length === 0) return true;
  return types.includes(type) || types.includes('*/*') || types.includes('application/*');
}

function explicitlyAccepts(accept: string | undefined, type: string): boolean {
  if (!accept) return false;
  return accept.split(',').some((s) => s.split(';')[0]!.trim().toLowerCase() === type);
}

/** The `/v2` API. */
export class DistributionApi {
  readonly #d: DistributionDeps;
  readonly #o: DistributionOptions;

  constructor(deps: DistributionDeps, opts: DistributionOptions) {
    this.#d = deps;
    this.#o = opts;
  }

  /** Handles a `/v2` request; `url` is parsed, `principal` resolved by the caller. */
  async handle(req: IncomingMessage, res: ServerResponse, url: URL, principal: Principal): Promise<void> {
    for (const [k, v] of Object.entries(API_VERSION)) res.setHeader(k, v);
    const route = matchRoute(url.pathname);
    if (!route) throw new OciError('NAME_UNKNOWN', `no route for ${url.pathname.slice(0, 200)}`, { status: 404 });
    const method = req.method ?? 'GET';
    if (route.kind === 'base') {
      if (method !== 'GET' && method !== 'HEAD') throw new OciError('UNSUPPORTED', `${method} not allowed`);
      if (principal.kind === 'anonymous') throw this.#challenge(req, undefined);
      sendJson(res, 200, {});
      return;
    }
    if (route.kind === 'catalog') {
      if (!this.#d.auth.mayListCatalog(principal)) {
        throw principal.kind === 'anonymous' || principal.kind === 'token'
          ? this.#challenge(req, 'registry:catalog:*')
          : new OciError('DENIED', 'listing the catalog needs the system admin');
      }
      await this.#catalog(res, url);
      return;
    }
    const name = checkName(route.name);
    const action: Action = method === 'GET' || method === 'HEAD' ? 'pull' : method === 'DELETE' ? 'delete' : 'push';
    await this.#authorize(req, principal, name, action);
    if (action === 'push') await this.#ensureProject(name, principal);
    switch (route.kind) {
      case 'blob':
        if (method === 'GET' || method === 'HEAD') return this.#getBlob(req, res, name, route.digest, method === 'HEAD');
        if (method === 'DELETE') return this.#deleteBlob(res, name, route.digest);
        break;
      case 'uploads':
        if (method === 'POST') return this.#startUpload(req, res, name, principal);
        break;
      case 'upload':
        if (!UPLOAD_ID.test(route.id)) throw new OciError('BLOB_UPLOAD_UNKNOWN', 'unknown upload');
        if (method === 'PATCH') return this.#patchUpload(req, res, name, route.id);
        if (method === 'PUT') return this.#putUpload(req, res, name, route.id, url);
        if (method === 'GET') return this.#uploadStatus(res, name, route.id);
        if (method === 'DELETE') return this.#cancelUpload(res, name, route.id);
        break;
      case 'manifest':
        if (method === 'GET' || method === 'HEAD') return this.#getManifest(req, res, name, route.reference, method === 'HEAD', principal);
        if (method === 'PUT') return this.#putManifest(req, res, name, route.reference, principal);
        if (method === 'DELETE') return this.#deleteManifest(res, name, route.reference, principal);
        break;
      case 'tags':
        if (method === 'GET') return this.#tags(res, name, url);
        break;
      case 'referrers':
        if (method === 'GET') return this.#referrers(res, name, route.digest, url);
        break;
    }
    throw new OciError('UNSUPPORTED', `${method} is not supported here`);
  }

  /** The 401 challenge for this request (Bearer, or Basic when Basic credentials were sent). */
  #challenge(req: IncomingMessage, scope: string | undefined, message = 'authentication required'): OciError {
    const auth = req.headers.authorization ?? '';
    const header = auth.toLowerCase().startsWith('basic ')
      ? 'Basic realm="harbor"'
      : `Bearer realm="${tokenRealm(this.#o, req.headers.host)}",service="${this.#o.service}"${scope ? `,scope="${scope}"` : ''}`;
    const err = new OciError(
      'UNAUTHORIZED',
      message,
      scope
        ? { detail: [{ Type: scope.split(':')[0], Name: scope.split(':').slice(1, -1).join(':'), Action: scope.split(':').pop() }] }
        : {},
    );
    (err as OciError & { challenge?: string }).challenge = header;
    return err;
  }

  async #authorize(req: IncomingMessage, p: Principal, name: string, action: Action): Promise<void> {
    const allowed = await this.#d.auth.allowed(p, name);
    if (allowed.has(action)) return;
    const actions = action === 'pull' ? 'pull' : action === 'push' ? 'pull,push' : 'delete';
    if (p.kind === 'anonymous' || p.kind === 'token')
      throw this.#challenge(
        req,
        `repository:${name}:${actions}`,
        p.kind === 'anonymous' ? 'authentication required' : 'insufficient scope',
      );
    throw new OciError('DENIED', `${p.name} may not ${action} ${name}`);
  }

  async #ensureProject(name: string, p: Principal): Promise<void> {
    const project = projectOf(name);
    if (await this.#d.meta.getProject(project)) return;
    const admin = (p.kind === 'user' && p.sysadmin) || (p.kind === 'token' && (await this.#d.meta.getUser(p.name))?.sysadmin === true);
    if (this.#o.autoCreateProjects && admin) {
      await this.#d.meta.ensureProject(project, false, p.name || 'admin');
      this.#d.log.info({ project }, 'project created on push');
      return;
    }
    throw new OciError('NAME_UNKNOWN', `project ${project} not found`);
  }

  // ---- blobs ----

  async #getBlob(req: IncomingMessage, res: ServerResponse, name: string, rawDigest: string, head: boolean): Promise<void> {
    const digest = checkDigest(rawDigest);
    const size = await this.#d.meta.blobInRepo(name, digest);
    if (size === undefined) throw new OciError('BLOB_UNKNOWN', `blob ${digest} unknown to ${name}`, { detail: { digest } });
    const range = parseRange(req.headers.range, size);
    const headers: Record<string, string | number> = {
      'content-type': 'application/octet-stream',
      'docker-content-digest': digest,
      etag: `"${digest}"`,
      'accept-ranges': 'bytes',
      'cache-control': 'max-age=31536000',
    };
    if (range === 'invalid') {
      throw new OciError('RANGE_INVALID', `range ${req.headers.range} not satisfiable for ${size} bytes`, { status: 416 });
    }
    const length = range ? range.end - range.start + 1 : size;
    headers['content-length'] = length;
    if (range) headers['content-range'] = `bytes ${range.start}-${range.end}/${size}`;
    if (head) {
      res.writeHead(range ? 206 : 200, headers);
      res.end();
      return;
    }
    if (this.#o.redirectSeconds && this.#d.store.presignedUrl) {
      // the client fetches from the object store (with its Range header); this replica moves no bytes
      const location = await this.#d.store.presignedUrl(digest, this.#o.redirectSeconds);
      res.writeHead(307, { location, 'docker-content-digest': digest, 'content-length': 0 });
      res.end();
      return;
    }
    const want = range ?? (size > 0 ? { start: 0, end: size - 1 } : undefined);
    if (this.#d.store.readBuffer && length <= SMALL_BLOB) {
      // Small blobs: one positional read and one socket write, no stream machinery.
      const buf = await missingAsBlobUnknown(digest, this.#d.store.readBuffer(digest, want));
      res.writeHead(range ? 206 : 200, headers);
      this.#d.counters.blobBytesServed(buf.length);
      res.end(buf);
      return;
    }
    const stream = await missingAsBlobUnknown(digest, this.#d.store.read(digest, want));
    if (res.destroyed) {
      // The client left while the read was being opened: 'close' has fired already.
      stream.destroy();
      return;
    }
    res.writeHead(range ? 206 : 200, headers);
    // Counted as the bytes leave the store, so the counter is current when the client has them.
    stream.on('data', (c: Buffer) => this.#d.counters.blobBytesServed(c.length));
    // pipe + explicit teardown: cheaper per request than stream.pipeline's bookkeeping.
    await new Promise<void>((resolve, reject) => {
      stream.once('error', (err) => {
        res.destroy(err);
        reject(err);
      });
      res.once('close', () => {
        if (!res.writableFinished) stream.destroy();
        resolve();
      });
      stream.pipe(res);
    });
  }

  async #deleteBlob(res: ServerResponse, name: string, rawDigest: string): Promise<void> {
    if (!this.#o.deleteEnabled) throw new OciError('UNSUPPORTED', 'deletion is disabled');
    const digest = checkDigest(rawDigest);
    if (!(await this.#d.meta.unlinkBlob(name, digest))) throw new OciError('BLOB_UNKNOWN', `blob ${digest} unknown to ${name}`);
    res.writeHead(202, { 'content-length': 0 });
    res.end();
  }

  // ---- uploads ----

  #uploadHeaders(name: string, id: string, size: number): Record<string, string | number> {
    return {
      location: `/v2/${name}/blobs/uploads/${id}`,
      range: `0-${Math.max(0, size - 1)}`,
      'docker-upload-uuid': id,
      'content-length': 0,
    };
  }

  /**
   * Upload ids are `<uuid>-<12 hex of sha256(name)>`: the session belongs to the repository it was
   * opened in without a metadata write per upload (the bytes live in the blob store's upload area).
   */
  #ownerTag(name: string): string {
    return createHash('sha256').update(name).digest('hex').slice(0, 12);
  }

  async #newUpload(name: string): Promise<string> {
    const id = `${randomUUID()}-${this.#ownerTag(name)}`;
    await this.#d.store.startUpload(id);
    return id;
  }

  async #startUpload(req: IncomingMessage, res: ServerResponse, name: string, p: Principal): Promise<void> {
    const q = queryOf(new URL(req.url ?? '/', 'http://x'));
    const mount = q.get('mount')?.[0];
    const from = q.get('from')?.[0];
    if (mount !== undefined) {
      const digest = checkDigest(mount);
      if (from !== undefined && from !== name) {
        let fromName: string | undefined;
        try {
          fromName = checkName(from);
        } catch {
          fromName = undefined;
        }
        const mayPull = fromName !== undefined && (await this.#d.auth.allowed(p, fromName)).has('pull');
        if (fromName && mayPull && (await this.#d.meta.blobInRepo(fromName, digest)) !== undefined) {
          const linked = await this.#d.meta.linkBlob(name, digest).catch((err: unknown) => {
            if (err instanceof QuotaExceededError) throw new OciError('DENIED', err.message, { cause: err });
            throw err;
          });
          if (linked) {
            res.writeHead(201, { location: `/v2/${name}/blobs/${digest}`, 'docker-content-digest': digest, 'content-length': 0 });
            res.end();
            return;
          }
        }
      }
      // Not mountable: a normal upload session (202), as the spec allows.
    }
    const digestParam = q.get('digest')?.[0];
    const id = await this.#newUpload(name);
    if (digestParam !== undefined && mount === undefined) {
      const digest = checkDigest(digestParam);
      await this.#append(req, id, 0, true);
      await this.#commit(res, name, id, digest);
      return;
    }
    req.resume();
    res.writeHead(202, this.#uploadHeaders(name, id, 0));
    res.end();
  }

  async #sessionSize(name: string, id: string): Promise<number> {
    if (!id.endsWith(`-${this.#ownerTag(name)}`)) throw new OciError('BLOB_UPLOAD_UNKNOWN', `upload ${id} unknown to ${name}`);
    try {
      return await this.#d.store.uploadSize(id);
    } catch (err) {
      if (FerryError.hasCode(err, 'NOT_FOUND')) throw new OciError('BLOB_UPLOAD_UNKNOWN', `upload ${id} unknown`);
      throw err;
    }
  }

  /**
   * The chunk a PATCH (or a PUT carrying the last chunk) declares in Content-Range ("a-b",
   * "bytes a-b/total", or the "bytes=a-b" some clients send), checked against the session's `size`
   * as the spec and the reference registry do: an unparseable Content-Range is 400, an inverted
   * range or one that does not start where the upload is (out of order) is 416, and a
   * Content-Length other than the range's length is 400 SIZE_INVALID. Undefined when the request
   * has no Content-Range (a streamed upload).
   */
  #chunkRange(req: IncomingMessage, size: number): { start: number; end: number } | undefined {
    const h = req.headers['content-range'];
    if (h === undefined) return undefined;
    const m = /^(?:bytes[ =])?(\d+)-(\d+)(?:\/(?:\d+|\*))?$/.exec(h.trim());
    if (!m) throw new OciError('BLOB_UPLOAD_INVALID', `invalid Content-Range ${JSON.stringify(h.slice(0, 100))}`);
    const start = Number(m[1]);
    const end = Number(m[2]);
    if (end < start)
      throw new OciError('BLOB_UPLOAD_INVALID', `invalid Content-Range ${JSON.stringify(h)}: ends before it starts`, { status: 416 });
    if (start !== size) {
      throw new OciError('BLOB_UPLOAD_INVALID', `chunk starts at ${start}, upload is at ${size}`, { status: 416 });
    }
    const len = req.headers['content-length'];
    if (len !== undefined && Number(len) !== end - start + 1) {
      throw new OciError('SIZE_INVALID', `Content-Length ${len} does not match Content-Range ${start}-${end}`);
    }
    return { start, end };
  }

  /** Appends the request body; `last`: the commit follows in this request (monolithic PUT, single POST). */
  async #append(req: IncomingMessage, id: string, offset: number, last: boolean): Promise<number> {
    const limit = this.#o.maxBlobSize > 0 ? this.#o.maxBlobSize : undefined;
    const declared = req.headers['content-length'];
    if (limit !== undefined && declared !== undefined && offset + Number(declared) > limit) {
      // Refused before a byte is read (the connection is closed after the answer).
      throw new OciError('SIZE_TOO_LARGE', `upload of ${offset} + ${declared} bytes exceeds the limit of ${limit} bytes`);
    }
    try {
      const before = offset;
      const after = await this.#d.store.append(id, offset, req, { last, ...(limit === undefined ? {} : { limit }) });
      this.#d.counters.blobBytesReceived(after - before);
      return after;
    } catch (err) {
      if (FerryError.hasCode(err, 'FAILED_PRECONDITION')) {
        throw new OciError('BLOB_UPLOAD_INVALID', (err as Error).message, { status: 416 });
      }
      if (FerryError.hasCode(err, 'RESOURCE_EXHAUSTED')) {
        throw new OciError('SIZE_TOO_LARGE', (err as Error).message);
      }
      throw err;
    }
  }

  async #patchUpload(req: IncomingMessage, res: ServerResponse, name: string, id: string): Promise<void> {
    const size = await this.#sessionSize(name, id);
    const range = this.#chunkRange(req, size);
    const after = await this.#append(req, id, size, false);
    if (range && after !== range.end + 1) {
      throw new OciError('SIZE_INVALID', `received ${after - size} bytes, Content-Range promised ${range.end - range.start + 1}`);
    }
    res.writeHead(202, this.#uploadHeaders(name, id, after));
    res.end();
  }

  async #putUpload(req: IncomingMessage, res: ServerResponse, name: string, id: string, url: URL): Promise<void> {
    let size = await this.#sessionSize(name, id);
    const digestParam = url.searchParams.get('digest');
    if (digestParam === null) throw new OciError('DIGEST_INVALID', 'digest parameter missing');
    const digest = checkDigest(digestParam);
    const range = this.#chunkRange(req, size);
    const hasBody =
      (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0') ||
      req.headers['transfer-encoding'] !== undefined;
    if (hasBody) size = await this.#append(req, id, size, true);
    else req.resume();
    if (range && size !== range.end + 1) {
      throw new OciError('SIZE_INVALID', `upload has ${size} bytes, Content-Range promised ${range.end + 1}`);
    }
    await this.#commit(res, name, id, digest);
  }

  async #commit(res: ServerResponse, name: string, id: string, digest: string): Promise<void> {
    const size = await this.#d.store.uploadSize(id);
    try {
      await this.#d.store.commitUpload(id, digest, {
        critical: async <T>(publish: () => Promise<T>): Promise<T> => {
          let out: T | undefined;
          await this.#d.meta.commitBlob(name, digest, size, async () => {
            out = await publish();
          });
          return out as T;
        },
      });
    } catch (err) {
      if (FerryError.hasCode(err, 'DATA_LOSS')) {
        throw new OciError('DIGEST_INVALID', (err as Error).message, { detail: { digest } });
      }
      if (err instanceof QuotaExceededError) {
        // the bytes never became a blob: the session is of no further use
        await this.#d.store.abortUpload(id).catch(() => undefined);
        throw new OciError('DENIED', err.message, { cause: err });
      }
      throw err;
    }
    res.writeHead(201, { location: `/v2/${name}/blobs/${digest}`, 'docker-content-digest': digest, 'content-length': 0 });
    res.end();
  }

  async #uploadStatus(res: ServerResponse, name: string, id: string): Promise<void> {
    const size = await this.#sessionSize(name, id);
    res.writeHead(204, this.#uploadHeaders(name, id, size));
    res.end();
  }

  async #cancelUpload(res: ServerResponse, name: string, id: string): Promise<void> {
    await this.#sessionSize(name, id);
    await this.#d.store.abortUpload(id);
    res.writeHead(204, { 'content-length': 0 });
    res.end();
  }

  // ---- manifests ----

  async #resolve(name: string, reference: string, forRead: boolean): Promise<{ digest: string; tag?: string }> {
    if (reference.includes(':')) {
      return { digest: checkDigest(reference) };
    }
    if (!isValidTag(reference)) {
      if (forRead) throw new OciError('MANIFEST_UNKNOWN', `manifest ${reference.slice(0, 130)} unknown`);
      throw new OciError('TAG_INVALID', `invalid tag ${JSON.stringify(reference.slice(0, 130))}`);
    }
    const digest = await this.#d.meta.resolveTag(name, reference);
    if (!digest) throw new OciError('MANIFEST_UNKNOWN', `manifest ${name}:${reference} unknown`, { detail: { Tag: reference } });
    return { digest, tag: reference };
  }

  async #getManifest(
    req: IncomingMessage,
    res: ServerResponse,
    name: string,
    reference: string,
    head: boolean,
    p: Principal,
  ): Promise<void> {
    const { digest, tag } = await this.#resolve(name, reference, true);
    let rec = await this.#d.meta.getManifest(name, digest);
    if (!rec) throw new OciError('MANIFEST_UNKNOWN', `manifest ${digest} unknown to ${name}`);
    const accept = [req.headers.accept].flat().filter(Boolean).join(',') || undefined;
    if (tag !== undefined && !acceptsType(accept, rec.mediaType)) {
      // Docker's downgrade: a manifest list to a client that only knows schema2 gets the linux/amd64 image.
      if (rec.mediaType === MediaType.DOCKER_MANIFEST_LIST && explicitlyAccepts(accept, MediaType.DOCKER_MANIFEST)) {
        const parsed = parseManifest(rec.body, rec.mediaType);
        const child = parsed.children.find((c) => c.platform?.os === 'linux' && c.platform.architecture === 'amd64');
        const childRec = child ? await this.#d.meta.getManifest(name, child.digest) : undefined;
        if (!childRec) throw new OciError('MANIFEST_UNKNOWN', 'manifest list has no linux/amd64 image for a schema2-only client');
        rec = childRec;
      } else {
        throw new OciError('MANIFEST_UNKNOWN', `${rec.mediaType} found, but the Accept header does not allow it`);
      }
    }
    const etag = `"${rec.digest}"`;
    const headers = {
      'content-type': rec.mediaType,
      'content-length': rec.size,
      'docker-content-digest': rec.digest,
      etag,
    };
    const inm = req.headers['if-none-match'];
    if (
      inm
        ?.split(',')
        .map((s) => s.trim())
        .includes(etag)
    ) {
      res.writeHead(304, { etag, 'docker-content-digest': rec.digest });
      res.end();
      return;
    }
    res.writeHead(200, headers);
    if (head) {
      res.end();
      return;
    }
    res.end(rec.body);
    await this.#d.meta.countPull(name);
    await this.#d.audit.recordAll(await this.#d.audit.artifact('pull', name, tag ?? rec.digest, p.name));
    const deliveries = await this.#d.webhooks.deliveriesFor({
      type: 'PULL_ARTIFACT',
      repo: name,
      digest: rec.digest,
      tag: tag ?? rec.digest,
      operator: p.name,
    });
    if (deliveries.length) {
      await this.#d.meta.enqueueDeliveries(deliveries);
      this.#d.webhooks.kick();
    }
  }

  async #putManifest(req: IncomingMessage, res: ServerResponse, name: string, reference: string, p: Principal): Promise<void> {
    let tag: string | undefined;
    let wanted: string | undefined;
    if (reference.includes(':')) wanted = checkDigest(reference);
    else if (isValidTag(reference)) tag = reference;
    else throw new OciError('TAG_INVALID', `invalid tag ${JSON.stringify(reference.slice(0, 130))}`);
    const body = await readBody(req, this.#o.maxManifestSize);
    const algorithm = wanted ? parseDigest(wanted).algorithm : 'sha256';
    const digest = `${algorithm}:${createHash(algorithm).update(body).digest('hex')}`;
    if (wanted && wanted !== digest) {
      throw new OciError('DIGEST_INVALID', `manifest digest ${digest} does not match ${wanted}`, { detail: { digest: wanted } });
    }
    const parsed = parseManifest(body, req.headers['content-type']);
    const rec: ManifestRecord = {
      repo: name,
      digest,
      mediaType: parsed.mediaType,
      size: body.length,
      body,
      artifactType: parsed.artifactType,
      subject: parsed.subject,
      annotations: parsed.annotations,
      createdAt: Date.now(),
    };
    const outbox = await this.#d.webhooks.outboxFor({
      type: 'PUSH_ARTIFACT',
      repo: name,
      digest,
      tag: tag ?? digest,
      operator: p.name,
      at: rec.createdAt,
      untagged: tag === undefined && !parsed.isIndex,
      children: parsed.manifests,
    });
    outbox.audit = await this.#d.audit.artifact('create', name, tag ?? digest, p.name);
    try {
      await this.#d.meta.putManifest(rec, tag, { blobs: parsed.blobs, manifests: parsed.manifests }, outbox);
    } catch (err) {
      if (err instanceof MissingContentError) {
        throw new OciError('MANIFEST_BLOB_UNKNOWN', err.message, { detail: err.missing.map((d) => ({ digest: d })), cause: err });
      }
      if (err instanceof QuotaExceededError) throw new OciError('DENIED', err.message, { cause: err });
      throw err;
    }
    this.#d.webhooks.kick();
    this.#d.log.info({ repo: name, digest, tag, mediaType: parsed.mediaType, operator: p.name }, 'manifest pushed');
    const headers: Record<string, string | number> = {
      location: `/v2/${name}/manifests/${digest}`,
      'docker-content-digest': digest,
      'content-length': 0,
    };
    if (parsed.subject) headers['oci-subject'] = parsed.subject;
    res.writeHead(201, headers);
    res.end();
  }

  async #deleteManifest(res: ServerResponse, name: string, reference: string, p: Principal): Promise<void> {
    if (!this.#o.deleteEnabled) throw new OciError('UNSUPPORTED', 'deletion is disabled');
    if (reference.includes(':')) {
      const digest = checkDigest(reference);
      const ev = await this.#d.webhooks.deliveriesFor({ type: 'DELETE_ARTIFACT', repo: name, digest, tag: digest, operator: p.name });
      const audit = await this.#d.audit.artifact('delete', name, digest, p.name);
      if (!(await this.#d.meta.deleteManifest(name, digest, { enqueue: ev, audit })))
        throw new OciError('MANIFEST_UNKNOWN', `manifest ${digest} unknown to ${name}`);
    } else {
      if (!isValidTag(reference)) throw new OciError('TAG_INVALID', `invalid tag ${JSON.stringify(reference.slice(0, 130))}`);
      const digest = await this.#d.meta.resolveTag(name, reference);
      if (!digest) throw new OciError('MANIFEST_UNKNOWN', `tag ${reference} unknown to ${name}`);
      const ev = await this.#d.webhooks.deliveriesFor({ type: 'DELETE_ARTIFACT', repo: name, digest, tag: reference, operator: p.name });
      const audit = await this.#d.audit.artifact('delete', name, reference, p.name);
      if (!(await this.#d.meta.deleteTag(name, reference, { enqueue: ev, audit })))
        throw new OciError('MANIFEST_UNKNOWN', `tag ${reference} unknown to ${name}`);
    }
    this.#d.webhooks.kick();
    res.writeHead(202, { 'content-length': 0 });
    res.end();
  }

  // ---- discovery ----

  #pageParams(url: URL): { n?: number; last?: string } {
    const nRaw = url.searchParams.get('n');
    const last = url.searchParams.get('last') ?? undefined;
    let n: number | undefined;
    if (nRaw !== null && nRaw !== '') {
      if (!/^\d+$/.test(nRaw)) throw new OciError('PAGINATION_NUMBER_INVALID', `invalid n ${JSON.stringify(nRaw)}`);
      n = Math.min(Number(nRaw), 100_000);
    }
    return { ...(n !== undefined ? { n } : {}), ...(last !== undefined ? { last } : {}) };
  }

  async #tags(res: ServerResponse, name: string, url: URL): Promise<void> {
    if (!(await this.#d.meta.repositoryExists(name))) throw new OciError('NAME_UNKNOWN', `repository ${name} unknown`);
    const { n, last } = this.#pageParams(url);
    if (n === 0) {
      sendJson(res, 200, { name, tags: [] });
      return;
    }
    const rows = await this.#d.meta.listTags(name, { ...(n !== undefined ? { n: n + 1 } : {}), ...(last !== undefined ? { last } : {}) });
    const headers: Record<string, string> = {};
    let tags = rows;
    if (n !== undefined && rows.length > n) {
      tags = rows.slice(0, n);
      headers.link = `</v2/${name}/tags/list?n=${n}&last=${encodeURIComponent(tags[tags.length - 1]!)}>; rel="next"`;
    }
    sendJson(res, 200, { name, tags }, headers);
  }

  async #catalog(res: ServerResponse, url: URL): Promise<void> {
    const { n, last } = this.#pageParams(url);
    if (n === 0) {
      sendJson(res, 200, { repositories: [] });
      return;
    }
    const rows = await this.#d.meta.listRepositories({ ...(n !== undefined ? { n: n + 1 } : {}), ...(last !== undefined ? { last } : {}) });
    const headers: Record<string, string> = {};
    let repos = rows;
    if (n !== undefined && rows.length > n) {
      repos = rows.slice(0, n);
      headers.link = `</v2/_catalog?n=${n}&last=${encodeURIComponent(repos[repos.length - 1]!)}>; rel="next"`;
    }
    sendJson(res, 200, { repositories: repos }, headers);
  }

  async #referrers(res: ServerResponse, name: string, rawDigest: string, url: URL): Promise<void> {
    const digest = checkDigest(rawDigest);
    const artifactType = url.searchParams.get('artifactType') ?? undefined;
    const rows = await this.#d.meta.referrers(name, digest, artifactType);
    const body = JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OCI_INDEX,
      manifests: rows.map((r) => ({
        mediaType: r.mediaType,
        digest: r.digest,
        size: r.size,
        ...(r.artifactType !== undefined ? { artifactType: r.artifactType } : {}),
        ...(r.annotations !== undefined ? { annotations: r.annotations } : {}),
      })),
    });
    const headers: Record<string, string | number> = { 'content-type': MediaType.OCI_INDEX, 'content-length': Buffer.byteLength(body) };
    if (artifactType !== undefined) headers['oci-filters-applied'] = 'artifactType';
    res.writeHead(200, headers);
    res.end(body);
  }
}

export { sendError };

/**
 * Validates a manifest pushed with Content-Type `contentType` (oci/parse) and derives what the
 * registry checks and indexes; a malformed one is the OCI error MANIFEST_INVALID.
 */
export function parseManifest(body: Buffer, contentType: string | undefined): ManifestFacts {
  try {
    return manifestFacts(parseManifestDocument(body, contentType));
  } catch (err) {
    if (FerryError.hasCode(err, 'INVALID_ARGUMENT')) throw new OciError('MANIFEST_INVALID', (err as Error).message, { cause: err });
    throw err;
  }
}

/** A blob the metadata lists but the store has lost is the OCI error BLOB_UNKNOWN, not a 500. */
async function missingAsBlobUnknown<T>(digest: string, p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    if (FerryError.hasCode(err, 'NOT_FOUND')) throw new OciError('BLOB_UNKNOWN', `blob ${digest} is missing from storage`);
    throw err;
  }
}
