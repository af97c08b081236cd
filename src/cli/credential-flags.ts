/**
 * @module cli/credential-flags
 * The credential chain's flags (`--user`, `--password-stdin`, `--pull-secret`, `--docker-config`)
 * and whether they can yield anything at all — without loading the chain itself (remote/, ~0.1 s of
 * module loading), so that `ferry pull` relaying to the snapshotter loads it only when it may
 * find credentials. The chain built from these flags is credentials.ts.
 */
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { defaultDockerConfigPath } from '../core/index.js';

export interface CredentialFlags {
  user?: string;
  passwordStdin?: boolean;
  pullSecret?: string[];
  /** a path, or false for `--no-docker-config` */
  dockerConfig?: string | false;
}

const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

/**
 * Adds the chain's flags. `explicit`: the command takes `--user`/`--password-stdin` (commands
 * that pull for one image); servers take only the file sources.
 */
export function addCredentialOptions(cmd: Command, o: { explicit: boolean }): Command {
  if (o.explicit) {
    cmd
      .option('--user <user[:password]>', 'registry credentials (USER:PASSWORD, or USER with --password-stdin)')
      .option('--password-stdin', "read the password (a robot's secret) from standard input");
  }
  return cmd
    .option(
      '--pull-secret <path>',
      'Kubernetes image pull secret: a .dockerconfigjson file or a secret volume directory (repeatable)',
      collect,
    )
    .option(
      '--docker-config <file>',
      'Docker config.json (auths, credHelpers, credsStore); default $DOCKER_CONFIG/config.json or ~/.docker/config.json',
    )
    .option('--no-docker-config', 'do not read a Docker config.json');
}

/**
 * Whether the chain these flags describe can find credentials: explicit ones, a pull secret, a
 * named config file, or the default Docker config file on disk. False means the chain would answer
 * none for every image (`dockerConfigExists` is for tests).
 */
export function mayHaveCredentials(
  f: CredentialFlags,
  dockerConfigExists: () => boolean = () => existsSync(defaultDockerConfigPath()),
): boolean {
  if (f.user !== undefined || f.passwordStdin || f.pullSecret?.length) return true;
  if (f.dockerConfig === false) return false;
  return typeof f.dockerConfig === 'string' || dockerConfigExists();
}
