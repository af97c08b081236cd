/**
 * @module cli/pull
 * `ferry pull --address CONTAINERD_SOCK [--namespace NS] [--snapshotter ferry] [--plain-http]
 * [--user U:P] [--platform os/arch] [--snapshotter-api SOCK] REF` — pulls an image into containerd
 * the way `ctr-remote images rpull` does: metadata only for lazy (Nydus) images, full download +
 * apply for ordinary layers; afterwards `ctr run --snapshotter ferry REF …` works.
 *
 * When a ferry snapshotter's pull API answers (`--snapshotter-api`, else the default
 * `/var/lib/ferry/snapshotter/api.sock` if present) the pull runs there, in a process that is
 * already warm and starts the lazy mount as soon as the manifest is known; otherwise it runs here.
 * Which of the two, and why, is printed on stderr (and is `via`/`viaReason` in --json): a
 * snapshotter started with another `--root` has its socket elsewhere, and a pull here does not
 * start its lazy mounts early. Modules are loaded only on the path taken.
 */
import { existsSync } from 'node:fs';
import { Command } from 'commander';
import { FerryError } from '../core/index.js';
import { requestPull } from '../snapshotter/pull-api-client.js';
import type { PullRequestBody, PullResult } from '../snapshotter/protocol.js';
import { parseArgs } from './lifecycle.js';
import { DEFAULT_API, findRunningSnapshotters, type RunningSnapshotter } from './find-snapshotter.js';
import { addCredentialOptions, mayHaveCredentials, type CredentialFlags } from './credential-flags.js';

/**
 * The credentials this pull hands over (`user:password`, sent with the request over the
 * owner-only pull API socket, never on a command line): explicit ones, else the first the chain
 * (--pull-secret, config.json with its credential helpers) has for the image's repository; the
 * snapshotter keeps them in memory for the image's mounts.
 */
async function credentialsFor(ref: string, f: CredentialFlags): Promise<string | undefined> {
  // the chain (remote/: ~0.1 s of module loading) only when it may find something
  if (!mayHaveCredentials(f)) return undefined;
  const [{ chainFromFlags, explicitCredentials }, { parseReference }] = await Promise.all([
    import('./credentials.js'),
    import('../remote/index.js'),
  ]);
  const explicit = explicitCredentials(f);
  if (explicit) return `${explicit.username}:${explicit.password}`;
  const r = parseReference(ref);
  const found = await chainFromFlags(f).find(r.registry, r.repository);
  return found ? `${found.credentials.username}:${found.credentials.password}` : undefined;
}

export { DEFAULT_API };

/** Where a pull is to run: through a snapshotter's pull API (`api`), or in this process, and why. */
export interface PullMode {
  api?: string;
  why: string;
}

/**
 * The mode the options ask for; `defaultApiExists`: whether DEFAULT_API is on disk; `running`: the
 * `ferry snapshotter` processes found with a pull API (only those named `snapshotter` count).
 */
export function pullMode(o: {
  local?: boolean;
  snapshotterApi?: string;
  fromEnv?: boolean;
  defaultApiExists: boolean;
  snapshotter?: string;
  running?: RunningSnapshotter[];
}): PullMode {
  if (o.local) return { why: '--local' };
  if (o.snapshotterApi) return { api: o.snapshotterApi, why: o.fromEnv ? 'FERRY_SNAPSHOTTER_API' : '--snapshotter-api' };
  if (o.defaultApiExists) return { api: DEFAULT_API, why: 'the default socket' };
  const name = o.snapshotter ?? 'ferry';
  const mine = (o.running ?? []).filter((r) => r.name === name);
  if (mine.length === 1)
    return {
      api: mine[0]!.api,
      why: `the running ferry snapshotter ${JSON.stringify(name)}, pid ${mine[0]!.pid}, --root ${mine[0]!.root}`,
    };
  const pass = 'pass --snapshotter-api DIR/api.sock to pull through it (its lazy mounts then start during the pull)';
  if (mine.length > 1)
    return {
      why: `${mine.length} ferry snapshotters named ${JSON.stringify(name)} run (${mine.map((r) => `pid ${r.pid}: ${r.api}`).join(', ')}); ${pass}`,
    };
  return {
    why:
      `no snapshotter pull API at ${DEFAULT_API}, and no running \`ferry snapshotter\` named ${JSON.stringify(name)} with a pull API found; ` +
      `a snapshotter started with --root DIR listens at DIR/api.sock: ${pass}`,
  };
}

export async function run(argv: string[]): Promise<number> {
  const cmd = new Command('ferry pull')
    .description('pull an image into containerd lazily through the ferry snapshotter (ctr-remote rpull)')
    .argument('<ref>', 'image reference')
    .option('--address <sock>', 'containerd gRPC socket', process.env.CONTAINERD_ADDRESS ?? '/run/containerd/containerd.sock')
    .option('-n, --namespace <ns>', 'containerd namespace', process.env.CONTAINERD_NAMESPACE ?? 'default')
    .option('--snapshotter <name>', 'snapshotter to unpack with', process.env.CONTAINERD_SNAPSHOTTER ?? 'ferry')
    .option('--plain-http', 'talk plain HTTP to the registry')
    .option('--platform <os/arch>', 'platform to pick from an index (default this machine)')
    .option(
      '--snapshotter-api <sock>',
      `pull API of a running ferry snapshotter to run the pull in (default ${DEFAULT_API} if present)`,
      process.env.FERRY_SNAPSHOTTER_API,
    )
    .option('--local', 'pull in this process even when a snapshotter pull API is present')
    .option('--json', 'print the result as JSON')
    .option('--quiet', 'no progress lines')
    .exitOverride();
  addCredentialOptions(cmd, { explicit: true });
  const parsed = parseArgs(cmd, argv);
  if (parsed !== undefined) return parsed;
  const o = cmd.opts<
    {
      address: string;
      namespace: string;
      snapshotter: string;
      plainHttp?: boolean;
      platform?: string;
      snapshotterApi?: string;
      local?: boolean;
      json?: boolean;
      quiet?: boolean;
    } & CredentialFlags
  >();
  let user: string | undefined;
  try {
    user = await credentialsFor(cmd.args[0]!, o);
  } catch (err) {
    process.stderr.write(`ferry pull: ${(err as Error).message}\n`);
    return 2;
  }
  const body: PullRequestBody = {
    ref: cmd.args[0]!,
    address: o.address,
    namespace: o.namespace,
    snapshotter: o.snapshotter,
    ...(o.plainHttp ? { plainHttp: true } : {}),
    ...(user !== undefined ? { user } : {}),
    ...(o.platform ? { platform: o.platform } : {}),
  };
  const progress =
    o.quiet || o.json
      ? undefined
      : (l: string): void => {
          process.stdout.write(`${l}\n`);
        };
  const explicitApi = o.local ? undefined : o.snapshotterApi;
  const mode = pullMode({
    ...(o.local ? { local: true } : {}),
    ...(o.snapshotterApi ? { snapshotterApi: o.snapshotterApi } : {}),
    fromEnv: o.snapshotterApi !== undefined && cmd.getOptionValueSource('snapshotterApi') === 'default',
    defaultApiExists: existsSync(DEFAULT_API),
    snapshotter: o.snapshotter,
    ...(o.local || o.snapshotterApi || existsSync(DEFAULT_API) ? {} : { running: findRunningSnapshotters() }),
  });
  const say = (m: PullMode): void => {
    if (!o.quiet)
      process.stderr.write(
        m.api ? `ferry pull: through the snapshotter pull API at ${m.api} (${m.why})\n` : `ferry pull: in this process (${m.why})\n`,
      );
  };
  try {
    let r: PullResult | undefined;
    let used = mode;
    if (mode.api) {
      say(mode);
      try {
        r = await requestPull(mode.api, body, progress);
      } catch (err) {
        // Nothing listening at the default path (a stale socket file): pull here instead.
        if (explicitApi || !unreachable(err)) throw err;
        used = { why: `nothing answers at ${mode.api}: a stale socket of a stopped snapshotter` };
      }
    }
    if (!r) {
      if (used.api === undefined) say(used);
      r = await pullHere(body, progress);
    }
    if (o.json)
      process.stdout.write(
        `${JSON.stringify({ ...r, via: used.api ? 'snapshotter' : 'local', viaReason: used.api ? `${used.api} (${used.why})` : used.why })}\n`,
      );
    else if (!o.quiet) process.stdout.write(`done in ${r.ms} ms, ${r.bytesFetched} bytes fetched from the registry\n`);
    return 0;
  } catch (err) {
    const hint = explicitApi && unreachable(err) ? ' (is `ferry snapshotter` running there? --local pulls without it)' : '';
    process.stderr.write(`ferry pull: ${(err as Error).message}${hint}\n`);
    return 1;
  }
}

/** The pull API's socket is absent or nobody listens on it (not: the pull itself failed). */
function unreachable(err: unknown): boolean {
  const cause = (err as { cause?: NodeJS.ErrnoException }).cause?.code;
  return FerryError.hasCode(err, 'UNAVAILABLE') && (cause === 'ENOENT' || cause === 'ECONNREFUSED');
}

async function pullHere(body: PullRequestBody, progress: ((l: string) => void) | undefined): Promise<PullResult> {
  // not snapshotter/index.js: a pull needs no daemon, builder or server code
  const [{ pullImage }, { createLogger }] = await Promise.all([import('../snapshotter/pull.js'), import('../observe/index.js')]);
  const log = createLogger({ name: 'pull', level: process.env.FERRY_LOG_LEVEL ?? 'warn' });
  return pullImage({ ...body, log, ...(progress ? { progress } : {}) });
}
