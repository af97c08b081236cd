/**
 * @module cli/pull
 * `ferry pull --address CONTAINERD_SOCK [--namespace NS] [--snapshotter ferry] [--plain-http]
 * [--user U:P] [--platform os/arch] REF` — pulls an image into containerd the way
 * `ctr-remote images rpull` does: metadata only for lazy (Nydus) images, full download + apply for
 * ordinary layers; afterwards `ctr run --snapshotter ferry REF …` works.
 */
import { Command } from 'commander';
import { createLogger } from '../observe/index.js';
import { pullImage } from '../snapshotter/pull.js'; // not index.js: a pull needs no daemon, builder or server code

export async function run(argv: string[]): Promise<number> {
  const cmd = new Command('ferry pull')
    .description('pull an image into containerd lazily through the ferry snapshotter (ctr-remote rpull)')
    .argument('<ref>', 'image reference')
    .option('--address <sock>', 'containerd gRPC socket', process.env.CONTAINERD_ADDRESS ?? '/run/containerd/containerd.sock')
    .option('-n, --namespace <ns>', 'containerd namespace', process.env.CONTAINERD_NAMESPACE ?? 'default')
    .option('--snapshotter <name>', 'snapshotter to unpack with', process.env.CONTAINERD_SNAPSHOTTER ?? 'ferry')
    .option('--plain-http', 'talk plain HTTP to the registry')
    .option('--user <user:password>', 'registry credentials')
    .option('--platform <os/arch>', 'platform to pick from an index (default this machine)')
    .option('--json', 'print the result as JSON')
    .option('--quiet', 'no progress lines')
    .exitOverride();
  try {
    cmd.parse(argv, { from: 'user' });
  } catch (err) {
    return (err as { exitCode?: number }).exitCode ?? 2;
  }
  const o = cmd.opts<{ address: string; namespace: string; snapshotter: string; plainHttp?: boolean; user?: string; platform?: string; json?: boolean; quiet?: boolean }>();
  const log = createLogger({ name: 'pull', level: process.env.FERRY_LOG_LEVEL ?? 'warn' });
  try {
    const r = await pullImage({
      address: o.address, namespace: o.namespace, snapshotter: o.snapshotter, ref: cmd.args[0]!, log,
      ...(o.plainHttp ? { plainHttp: true } : {}),
      ...(o.user !== undefined ? { user: o.user } : {}),
      ...(o.platform ? { platform: o.platform } : {}),
      ...(o.quiet || o.json ? {} : { progress: (l: string) => process.stdout.write(`${l}\n`) }),
    });
    if (o.json) process.stdout.write(`${JSON.stringify(r)}\n`);
    else if (!o.quiet) process.stdout.write(`done in ${r.ms} ms, ${r.bytesFetched} bytes fetched from the registry\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`ferry pull: ${(err as Error).message}\n`);
    return 1;
  }
}
