/**
 * @module config/snapshotter
 * Configuration of `ferry snapshotter` (YAML/JSON file, `--config`; command-line flags override
 * it). Defaults live in the schema; unknown keys are an error.
 */
import { z } from 'zod';
import { parseDuration } from '../core/index.js';
import { parseConfig, sizeSchema as size } from './parse.js';

export const SnapshotterConfigSchema = z.strictObject({
  /** Unix socket of the snapshots gRPC service (containerd's proxy_plugins address). */
  address: z.string().min(1).default('/run/ferry/snapshotter.sock'),
  /** Root directory: metadata.db, snapshots/, lazy/, cache/. */
  root: z.string().min(1).default('/var/lib/ferry/snapshotter'),
  /** Name containerd knows the plugin by (print-config). */
  name: z
    .string()
    .regex(/^[A-Za-z0-9_.-]+$/)
    .default('ferry'),
  /** Prometheus `/metrics`: `host:port`, a unix socket path, or '' for `<root>/metrics.sock`. */
  metricsAddress: z.string().default(''),
  /** File holding the bearer token scrapers must send; required when `metricsAddress` is not loopback. */
  metricsTokenFile: z.string().default(''),
  /**
   * Unix socket of the pull API (`ferry pull --snapshotter-api`, api/snapshotter.openapi.yaml),
   * owner-only; '' for `<root>/api.sock`.
   */
  apiAddress: z.string().default(''),
  /**
   * CRI keychain: serve the CRI `runtime.v1.ImageService` on this unix socket (owner-only; kubelet's
   * `--image-service-endpoint`), forwarding every call to `criUpstream` and keeping each PullImage's
   * credentials for that image's lazy mounts; '' = off.
   */
  criAddress: z.string().default(''),
  /** containerd's socket, where its CRI plugin answers (used with `criAddress`). */
  criUpstream: z.string().min(1).default('/run/containerd/containerd.sock'),
  daemon: z
    .strictObject({
      /** API socket of a separate `ferry daemon`; empty = run the daemon in-process (or spawn it). */
      apiSock: z.string().default(''),
      /**
       * Start a separate `ferry daemon` (detached, `<root>/daemon.sock`, log `<root>/daemon.log`)
       * unless one already answers there, and use it: its mounts outlive snapshotter restarts.
       */
      spawn: z.boolean().default(false),
      /**
       * How the daemon mounts images: kernel EROFS over lazily filled blob views (the fast path;
       * the daemon falls back to FUSE by itself where the kernel path fails), or FUSE.
       */
      mode: z.enum(['fuse', 'erofs']).default('erofs'),
      /** Prefetch the image's prefetch list (or everything with `true`) after mounting. */
      prefetch: z.boolean().default(false),
      /**
       * Startup prefetch: when an image is mounted, fetch what the dynamic loader will read for its
       * command (executable, loader, shared libraries: headers, dynamic tables, data segments; from
       * the image config's Entrypoint/Cmd) in a few merged requests, before the container runs.
       */
      startupPrefetch: z.boolean().default(true),
      /**
       * Trace prefetch: look up a prefetch trace attached to the image (an OCI referrer pushed by
       * `ferry trace push` from a node that ran it) and fetch the chunks it lists at mount, in place
       * of the startup prefetch.
       */
      tracePrefetch: z.boolean().default(true),
      /**
       * OCI-ref: for an ordinary gzip OCI image, look up an OCI-ref (zran) index attached to it
       * (`ferry convert --oci-ref`, accel `oci_ref`) and run the original image lazily from it;
       * without one the image is pulled as usual (one referrers lookup per image). Off by default:
       * the index (a referrer anyone with push on the repository can attach) decides the file tree,
       * so a pull pinned to a verified digest would run what the index says, not what the layers'
       * diff_ids guarantee; turn it on where those who can push are trusted like the image's signer.
       * Ignored under `requireAttestationKey` (indexes carry no conversion attestation).
       */
      ociRef: z.boolean().default(false),
      /**
       * Trace push: when an image this node mounted has no prefetch trace in the registry, push the
       * one recorded here `tracePushAfter` after the mount (the recording window is 30 s). Needs push
       * rights on the repository (the snapshotter's registry credentials), so it is off by default —
       * turn it on for a canary node.
       */
      tracePush: z.boolean().default(false),
      tracePushAfter: z
        .union([z.string(), z.number()])
        .transform((v) => parseDuration(v))
        .default(30_000),
      /**
       * Quota of the node's chunk cache (bytes on disk; 0 = none), the in-process or spawned daemon's
       * `ferry.cache_quota` unless its config file sets one. Over it, data of images with no snapshot
       * left goes first, then least recently read data of mounted images (fetched again when read).
       */
      cacheQuota: size.default(0),
      /**
       * Background fill (the daemon's `ferry.fill_deadline` unless its config file sets one): each
       * lazy image is wholly fetched into the node cache within this long after its mount, at idle
       * priority, so a registry outage after it costs its containers nothing. 0 / "off" (default).
       */
      fillDeadline: z
        .union([z.string(), z.number()])
        .transform((v, ctx) => {
          try {
            return v === 'off' ? 0 : parseDuration(v);
          } catch (err) {
            ctx.addIssue({ code: 'custom', message: `${(err as Error).message} (a duration such as 10m, or off)` });
            return z.NEVER;
          }
        })
        .pipe(z.number().nonnegative())
        .default(0),
      /** The fill's idle rate, bytes/s (`ferry.fill_rate`; default 4 MiB/s), raised only as far as the deadline needs. */
      fillRate: size.default(4 * 1024 * 1024),
      /** Chunk cache directory shared by all images; default `<root>/cache`. */
      cacheDir: z.string().default(''),
      /** P2P peer proxy URL the daemon reads blobs through (falls back to the registry). */
      proxy: z.string().default(''),
      /** nydusd-style JSON/YAML config file for the in-process daemon (`ferry daemon --config` format). */
      configFile: z.string().default(''),
      /**
       * Largest read amplification of the in-process daemon (its `amplify_io`) unless the config
       * file sets one: only sequential reads are amplified, ramping up to it (see storage/device).
       */
      amplifyIo: size.default(1024 * 1024),
    })
    .prefault({}),
  /** Registries reached over plain HTTP (host[:port]); loopback hosts always are. */
  insecureRegistries: z.array(z.string().min(1)).default([]),
  /**
   * Attestation policy: a public key file (PEM, Ed25519 or ECDSA P-256). When set, a Nydus image is
   * run only if a conversion attestation attached to its manifest verifies with this key (signature,
   * subject = the manifest, a source digest); otherwise its pull fails naming the image and the reason.
   * Plain OCI images are not affected (docs/security.md). '' = off.
   */
  requireAttestationKey: z.string().default(''),
  /** Skip lazy loading entirely (every layer is downloaded and unpacked by containerd). */
  disableLazy: z.boolean().default(false),
  logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
});

export type SnapshotterConfig = z.output<typeof SnapshotterConfigSchema>;
export type SnapshotterConfigInput = z.input<typeof SnapshotterConfigSchema>;

/** Validates a config object; throws INVALID_ARGUMENT listing the problems. */
export function parseSnapshotterConfig(input: unknown): SnapshotterConfig {
  return parseConfig(SnapshotterConfigSchema, input, 'snapshotter');
}

/**
 * The containerd 1.6 config.toml snippet registering the snapshotter as a proxy plugin. It can be
 * appended to a config that already has `[proxy_plugins]` (it declares only its own sub-table); the
 * CRI keys are comments, since declaring the CRI table again breaks a config that has it — `ferry
 * snapshotter print-config --merge FILE` prints the file with both merged in.
 */
export function containerdSnippet(cfg: Pick<SnapshotterConfig, 'name' | 'address'>): string {
  const name = JSON.stringify(cfg.name);
  return [
    '# containerd 1.6 config.toml (version = 2): register Ferry as a proxy snapshotter.',
    '# Safe to append, also to a config that has [proxy_plugins] already.',
    `[proxy_plugins.${name}]`,
    '  type = "snapshot"',
    `  address = ${JSON.stringify(cfg.address)}`,
    '',
    '# For CRI (Kubernetes) set these keys in the CRI table, adding it only if the config has none',
    '# (a second [plugins."io.containerd.grpc.v1.cri".containerd] breaks containerd):',
    '#   [plugins."io.containerd.grpc.v1.cri".containerd]',
    `#     snapshotter = ${name}`,
    '#     disable_snapshot_annotations = false',
    '# or let Ferry merge both into your file: ferry snapshotter print-config --merge /etc/containerd/config.toml',
    '',
  ].join('\n');
}
