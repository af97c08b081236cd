/**
 * @module registry/console-links
 * The services the console calls (console.accel, console.scheduler): the Authorization header each
 * wants, read once at start from an environment variable or an owner-only file.
 */
import type { RegistryConfig } from '../config/registry.js';
import { readSecret } from '../config/secret.js';

export type ServiceLink = NonNullable<RegistryConfig['console']['accel']>;

/** The Authorization header value of `link` (undefined when it names none). */
export function linkHeader(what: string, link: ServiceLink, env: NodeJS.ProcessEnv = process.env): string | undefined {
  return readSecret(
    {
      what,
      env: link.authHeaderEnv ? { name: link.authHeaderEnv, key: 'authHeaderEnv' } : undefined,
      file: link.authHeaderFile ? { path: link.authHeaderFile, key: 'authHeaderFile' } : undefined,
    },
    env,
  );
}
