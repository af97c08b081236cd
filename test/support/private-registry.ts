/**
 * A Ferry registry with what the access tests need: a private project `secret` with a pull-only
 * robot account, the public project `library`, images pushed into both, and pull tokens obtained
 * through the registry's own token service (what containerd sends after a Bearer challenge, and
 * what Harbor puts in a preheat job's `Authorization` header).
 */
import { randomBytes } from 'node:crypto';
import { metricValue } from '../../src/observe/index.js';
import { startTestRegistry, basic, sha256, type TestRegistry } from '../../src/registry/testing/client.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

export interface PushedImage {
  repo: string;
  tag: string;
  config: { digest: string; data: Buffer };
  layers: { digest: string; data: Buffer }[];
  /** `<registry url>/v2/<repo>/blobs/<digest>` of each layer */
  layerUrls: string[];
}

export interface PrivateRegistry {
  reg: TestRegistry;
  /** The pull-only robot of project `secret`, as `Basic …`. */
  robotAuth: string;
  push(repo: string, tag: string, layerSizes: number[]): Promise<PushedImage>;
  /** A Bearer token for `repository:<repo>:pull`, issued to `auth` (a `Basic …` value; '' = anonymous). */
  pullToken(repo: string, auth: string): Promise<string>;
  /** Blob body bytes the registry has served so far (its egress). */
  blobBytesServed(): Promise<number>;
  close(): Promise<void>;
}

export async function startPrivateRegistry(): Promise<PrivateRegistry> {
  const reg = await startTestRegistry();
  try {
    await reg.createProject('secret');
    const robot = await reg.createRobot('secret', 'puller');
    return {
      reg,
      robotAuth: basic(robot.name, robot.secret),
      async push(repo, tag, layerSizes) {
        const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
        const layers = layerSizes.map((n) => ({ data: randomBytes(n), digest: '' }));
        for (const l of layers) l.digest = await reg.pushBlob(repo, l.data);
        await reg.pushBlob(repo, config);
        const manifest = JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
          layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: l.digest, size: l.data.length })),
        });
        const m = await reg.putManifest(repo, tag, manifest, OCI_MANIFEST);
        if (m.status !== 201) throw new Error(`put manifest: ${m.status} ${await m.text()}`);
        return {
          repo,
          tag,
          config: { digest: sha256(config), data: config },
          layers,
          layerUrls: layers.map((l) => `${reg.url}/v2/${repo}/blobs/${l.digest}`),
        };
      },
      async pullToken(repo, auth) {
        const t = await reg.req(`/service/token?service=harbor-registry&scope=${encodeURIComponent(`repository:${repo}:pull`)}`, { auth });
        if (t.status !== 200) throw new Error(`token: ${t.status} ${await t.text()}`);
        return ((await t.json()) as { token: string }).token;
      },
      blobBytesServed: () => metricValue(reg.metrics, 'ferry_registry_blob_bytes_served_total'),
      close: () => reg.destroy(),
    };
  } catch (err) {
    await reg.destroy();
    throw err;
  }
}
