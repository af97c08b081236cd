/**
 * @module cli/trace
 * Prefetch traces (oci/prefetch-trace, snapshotter/trace):
 *   ferry trace push   [--snapshotter-api SOCK | --file F] [--plain-http] [--user U:P] REF
 *   ferry trace export [--snapshotter-api SOCK] [--plain-http] [--user U:P] REF   (prints the JSON)
 *   ferry trace get    [--plain-http] [--user U:P] REF                            (the one in the registry)
 * `push` takes what the snapshotter on this node recorded while containers of REF (a Nydus image)
 * started — or a trace file — and attaches it to REF's manifest as an OCI referrer (through the
 * referrers API, or the OCI 1.1 tag schema `sha256-<hex>` on registries without it), then looks it
 * up as a node would and exits 1 when the registry does not list it; every node's snapshotter then
 * prefetches those chunks when it mounts the image.
 */
import { readFile } from 'node:fs/promises';
import { Command } from 'commander';
import { FerryError } from '../core/index.js';
import { createLogger } from '../observe/index.js';
import { MediaType, NydusAnnotation, decodePrefetchTrace, parsePrefetchTrace, type Descriptor, type PrefetchTrace } from '../oci/index.js';
import { parseReference, type ImageReference, type RegistryClient } from '../remote/index.js';
import { sideClient } from './convert.js';
import { explicitCredentials } from './credentials.js';
import { fetchPrefetchTrace, pushPrefetchTrace } from '../snapshotter/index.js';
import { requestTrace } from '../snapshotter/pull-api-client.js';
import { parseArgs } from './lifecycle.js';
import { DEFAULT_API, locateSnapshotterApi } from './find-snapshotter.js';

interface Opts {
  snapshotterApi?: string;
  file?: string;
  plainHttp?: boolean;
  user?: string;
  passwordStdin?: boolean;
}

function client(ref: ImageReference, o: Opts): RegistryClient {
  return sideClient(
    ref.registry,
    o.plainHttp === true,
    explicitCredentials(o),
    createLogger({ name: 'trace', level: process.env.FERRY_LOG_LEVEL ?? 'warn' }),
  );
}

/** REF's Nydus manifest (from an index: the Nydus one for this platform) as a descriptor. */
async function nydusManifest(reg: RegistryClient, ref: ImageReference): Promise<Descriptor> {
  // as the snapshotter picks: the Nydus manifest for this platform first
  const { manifest, fetched: m } = await reg.resolveImage(ref, { prefer: 'nydus' });
  if (!manifest.layers.some((l) => l.annotations?.[NydusAnnotation.BOOTSTRAP] === 'true')) {
    throw new FerryError('FAILED_PRECONDITION', 'not a Nydus image (no bootstrap layer): traces are for lazily mounted images');
  }
  return { mediaType: m.mediaType || MediaType.OCI_MANIFEST, digest: m.digest, size: m.body.length };
}

async function recorded(o: Opts, digest: string): Promise<PrefetchTrace> {
  if (o.file) return decodePrefetchTrace(await readFile(o.file));
  let api = o.snapshotterApi;
  if (!api) {
    const found = locateSnapshotterApi();
    if (!found.api) throw new FerryError('FAILED_PRECONDITION', found.why);
    api = found.api;
  }
  return parsePrefetchTrace(await requestTrace(api, digest));
}

export async function run(argv: string[]): Promise<number> {
  const common = (c: Command): Command =>
    c
      .argument('<ref>', 'Nydus image reference')
      .option('--plain-http', 'talk plain HTTP to the registry')
      .option('--user <user[:password]>', 'registry credentials: USER with --password-stdin (default ~/.docker/config.json)')
      .option('--password-stdin', "read the password (a robot's secret) from standard input")
      .exitOverride();
  const cmd = new Command('ferry trace')
    .description('prefetch traces: what a container read at start, shared through the registry')
    .exitOverride();
  let action: Promise<void> | undefined;
  common(cmd.command('push').description('attach the trace this node recorded for REF (or --file) to REF as an OCI referrer'))
    .option(
      '--snapshotter-api <sock>',
      `the ferry snapshotter that mounted REF (default ${DEFAULT_API}, else the running ferry snapshotter)`,
      process.env.FERRY_SNAPSHOTTER_API,
    )
    .option('--file <path>', 'push this trace file instead')
    .action((ref: string, o: Opts) => {
      action = (async () => {
        const r = parseReference(ref);
        const reg = client(r, o);
        const subject = await nydusManifest(reg, r);
        const trace = await recorded(o, subject.digest);
        const pushed = await pushPrefetchTrace(reg, r, subject, trace);
        const how =
          pushed.via === 'tag-schema'
            ? `the registry has no referrers API: listed in the referrers index tag ${pushed.tag} (${pushed.listed} referrers)`
            : "listed by the registry's referrers API";
        process.stdout.write(
          `pushed prefetch trace ${pushed.digest} (${trace.chunks.length} chunks of ${trace.blobs.length} blobs) for ${subject.digest}\n` +
            `lookup finds it: ${how}\n`,
        );
      })();
    });
  common(cmd.command('export').description('print the trace this node recorded for REF as JSON'))
    .option(
      '--snapshotter-api <sock>',
      `the ferry snapshotter that mounted REF (default ${DEFAULT_API}, else the running ferry snapshotter)`,
      process.env.FERRY_SNAPSHOTTER_API,
    )
    .action((ref: string, o: Opts) => {
      action = (async () => {
        const r = parseReference(ref);
        const subject = await nydusManifest(client(r, o), r);
        process.stdout.write(`${JSON.stringify(await recorded(o, subject.digest))}\n`);
      })();
    });
  common(cmd.command('get').description('print the trace attached to REF in the registry as JSON')).action((ref: string, o: Opts) => {
    action = (async () => {
      const r = parseReference(ref);
      const reg = client(r, o);
      const subject = await nydusManifest(reg, r);
      const t = await fetchPrefetchTrace(reg, r, subject.digest);
      if (!t) throw new FerryError('NOT_FOUND', `no prefetch trace attached to ${subject.digest}`);
      process.stdout.write(`${JSON.stringify(t)}\n`);
    })();
  });
  const parsed = parseArgs(cmd, argv);
  if (parsed !== undefined) return parsed;
  if (!action) {
    process.stderr.write(cmd.helpInformation());
    return 2;
  }
  try {
    await action;
    return 0;
  } catch (err) {
    const hint =
      FerryError.hasCode(err, 'UNAVAILABLE') && !(err as Error).message.includes('registry')
        ? ' (is `ferry snapshotter` running? --snapshotter-api names its api.sock)'
        : '';
    process.stderr.write(`ferry trace: ${(err as Error).message}${hint}\n`);
    return FerryError.hasCode(err, 'INVALID_ARGUMENT') ? 2 : 1;
  }
}
