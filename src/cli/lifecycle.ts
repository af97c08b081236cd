/**
 * @module cli/lifecycle
 * Signal handling shared by long-running subcommands: the first SIGINT/SIGTERM runs `stop` once,
 * a second one exits at once.
 */
import type { Command } from 'commander';
import type { Logger } from '../observe/index.js';

/** Resolves after a signal arrived and `stop` finished. */
export function untilSignal(stop: () => Promise<void>, log?: Logger): Promise<void> {
  return new Promise((resolve) => {
    let stopping = false;
    const onSignal = (sig: NodeJS.Signals): void => {
      if (stopping) {
        process.stderr.write(`ferry: second ${sig}, exiting now\n`);
        process.exit(130);
      }
      stopping = true;
      log?.info({ signal: sig }, 'stopping');
      stop()
        .then(
          () => resolve(),
          (err: unknown) => {
            log?.error({ err }, 'error while stopping');
            process.exitCode = 1;
            resolve();
          },
        )
        .finally(() => {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
        });
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

/**
 * Parses a subcommand's arguments with commander (set up with `exitOverride()`): undefined when
 * the command should go on, else the exit status commander chose (help, version, usage errors: 2).
 */
export function parseArgs(cmd: Command, argv: string[]): number | undefined {
  try {
    cmd.parse(argv, { from: 'user' });
    return undefined;
  } catch (err) {
    return (err as { exitCode?: number }).exitCode ?? 2;
  }
}
