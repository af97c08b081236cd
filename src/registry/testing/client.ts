/**
 * @module registry/testing/client
 * A tiny raw HTTP client for registry tests: fetch with Basic credentials, Location resolution
 * and helpers to push blobs/manifests the way the conformance suite does.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRegistry, type RegistryHandle, type StartRegistryOptions } from '../index.js';

export const ADMIN_PASSWORD = 'Adm1nSecret';

export function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export interface TestRegistry extends RegistryHandle {
  dataDir: string;
  /** fetch against the registry with admin Basic credentials unless `auth` is given ('' = anonymous). */
  req(path: string, init?: RequestInit & { auth?: string }): Promise<Response>;
  /** Pushes a blob (POST + PUT) into `repo`. */
  pushBlob(repo: string, data: Buffer, auth?: string): Promise<string>;
  /** PUTs a manifest; returns the response. */
  putManifest(repo: string, ref: string, body: Buffer | string, mediaType: string, auth?: string): Promise<Response>;
  /** Creates a project (Harbor API, as admin); throws with the answer unless 201. */
  createProject(name: string, opts?: { public?: boolean }): Promise<void>;
  /** Creates a project-level robot with the given repository actions (default pull only); returns its name and secret. */
  createRobot(project: string, name: string, actions?: string[]): Promise<{ id: number; name: string; secret: string }>;
  /** Closes the registry and removes its data directory. */
  destroy(): Promise<void>;
}

export function basic(user: string, pass: string): string {
  return `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
}

/** Starts a registry on 127.0.0.1:0 in a fresh temp directory. */
export async function startTestRegistry(opts: Partial<StartRegistryOptions> = {}): Promise<TestRegistry> {
  const dataDir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), 'ferry-reg-')));
  const reg = await startRegistry({ listen: '127.0.0.1:0', adminPassword: ADMIN_PASSWORD, ...opts, dataDir });
  const admin = basic('admin', ADMIN_PASSWORD);
  const req = (path: string, init: RequestInit & { auth?: string } = {}): Promise<Response> => {
    const { auth, ...rest } = init;
    const headers = new Headers(rest.headers);
    const a = auth ?? admin;
    if (a !== '') headers.set('authorization', a);
    const url = path.startsWith('http') ? path : `${reg.url}${path}`;
    return fetch(url, { ...rest, headers, redirect: 'manual' });
  };
  return {
    ...reg,
    dataDir,
    req,
    async pushBlob(repo, data, auth) {
      const digest = sha256(data);
      const r1 = await req(`/v2/${repo}/blobs/uploads/`, { method: 'POST', ...(auth !== undefined ? { auth } : {}) });
      if (r1.status !== 202) throw new Error(`POST upload: ${r1.status} ${await r1.text()}`);
      const loc = r1.headers.get('location')!;
      const r2 = await req(`${loc}${loc.includes('?') ? '&' : '?'}digest=${digest}`, {
        method: 'PUT',
        body: data,
        headers: { 'content-type': 'application/octet-stream' },
        ...(auth !== undefined ? { auth } : {}),
      });
      if (r2.status !== 201) throw new Error(`PUT upload: ${r2.status} ${await r2.text()}`);
      return digest;
    },
    putManifest(repo, ref, body, mediaType, auth) {
      return req(`/v2/${repo}/manifests/${ref}`, {
        method: 'PUT',
        body: typeof body === 'string' ? body : new Uint8Array(body),
        headers: { 'content-type': mediaType },
        ...(auth !== undefined ? { auth } : {}),
      });
    },
    async createProject(name, o = {}) {
      const r = await req('/api/v2.0/projects', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ project_name: name, metadata: { public: o.public ? 'true' : 'false' } }),
      });
      if (r.status !== 201) throw new Error(`create project ${name}: ${r.status} ${await r.text()}`);
    },
    async createRobot(project, name, actions = ['pull']) {
      const r = await req('/api/v2.0/robots', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          name,
          level: 'project',
          duration: -1,
          permissions: [{ kind: 'project', namespace: project, access: actions.map((action) => ({ resource: 'repository', action })) }],
        }),
      });
      const body = await r.text();
      if (r.status !== 201) throw new Error(`create robot ${name}: ${r.status} ${body}`);
      return JSON.parse(body) as { id: number; name: string; secret: string };
    },
    async destroy() {
      await reg.close();
      if (!opts.dataDir) await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** A minimal OCI image (config + one layer) as the conformance suite builds it. */
export function makeImage(
  seed: string,
  opts: { mediaTypeField?: boolean } = {},
): {
  config: Buffer;
  layer: Buffer;
  manifest: Buffer;
  digest: string;
  configDigest: string;
  layerDigest: string;
} {
  const config = Buffer.from(
    JSON.stringify({ architecture: 'amd64', os: 'linux', author: seed, rootfs: { type: 'layers', diff_ids: [] } }),
  );
  const layer = Buffer.from(`layer-${seed}-${'x'.repeat(64)}`);
  const m: Record<string, unknown> = {
    schemaVersion: 2,
    ...(opts.mediaTypeField === false ? {} : { mediaType: 'application/vnd.oci.image.manifest.v1+json' }),
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length, extraField: 'kept' },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha256(layer), size: layer.length }],
  };
  const manifest = Buffer.from(JSON.stringify(m));
  return { config, layer, manifest, digest: sha256(manifest), configDigest: sha256(config), layerDigest: sha256(layer) };
}
