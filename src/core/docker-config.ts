/**
 * @module core/docker-config
 * Where Docker's `config.json` is by default: `$DOCKER_CONFIG/config.json`, else
 * `~/.docker/config.json`. Here rather than in remote/ so that a command can tell cheaply whether
 * there is one before it loads the credential chain (`ferry pull` relaying to the snapshotter).
 */
import { homedir } from 'node:os';
import { join } from 'node:path';

/** The default Docker config path (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`). */
export function defaultDockerConfigPath(): string {
  return join(process.env.DOCKER_CONFIG ?? join(homedir(), '.docker'), 'config.json');
}
