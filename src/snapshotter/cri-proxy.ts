/**
 * @module snapshotter/cri-proxy
 * The CRI keychain: `ferry snapshotter --cri-address SOCK` serves the CRI `runtime.v1.ImageService`
 * on its own owner-only socket (kubelet's `--image-service-endpoint` points at it) and forwards
 * every call, as raw bytes, to containerd's CRI socket. Of each `PullImage` it keeps the
 * credentials kubelet hands over (`PullImageRequest.auth`, from the pod's image pull secrets) for
 * that image's repository, in memory — before forwarding, so the lazy layers containerd asks for
 * during the pull, their mounts and their token refreshes use them. Nothing of them is logged.
 */
import { rm } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import { CRI_IMAGE_SERVICE, criServiceDefinition, decodePullImageRequest, type CriPullImage } from '../containerd/index.js';
import { bindPrivate } from '../httpx/index.js';
import { silentLogger, type Logger } from '../observe/index.js';
import { parseReference, type Credentials, type SuppliedCredentials } from '../remote/index.js';

export interface CriProxyOptions {
  /** unix socket to serve the ImageService on (owner-only) */
  address: string;
  /** containerd's socket (its CRI plugin serves runtime.v1 there) */
  upstream: string;
  /** where PullImage credentials go (the snapshotter's supplied credentials) */
  supplied: SuppliedCredentials;
  log?: Logger;
}

export interface CriProxy {
  address: string;
  close(): Promise<void>;
}

const raw = (b: Buffer): Buffer => b;

/** The credentials of a CRI AuthConfig (username/password, else `auth` = base64 user:password). */
export function criCredentials(a: CriPullImage['auth']): Credentials | undefined {
  if (!a) return undefined;
  if (a.username && a.password) return { username: a.username, password: a.password };
  if (a.auth) {
    const s = Buffer.from(a.auth, 'base64').toString('utf8');
    const i = s.indexOf(':');
    if (i > 0) return { username: s.slice(0, i), password: s.slice(i + 1) };
  }
  return undefined;
}

export async function serveCriProxy(o: CriProxyOptions): Promise<CriProxy> {
  const log = (o.log ?? silentLogger()).child({ component: 'cri-proxy' });
  const upstream = new grpc.Client(`unix://${o.upstream}`, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': 64 * 1024 * 1024,
  });
  const remember = (buf: Buffer): void => {
    let req: CriPullImage;
    try {
      req = decodePullImageRequest(buf);
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'undecodable PullImage request: forwarded as is');
      return;
    }
    const creds = criCredentials(req.auth);
    if (!creds) {
      if (req.auth?.identity_token || req.auth?.registry_token)
        log.warn({ image: req.image }, 'PullImage auth with a token only: not kept (lazy mounts use the other credential sources)');
      return;
    }
    try {
      const ref = parseReference(req.image);
      o.supplied.set(ref.registry, ref.repository, creds, 'cri');
      log.info({ image: req.image, registry: ref.registry, repository: ref.repository }, 'PullImage credentials kept for the image');
    } catch (err) {
      log.warn({ image: req.image, err: (err as Error).message }, 'PullImage of an unparsable reference: credentials not kept');
    }
  };
  const def = criServiceDefinition(CRI_IMAGE_SERVICE);
  const service: Record<string, grpc.MethodDefinition<Buffer, Buffer>> = {};
  const impl: grpc.UntypedServiceImplementation = {};
  for (const [name, m] of Object.entries(def)) {
    service[name] = {
      ...m,
      requestSerialize: raw,
      requestDeserialize: raw,
      responseSerialize: raw,
      responseDeserialize: raw,
    };
    impl[name] = ((call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      if (name === 'PullImage') remember(call.request);
      upstream.makeUnaryRequest(m.path, raw, raw, call.request, call.metadata, { deadline: call.getDeadline() }, (err, res) => {
        if (err) log.debug({ method: name, code: err.code, err: err.details }, 'CRI call failed upstream');
        cb(err, res);
      });
    }) as grpc.handleUnaryCall<Buffer, Buffer>;
  }
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 16 * 1024 * 1024 });
  server.addService(service as grpc.ServiceDefinition, impl);
  await bindPrivate(
    o.address,
    (path) =>
      new Promise<void>((resolve, reject) => {
        server.bindAsync(`unix://${path}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve()));
      }),
    '--cri-address',
  );
  log.info({ address: o.address, upstream: o.upstream }, 'CRI image service proxy listening');
  return {
    address: o.address,
    close: () =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => server.forceShutdown(), 5000);
        server.tryShutdown(() => {
          clearTimeout(timer);
          upstream.close();
          rm(o.address, { force: true }).finally(resolve);
        });
      }),
  };
}
