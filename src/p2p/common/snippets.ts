/**
 * @module p2p/common/snippets
 * Configuration snippets `ferry peer` prints: containerd `hosts.toml` (mirror mode) and the
 * systemd drop-in for HTTP(S)_PROXY mode.
 */

/** certs.d/<registry>/hosts.toml pointing containerd at the peer; `_default` when no registry given. */
export function hostsToml(proxyUrl: string, registry?: { name: string; url: string }): string {
  const lines: string[] = [];
  if (registry) lines.push(`# /etc/containerd/certs.d/${registry.name}/hosts.toml`, `server = "${registry.url}"`, '');
  else lines.push('# /etc/containerd/certs.d/_default/hosts.toml  (every registry; upstream from ?ns=)');
  lines.push(`[host."${proxyUrl}"]`, '  capabilities = ["pull", "resolve"]');
  if (registry) lines.push(`  [host."${proxyUrl}".header]`, `    X-Dragonfly-Registry = "${registry.url}"`);
  return `${lines.join('\n')}\n`;
}

export function httpProxyDropIn(proxyUrl: string, caCertPath?: string): string {
  const lines = [
    '# /etc/systemd/system/containerd.service.d/http-proxy.conf',
    '[Service]',
    `Environment="HTTP_PROXY=${proxyUrl}"`,
    `Environment="HTTPS_PROXY=${proxyUrl}"`,
    '# then: systemctl daemon-reload && systemctl restart containerd',
  ];
  if (caCertPath) {
    lines.push(`# trust the interception CA: cp ${caCertPath} /usr/local/share/ca-certificates/ferry-p2p.crt && update-ca-certificates`);
  }
  return `${lines.join('\n')}\n`;
}
