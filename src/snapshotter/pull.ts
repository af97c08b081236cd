/**
 * @module snapshotter/pull
 * `ferry pull`: what `ctr-remote images rpull` does, through containerd's gRPC API. Manifest and
 * config go into containerd's content store (with the GC labels containerd's own pull writes),
 * the image record is created, and every layer is unpacked through the chosen snapshotter via
 * containerd's snapshots service: Prepare carries the remote-snapshot labels (CRI's `cri.*` set,
 * the layer's own `containerd.io/snapshot/*` annotations, and `ferry.plain-http`), so a lazy
 * snapshotter answers ALREADY_EXISTS and nothing is downloaded; otherwise the layer blob is
 * fetched into the content store, applied with the diff service and committed under its chain
 * id. All of it under a lease, so containerd's GC cannot collect half a pull.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Transform } from 'node:stream';
import { FerryError } from '../core/index.js';
import {
  MediaType,
  NYDUS_CONFIG_MEDIA_TYPE,
  NydusAnnotation,
  parseImageConfig,
  parsePlatform,
  type Descriptor,
  type ImageConfig,
  type ImageManifest,
} from '../oci/index.js';
import { silentLogger, type Logger } from '../observe/index.js';
import {
  formatReference,
  parseReference,
  parseUserPassword,
  RegistryClient,
  type CredentialProvider,
  type ImageReference,
} from '../remote/index.js';
// containerd/ (grpc-js, proto loading: ~0.1–0.2 s) loads while the registry answers
import type { ContentDescriptor, GrpcConnection } from '../containerd/index.js';
import { Label, MAX_LABEL_BYTES } from './labels.js';
import type { PulledLayer, PullResult } from './protocol.js';

/** Largest image config read from the registry. */
const MAX_CONFIG_BYTES = 16 << 20;

export interface PullOptions {
  /** containerd's gRPC socket. */
  address: string;
  namespace?: string;
  snapshotter?: string;
  ref: string;
  plainHttp?: boolean;
  /** `user:password` for the registry (explicit: used alone, no fall-through). */
  user?: string;
  /** Without `user`: the credential chain to ask (default: config.json through the registry client's default chain). */
  credentials?: CredentialProvider;
  platform?: string;
  log?: Logger;
  /** Called with one line per step (CLI progress). */
  progress?: (line: string) => void;
  /**
   * Called as soon as the manifest is known — the config is still on its way (`config` settles when
   * it arrives or fails) — before anything is written to containerd: the snapshotter serving a pull
   * starts the lazy mount's bootstrap fetch here, alongside the config and ahead of containerd's
   * Prepares.
   */
  onResolved?: (ref: ImageReference, manifestDigest: string, manifest: ImageManifest, config: Promise<ImageConfig>) => void;
  /** An open connection to containerd at `address` to use (and leave open) instead of a new one. */
  connection?: GrpcConnection;
}

export function chainIds(diffIds: string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) {
    const prev = out[out.length - 1];
    out.push(prev === undefined ? d : `sha256:${createHash('sha256').update(`${prev} ${d}`).digest('hex')}`);
  }
  return out;
}

/** This and the following layer digests, as many as fit containerd's 4096-byte label limit. */
export function imageLayersLabel(digests: string[]): string {
  let v = '';
  for (const d of digests) {
    const next = v ? `${v},${d}` : d;
    if (Buffer.byteLength(Label.CRI_IMAGE_LAYERS) + Buffer.byteLength(next) > MAX_LABEL_BYTES) break;
    v = next;
  }
  return v;
}

function desc(d: Descriptor): ContentDescriptor {
  return { mediaType: d.mediaType, digest: d.digest, size: d.size };
}

/**
 * The manifest containerd's image record points at. The Nydus manifest of a merged index (nydusify's
 * merge-platform, `ferry build --both`, accel's merge_manifest) declares its config as
 * `application/vnd.nydus.image.config.v1+json`, so that plain containerd picks the index's OCI entry;
 * but containerd's `ctr run` and CRI refuse that media type as an image config ("unknown image config
 * media type"). For such a manifest the record gets a local copy whose config descriptor says OCI
 * image config — same config bytes, same layers, hence the same rootfs and chain ids; the registry's
 * digest stays in the labels the snapshotter reads (it fetches by it). Any other manifest is recorded as
 * fetched.
 */
export function recordedManifest(
  manifest: ImageManifest,
  fetched: { mediaType: string; digest: string; body: Buffer },
): { mediaType: string; digest: string; body: Buffer } {
  if (manifest.config.mediaType !== NYDUS_CONFIG_MEDIA_TYPE) return fetched;
  const body = Buffer.from(JSON.stringify({ ...manifest, config: { ...manifest.config, mediaType: MediaType.OCI_CONFIG } }));
  return { mediaType: MediaType.OCI_MANIFEST, digest: `sha256:${createHash('sha256').update(body).digest('hex')}`, body };
}

export async function pullImage(o: PullOptions): Promise<PullResult> {
  const grpcModules = import('../containerd/index.js').then((c) => {
    c.serviceConstructor('snapshots'); // parses the .proto files once
    return c;
  });
  grpcModules.catch(() => undefined); // awaited below; no unhandled rejection if the registry fails first
  const t0 = Date.now();
  const log = (o.log ?? silentLogger()).child({ component: 'pull' });
  const say = (line: string): void => o.progress?.(`[${((Date.now() - t0) / 1000).toFixed(2)}s] ${line}`);
  const snapshotterName = o.snapshotter ?? 'ferry';
  const namespace = o.namespace ?? 'default';
  const regOpts: ConstructorParameters<typeof RegistryClient>[0] = { log };
  if (o.plainHttp) regOpts.insecure = () => true;
  if (o.user !== undefined) {
    const c = parseUserPassword(o.user);
    regOpts.credentials = () => c;
  } else if (o.credentials) regOpts.credentials = o.credentials;
  const reg = new RegistryClient(regOpts);
  const ref: ImageReference = parseReference(o.ref);
  if (!ref.tag && !ref.digest) ref.tag = 'latest';
  const name = formatReference(ref);
  let fetched = 0;

  // manifest (an index resolves to this platform's manifest, preferring a Nydus one)
  const resolved = await reg.resolveImage(ref, { prefer: 'nydus', ...(o.platform ? { platform: parsePlatform(o.platform) } : {}) });
  const { manifest, fetched: m } = resolved;
  const ms: Record<string, number> = { resolve: Date.now() - t0 };
  fetched += m.body.length + (resolved.index?.fetched.body.length ?? 0);
  const configP = reg.getBlobBuffer(ref.registry, ref.repository, manifest.config.digest, MAX_CONFIG_BYTES).then((buf) => ({
    buf,
    config: parseImageConfig(buf, `${name}: config ${manifest.config.digest}`),
  }));
  const parsedP = configP.then((c) => c.config);
  parsedP.catch(() => undefined); // awaited below (through configP); a listener may ignore it
  o.onResolved?.(ref, m.digest, manifest, parsedP);
  const { buf: configBuf, config } = await configP;
  ms.config = Date.now() - t0;
  fetched += configBuf.length;
  const diffIds = config.rootfs.diff_ids;
  if (diffIds.length !== manifest.layers.length) {
    throw new FerryError('INVALID_ARGUMENT', `${name}: ${manifest.layers.length} layers but ${diffIds.length} diff_ids`);
  }
  const chains = chainIds(diffIds);
  const nydus = manifest.layers.some((l) => l.annotations?.[NydusAnnotation.BOOTSTRAP] === 'true');
  say(`resolved ${name} → ${m.digest} (${manifest.layers.length} layers)`);

  const { GrpcConnection, SnapshotsClient, ContainerdApi } = await grpcModules;
  const root = o.connection ? o.connection.with({ namespace }) : new GrpcConnection(o.address, { namespace });
  try {
    const leaseApi = new ContainerdApi(root);
    const lease = await leaseApi.createLease();
    ms.lease = Date.now() - t0;
    const conn = root.with({ lease });
    const api = new ContainerdApi(conn);
    const sn = new SnapshotsClient(conn, snapshotterName);
    try {
      // config and manifest into the content store; GC labels link manifest → config/layers → snapshots
      const manifestLabels: Record<string, string> = { 'containerd.io/gc.ref.content.config': manifest.config.digest };
      manifest.layers.forEach((l, i) => {
        manifestLabels[`containerd.io/gc.ref.content.l.${i}`] = l.digest;
      });
      const distLabel = { [`containerd.io/distribution.source.${ref.registry}`]: ref.repository };
      const rec = recordedManifest(manifest, m);
      await Promise.all([
        api.writeContent(desc(manifest.config), configBuf, distLabel),
        api.writeContent({ mediaType: rec.mediaType, digest: rec.digest, size: rec.body.length }, rec.body, {
          ...manifestLabels,
          ...distLabel,
        }),
      ]);

      ms.content = Date.now() - t0;
      const layers: PulledLayer[] = [];
      for (let i = 0; i < manifest.layers.length; i++) {
        const layer = manifest.layers[i]!;
        const chainId = chains[i]!;
        const parent = i > 0 ? chains[i - 1]! : '';
        const exists = await sn.stat(chainId).then(
          () => true,
          (err: unknown) => {
            if (FerryError.hasCode(err, 'NOT_FOUND')) return false;
            throw err;
          },
        );
        if (exists) {
          layers.push({ digest: layer.digest, chainId, how: 'present', bytes: 0 });
          say(`layer ${i + 1}/${manifest.layers.length} ${layer.digest.slice(0, 19)} already unpacked`);
          continue;
        }
        const labels: Record<string, string> = {
          [Label.SNAPSHOT_REF]: chainId,
          [Label.CRI_IMAGE_REF]: name,
          [Label.CRI_MANIFEST_DIGEST]: m.digest,
          [Label.CRI_LAYER_DIGEST]: layer.digest,
          [Label.CRI_IMAGE_LAYERS]: imageLayersLabel(manifest.layers.slice(i).map((l) => l.digest)),
        };
        for (const [k, v] of Object.entries(layer.annotations ?? {})) {
          if (k.startsWith('containerd.io/snapshot/')) labels[k] = v;
        }
        if (o.plainHttp) labels[Label.FERRY_PLAIN_HTTP] = 'true';
        const key = `extract-${process.hrtime.bigint()}-${randomBytes(3).toString('base64url')} ${chainId}`;
        let mounts: Awaited<ReturnType<typeof sn.prepare>>;
        try {
          mounts = await sn.prepare(key, parent, labels);
        } catch (err) {
          if (FerryError.hasCode(err, 'ALREADY_EXISTS')) {
            // containerd's metadata layer answers ALREADY_EXISTS only after finding the committed
            // target in the snapshotter (List with snapshot.ref and parent), so no extra Stat
            layers.push({ digest: layer.digest, chainId, how: 'remote', bytes: 0 });
            say(`layer ${i + 1}/${manifest.layers.length} ${layer.digest.slice(0, 19)} remote (lazy, not downloaded)`);
            continue;
          }
          throw err;
        }
        if (nydus) {
          // containerd cannot apply a Nydus blob (no processor for its media type): downloading it would only fail later
          await sn.remove(key).catch(() => {});
          throw new FerryError(
            'FAILED_PRECONDITION',
            `${name} is a Nydus image, but snapshotter ${JSON.stringify(snapshotterName)} did not take layer ${i + 1} ` +
              `(${layer.digest.slice(0, 19)}) lazily: is it a ferry snapshotter with lazy loading (not --no-lazy), ` +
              'and registered in containerd under that name?',
          );
        }
        try {
          let bytes = 0;
          const body = await reg.getBlob(ref.registry, ref.repository, layer.digest);
          const counter = new Transform({
            transform(c: Buffer, _e, cb) {
              bytes += c.length;
              cb(null, c);
            },
          });
          body.on('error', (e) => counter.destroy(e));
          await api.writeContent(desc(layer), body.pipe(counter), distLabel);
          fetched += bytes;
          const applied = await api.applyLayer(desc(layer), mounts);
          if (applied !== diffIds[i])
            throw new FerryError('DATA_LOSS', `layer ${layer.digest}: applied ${applied}, config says ${diffIds[i]}`);
          await sn.commit(chainId, key, { [Label.SNAPSHOT_REF]: chainId });
          await api.setContentLabels(layer.digest, { 'containerd.io/uncompressed': applied });
          layers.push({ digest: layer.digest, chainId, how: 'applied', bytes });
          say(`layer ${i + 1}/${manifest.layers.length} ${layer.digest.slice(0, 19)} downloaded and applied (${bytes} bytes)`);
        } catch (err) {
          await sn.remove(key).catch(() => {});
          if (
            FerryError.hasCode(err, 'ALREADY_EXISTS') &&
            (await sn.stat(chainId).then(
              () => true,
              () => false,
            ))
          ) {
            layers.push({ digest: layer.digest, chainId, how: 'present', bytes: 0 });
            continue;
          }
          throw err;
        }
      }
      ms.layers = Date.now() - t0;
      const top = chains[chains.length - 1];
      if (top) await api.setContentLabels(manifest.config.digest, { [`containerd.io/gc.ref.snapshot.${snapshotterName}`]: top });
      await api.putImage(name, { mediaType: rec.mediaType, digest: rec.digest, size: rec.body.length });
      say(`image ${name} unpacked with snapshotter ${snapshotterName}`);
      ms.image = Date.now() - t0;
      // when each step ended, in ms since the pull started (bench/snapshotter/pull.ts reads these)
      log.debug({ ref: name, manifest: m.digest, ms: ms.image, steps: ms, layers: layers.map((l) => l.how) }, 'pull done');
      return { name, manifestDigest: m.digest, configDigest: manifest.config.digest, layers, bytesFetched: fetched, ms: Date.now() - t0 };
    } finally {
      await leaseApi.deleteLease(lease).catch((err: unknown) => log.warn({ err, lease }, 'deleting lease failed'));
    }
  } finally {
    if (!o.connection) root.close();
  }
}
