/**
 * @module cli/main
 * The `ferry` executable: dispatches `ferry <subcommand> …` to `src/cli/<subcommand>.ts`, each of
 * which exports `run(argv)`. Subcommand modules are loaded on demand so that `ferry get` does not
 * pay for loading the registry or gRPC.
 */

/** Every subcommand with its one-line summary, in the order `ferry --help` lists them. */
export const SUBCOMMANDS: ReadonlyArray<readonly [name: string, summary: string]> = [
  ['up', 'start everything on this machine with embedded defaults (registry, accel, P2P, …)'],
  ['registry', 'OCI Distribution v1.1 registry with Harbor projects, robots, token auth, webhooks, gc'],
  ['rafs', 'build, merge, inspect, check and unpack Nydus RAFS images (the role of nydus-image)'],
  ['build', 'build a Dockerfile with buildah straight into an OCI, Nydus or merged image (buildkit compression=nydus)'],
  ['convert', 'convert an OCI image to a Nydus image, registry to registry (nydusify convert)'],
  ['check', 'verify a converted Nydus image against its source (nydusify check)'],
  ['accel', 'webhook-driven acceleration service reading acceld config.yaml'],
  ['task', 'create and list conversion tasks of a running accel service (accelctl)'],
  ['daemon', 'long-lived lazy-loading filesystem daemon with an HTTP API on a unix socket (nydusd)'],
  ['mount', 'mount one Nydus image lazily in the foreground (FUSE or EROFS mode)'],
  ['snapshotter', 'containerd proxy-plugin snapshotter with lazy Nydus layers (nydus-snapshotter)'],
  ['pull', 'pull an image into containerd lazily through the ferry snapshotter (ctr-remote rpull)'],
  ['trace', 'record, share and inspect prefetch traces (what a container read at start) through the registry'],
  ['scheduler', 'P2P scheduler: parent selection, seed triggering, preheat jobs (Dragonfly scheduler)'],
  ['peer', 'P2P node agent: registry mirror / HTTPS proxy, piece store, seed mode (dfdaemon)'],
  ['get', 'download one URL through the local peer (dfget)'],
  ['bench', 'HelloBench-style start-up and distribution benchmarks with an HTML report'],
];

export interface SubcommandModule {
  // biome-ignore lint/suspicious/noConfusingVoidType: subcommand modules' run() returns Promise<void> or Promise<number>
  run(argv: string[]): Promise<number | void>;
}

function usage(): string {
  const width = Math.max(...SUBCOMMANDS.map(([n]) => n.length));
  const lines = SUBCOMMANDS.map(([n, s]) => `  ${n.padEnd(width)}  ${s}`);
  return (
    `usage: ferry <command> [options]\n\ncommands:\n${lines.join('\n')}\n\n` +
    `Run 'ferry <command> --help' for the options of a command.\n`
  );
}

/**
 * Exit status when stdout or stderr is a pipe whose reader went away (`ferry task list | head -1`):
 * 128 + SIGPIPE, what a shell reports for coreutils and Go programs killed by SIGPIPE. Node ignores
 * SIGPIPE and turns the broken pipe into an EPIPE error on the stream instead.
 */
export const BROKEN_PIPE_EXIT = 141;

let stdioGuarded = false;

/**
 * Makes a closed output pipe end the process quietly (no stack trace, status 141) for every
 * subcommand: the reader has all it wanted, as with `cmd | head`.
 */
export function exitQuietlyOnBrokenPipe(): void {
  if (stdioGuarded) return;
  stdioGuarded = true;
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE' || err.code === 'ERR_STREAM_DESTROYED') process.exit(BROKEN_PIPE_EXIT);
      throw err;
    });
  }
}

/** A commander error (help shown, option missing …) that commander has already printed. */
function commanderExit(err: unknown): number | undefined {
  const e = err as { code?: unknown; exitCode?: unknown };
  return typeof e?.code === 'string' && e.code.startsWith('commander.') && typeof e.exitCode === 'number' ? e.exitCode : undefined;
}

/** Runs the CLI; resolves to the process exit code. */
export async function main(argv: string[]): Promise<number> {
  exitQuietlyOnBrokenPipe();
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '-h' || cmd === '--help' || cmd === 'help') {
    process.stdout.write(usage());
    return cmd === undefined ? 2 : 0;
  }
  if (cmd === '--version' || cmd === 'version') {
    process.stdout.write('ferry 0.1.0\n');
    return 0;
  }
  if (!SUBCOMMANDS.some(([n]) => n === cmd)) {
    process.stderr.write(`ferry: unknown command ${JSON.stringify(cmd)}\n\n${usage()}`);
    return 2;
  }
  const modulePath = `./${cmd}.js`;
  let mod: SubcommandModule;
  try {
    mod = (await import(modulePath)) as SubcommandModule;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' && String((err as Error).message).includes(`${cmd}.js`)) {
      process.stderr.write(`ferry: command ${cmd} is not available in this build\n`);
      return 2;
    }
    throw err;
  }
  // biome-ignore lint/suspicious/noConfusingVoidType: subcommand modules' run() returns Promise<void> or Promise<number>
  let code: number | void;
  try {
    code = await mod.run(rest);
  } catch (err) {
    // subcommands that let commander's exitOverride errors through (`--help`, a missing option):
    // commander has printed the help or the error already
    const exit = commanderExit(err);
    if (exit !== undefined) return exit;
    throw err;
  }
  return typeof code === 'number' ? code : 0;
}
