/**
 * @module cli/peer
 * `ferry peer --scheduler URL --data DIR [...]`: the node agent (registry mirror / HTTP(S) proxy,
 * piece store, upload server, seed mode). Prints the containerd hosts.toml snippet and the
 * HTTP_PROXY drop-in for its own addresses.
 */
import { Command } from 'commander';
import { loadPeerConfigFile, type PeerConfigInput } from '../config/peer.js';
import { createLogger } from '../observe/index.js';
import { hostsToml, httpProxyDropIn, startPeer, UpstreamPolicy } from '../p2p/index.js';
import { untilSignal, parseArgs } from './lifecycle.js';
import { CLUSTER_TOKEN_FILE_HELP, clusterOverride } from './cluster.js';

export async function run(argv: string[]): Promise<number> {
  const cmd = new Command('ferry peer')
    .description('P2P node agent: registry mirror / HTTPS proxy, piece store, upload, seed mode')
    .option(
      '--scheduler <url...>',
      'scheduler URL(s); tasks are sharded by consistent hash (none: every download goes to the origin, the peer is a caching proxy)',
    )
    .option('--data <dir>', 'data directory (piece store, generated CA)')
    .option('--proxy-listen <addr>', 'proxy address (default 127.0.0.1:65001)')
    .option(
      '--upload-listen <addr>',
      'upload (piece) server address (default 0.0.0.0:65002; a non-loopback address needs a cluster secret)',
    )
    .option('--cluster-token-file <file>', CLUSTER_TOKEN_FILE_HELP)
    .option('--seed', 'seed peer: downloads from the origin when the scheduler says so')
    .option('--registry-mirror <url>', 'default upstream registry for mirror-mode requests')
    .option('--hijack <regex...>', 'CONNECT hosts (host:port regex) whose TLS is intercepted (and which the proxy may reach)')
    .option(
      '--allow-host <host...>',
      'further registries the proxy may reach: host, host:port, or a regex starting with ^ (config proxy.allowedHosts); all others get 403',
    )
    .option('--ca-cert <file>', 'CA certificate for HTTPS interception')
    .option('--ca-key <file>', 'CA key for HTTPS interception')
    .option('--upstream-ca <file...>', 'extra CA certificates trusted for upstream https')
    .option('--hostname <name>', 'hostname announced to the scheduler')
    .option('--ip <ip>', 'IP announced to the scheduler')
    .option('--config <file>', 'YAML config file')
    .exitOverride();
  const parsed = parseArgs(cmd, argv);
  if (parsed !== undefined) return parsed;
  const o = cmd.opts<{
    scheduler?: string[];
    data?: string;
    proxyListen?: string;
    uploadListen?: string;
    seed?: boolean;
    registryMirror?: string;
    hijack?: string[];
    caCert?: string;
    caKey?: string;
    upstreamCa?: string[];
    hostname?: string;
    ip?: string;
    config?: string;
    clusterTokenFile?: string;
    allowHost?: string[];
  }>();
  const log = createLogger({ name: 'peer' });
  try {
    const c = loadPeerConfigFile(o.config);
    const cluster = clusterOverride(o.clusterTokenFile);
    const cfg: PeerConfigInput = {
      ...c,
      ...(cluster ? { cluster } : {}),
      host: { ...(c.host ?? {}), ...(o.hostname ? { hostname: o.hostname } : {}), ...(o.ip ? { ip: o.ip } : {}) },
      proxy: {
        ...(c.proxy ?? {}),
        ...(o.registryMirror ? { registryMirror: { ...(c.proxy?.registryMirror ?? {}), url: o.registryMirror } } : {}),
        ...(o.hijack ? { hijackHosts: o.hijack } : {}),
        ...(o.allowHost ? { allowedHosts: [...(c.proxy?.allowedHosts ?? []), ...o.allowHost] } : {}),
        ...(o.caCert ? { caCert: o.caCert } : {}),
        ...(o.caKey ? { caKey: o.caKey } : {}),
        ...(o.upstreamCa ? { upstreamCaCerts: o.upstreamCa } : {}),
      },
    };
    const p = await startPeer({
      config: cfg,
      log,
      ...(o.data ? { dataDir: o.data } : {}),
      ...(o.scheduler ? { schedulers: o.scheduler } : {}),
      ...(o.seed ? { seed: true } : {}),
      ...(o.proxyListen ? { proxyListen: o.proxyListen } : {}),
      ...(o.uploadListen ? { uploadListen: o.uploadListen } : {}),
    });
    const out: string[] = [`peer ${p.hostId}: proxy ${p.proxyUrl}, upload ${p.uploadUrl}`, ''];
    // One hosts.toml per registry the proxy may reach (anything else gets 403).
    const registries: { name: string; url: string }[] = [];
    const mirror = p.config.proxy.registryMirror.url;
    if (mirror) registries.push({ name: new URL(mirror).host, url: mirror.replace(/\/+$/, '') });
    const policy = new UpstreamPolicy(p.config.proxy);
    for (const h of policy.literals) {
      if (!registries.some((r) => r.name === h))
        registries.push({
          name: h,
          url: `${h === 'docker.io' ? 'https://registry-1.docker.io' : `${p.config.proxy.registryMirror.nsScheme}://${h}`}`,
        });
    }
    out.push('containerd registry mirror (config_path = "/etc/containerd/certs.d"):', '');
    for (const r of registries) out.push(hostsToml(p.proxyUrl, r));
    if (policy.hasPatterns) {
      out.push('# registries matched by proxy.allowedHosts patterns / --hijack (others get 403):');
      out.push(hostsToml(p.proxyUrl));
    }
    if (registries.length === 0 && !policy.hasPatterns) {
      out.push(
        '# this peer proxies no registry yet: give --registry-mirror URL or --allow-host HOST[:PORT] (config proxy.allowedHosts)',
        '',
      );
    }
    out.push(
      'HTTP(S)_PROXY mode (only the allowed registries; others get 403 — exempt them with NO_PROXY):',
      '',
      httpProxyDropIn(p.proxyUrl, p.ca?.certPath),
    );
    if (p.ca) {
      out.push(`HTTPS interception CA: ${p.ca.certPath}${p.ca.generated ? ` (generated now; key ${p.ca.keyPath}, mode 0600)` : ''}`);
      out.push('Clients must trust it, e.g. SSL_CERT_FILE, `ctr images pull --tlscacert`, or the system trust store:', '', p.ca.certPem);
    }
    process.stdout.write(`${out.join('\n')}\n`);
    await untilSignal(() => p.close(), log);
    return 0;
  } catch (err) {
    process.stderr.write(`ferry peer: ${(err as Error).message}\n`);
    return 1;
  }
}
