/**
 * @module p2p/peer/upstreams
 * Which upstreams the node proxy may reach: the registries the node is configured for, nothing
 * else (the proxy is not an open forward proxy). Allowed are the mirror URL
 * (`proxy.registryMirror.url`), the CONNECT interception patterns (`proxy.hijackHosts`, tested the
 * way interception tests them), the rules' redirect targets, and `proxy.allowedHosts`: literal
 * `host`, `host:port`, `[v6]:port`, or a regex starting with `^` matched against the whole
 * `host:port`. Hosts compare case-insensitively; a missing port is the scheme's default. Entry
 * `docker.io` also allows `registry-1.docker.io` (where `?ns=docker.io` goes).
 */
import { FerryError } from '../../core/index.js';
import type { PeerConfig } from '../../config/peer.js';

const LITERAL = /^(\[[0-9a-f:.]+\]|[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?)(?::(\d{1,5}))?$/i;

/** `host:port` of a URL (lowercase host, brackets around IPv6, default port filled in). */
export function hostPortOf(u: URL): string {
  return `${u.hostname.toLowerCase()}:${u.port || (u.protocol === 'https:' ? '443' : '80')}`;
}

/** A `host:port` CONNECT target normalized like hostPortOf. */
export function normalizeTarget(target: string): string | undefined {
  const m = LITERAL.exec(target);
  if (!m || m[2] === undefined) return undefined;
  return `${m[1]!.toLowerCase()}:${Number(m[2])}`;
}

export class UpstreamPolicy {
  private readonly exact = new Set<string>();
  private readonly anyPort = new Set<string>();
  private readonly patterns: RegExp[] = [];
  private readonly hijack: RegExp[];
  /** Literal registries (for the hosts.toml snippets): `host[:port]`. */
  readonly literals: string[] = [];

  constructor(proxy: Pick<PeerConfig['proxy'], 'registryMirror' | 'hijackHosts' | 'rules' | 'allowedHosts'>) {
    if (proxy.registryMirror.url) this.exact.add(hostPortOf(new URL(proxy.registryMirror.url)));
    this.hijack = proxy.hijackHosts.map((h) => new RegExp(h));
    for (const r of proxy.rules) if (r.redirect) this.addLiteral(r.redirect, 'proxy.rules[].redirect');
    for (const e of proxy.allowedHosts) {
      if (e.startsWith('^')) {
        try {
          this.patterns.push(new RegExp(`^(?:${e})$`, 'i'));
        } catch (err) {
          throw new FerryError('INVALID_ARGUMENT', `proxy.allowedHosts: invalid regex ${JSON.stringify(e)}: ${(err as Error).message}`);
        }
      } else {
        this.addLiteral(e, 'proxy.allowedHosts');
        this.literals.push(e.toLowerCase());
      }
    }
  }

  private addLiteral(e: string, key: string): void {
    const m = LITERAL.exec(e);
    if (!m)
      throw new FerryError(
        'INVALID_ARGUMENT',
        `${key}: ${JSON.stringify(e)} is not host, host:port or [v6]:port${key === 'proxy.allowedHosts' ? ' (or a regex starting with ^)' : ''}`,
      );
    const host = m[1]!.toLowerCase();
    const hosts = host === 'docker.io' ? [host, 'registry-1.docker.io'] : [host];
    for (const h of hosts) {
      if (m[2] === undefined) this.anyPort.add(h);
      else this.exact.add(`${h}:${Number(m[2])}`);
    }
  }

  /** True when the proxy may connect to `hostPort` (normalized `host:port`). */
  allows(hostPort: string): boolean {
    if (this.exact.has(hostPort)) return true;
    const host = hostPort.slice(0, hostPort.lastIndexOf(':'));
    if (this.anyPort.has(host)) return true;
    return this.patterns.some((re) => re.test(hostPort)) || this.hijack.some((re) => re.test(hostPort));
  }

  /** True when only patterns (no literal hosts) could allow some registries. */
  get hasPatterns(): boolean {
    return this.patterns.length > 0 || this.hijack.length > 0;
  }
}
