/**
 * @module cli/credentials
 * The registry options every command that talks to registries shares: the credential chain's
 * flags (`--user`, `--password-stdin`, `--pull-secret`, `--docker-config`). Secrets are never
 * taken from a command line other than `--user` (kept for compatibility; `--password-stdin` is the
 * way that leaves no trace in `ps` or shell history).
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { FerryError } from '../core/index.js';
import { credentialChain, parseUserPassword, type ChainConfig, type CredentialChain, type Credentials } from '../remote/index.js';
import type { CredentialFlags } from './credential-flags.js';

export { addCredentialOptions, mayHaveCredentials, type CredentialFlags } from './credential-flags.js';

const stderrLine = (l: string): void => {
  process.stderr.write(`${l}\n`);
};

/** Reads all of standard input (the password for --password-stdin). */
export function readPasswordStdin(): string {
  return readFileSync(0, 'utf8');
}

/** The explicit credentials the flags give (undefined: none); INVALID_ARGUMENT for a malformed --user. */
export function explicitCredentials(
  f: CredentialFlags,
  readStdin: () => string = readPasswordStdin,
  warn: (line: string) => void = stderrLine,
): Credentials | undefined {
  if (f.passwordStdin) {
    if (f.user === undefined) throw new Error('--password-stdin needs --user USER');
    if (f.user.includes(':')) throw new Error('--password-stdin: give --user USER without a password');
    // one final newline (echo, a here-string) is not part of the password
    const password = readStdin().replace(/\r?\n$/, '');
    if (!password) throw new Error('--password-stdin: standard input was empty');
    return { username: f.user, password };
  }
  if (f.user === undefined) return undefined;
  const c = parseUserPassword(f.user);
  warn(
    'warning: --user USER:PASSWORD puts the password on the command line, where every user of this machine can read it (ps, /proc); use --user USER --password-stdin',
  );
  return c;
}

/** The chain configuration the flags describe (plus `extra`: supplied sources, a fixed host for the explicit credentials). */
export function chainConfig(f: CredentialFlags, extra: Partial<ChainConfig> = {}): ChainConfig {
  const c: ChainConfig = { ...extra };
  if (f.pullSecret?.length) c.pullSecrets = [...(extra.pullSecrets ?? []), ...f.pullSecret];
  if (f.dockerConfig !== undefined) c.dockerConfig = f.dockerConfig;
  return c;
}

export function chainFromFlags(f: CredentialFlags, extra: Partial<ChainConfig> = {}): CredentialChain {
  return credentialChain(chainConfig(f, extra));
}

/**
 * The credentials of one side of a two-registry command (`convert`, `check`): `--<side>-creds-file
 * FILE` (a file holding USER:PASSWORD, the way that leaves no trace in `ps`) or `--<side>-creds
 * USER:PASSWORD` (kept for compatibility; a warning says the password is visible to every user of the
 * machine). Undefined: neither flag, the command falls back to docker's config.json.
 */
export function sideCredentials(
  o: Record<string, unknown>,
  side: 'source' | 'target',
  warn: (line: string) => void = stderrLine,
  read: (path: string) => string = (p) => readFileSync(p, 'utf8'),
): Credentials | undefined {
  const file = o[`${side}CredsFile`];
  const inline = o[`${side}Creds`];
  if (typeof file === 'string' && typeof inline === 'string') {
    throw new FerryError('INVALID_ARGUMENT', `give --${side}-creds or --${side}-creds-file, not both`);
  }
  if (typeof file === 'string') {
    let text: string;
    try {
      text = read(file);
    } catch (err) {
      throw new FerryError('INVALID_ARGUMENT', `--${side}-creds-file ${file}: ${(err as Error).message}`);
    }
    return parseUserPassword(text.replace(/\r?\n$/, ''), `--${side}-creds-file's content`);
  }
  if (typeof inline !== 'string' || !inline) return undefined;
  const c = parseUserPassword(inline, `--${side}-creds`);
  warn(
    `warning: --${side}-creds puts the password on the command line, where every user of this machine can read it (ps, /proc); use --${side}-creds-file or docker's config.json`,
  );
  return c;
}

/** Adds `--<side>-creds` and `--<side>-creds-file` for both sides. */
export function addSideCredentialOptions(cmd: Command, fallback: string): Command {
  for (const side of ['source', 'target'] as const) {
    cmd
      .option(`--${side}-creds <user:password>`, `${side} credentials (visible in ps: prefer --${side}-creds-file; default ${fallback})`)
      .option(`--${side}-creds-file <file>`, `file holding the ${side} credentials as USER:PASSWORD`);
  }
  return cmd;
}
