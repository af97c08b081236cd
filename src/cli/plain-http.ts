/**
 * @module cli/plain-http
 * One spelling for "this registry speaks plain HTTP" across the commands: `--plain-http` (the
 * command's one registry; `ferry snapshotter`, which serves many: `--plain-http <host>`,
 * repeatable), `--source-plain-http` / `--target-plain-http` where a command has two. The older
 * spellings (`--insecure`, `--source-insecure`, `--target-insecure`, `--insecure-registry`) still
 * work as hidden aliases, so scripts keep running; `--help` shows only the new ones.
 */
import { type Command, Option } from 'commander';

const camel = (flag: string): string => flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** A boolean `--<name>` with hidden `--<alias>`es that set it too. */
export function plainHttpFlag(cmd: Command, name: string, help: string, aliases: string[]): Command {
  cmd.option(`--${name}`, help);
  for (const a of aliases) cmd.addOption(new Option(`--${a}`, `old spelling of --${name}`).hideHelp().implies({ [camel(name)]: true }));
  return cmd;
}

const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

/** A repeatable `--plain-http <host>` with a hidden `--<alias> <host>`; read it back with `plainHttpHosts`. */
export function plainHttpHostsOption(cmd: Command, help: string, alias: string): Command {
  cmd.option('--plain-http <host>', help, collect);
  return cmd.addOption(new Option(`--${alias} <host>`, 'old spelling of --plain-http <host>').hideHelp().argParser(collect));
}

/** The hosts given with `--plain-http <host>` and with its hidden alias. */
export function plainHttpHosts(opts: Record<string, unknown>, alias: string): string[] {
  return [...((opts.plainHttp as string[] | undefined) ?? []), ...((opts[camel(alias)] as string[] | undefined) ?? [])];
}
