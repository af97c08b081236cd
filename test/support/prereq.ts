/**
 * Prerequisite checks for tests that need root, Debian tools, FUSE or network namespaces. A missing
 * prerequisite FAILS the test with a message naming it (never a silent skip): the suite's install
 * command (scripts/test-all.sh) installs everything listed here.
 */
import { accessSync, constants } from 'node:fs';
import { execFileSync } from 'node:child_process';

/** Throws naming every missing command (looked up on PATH) or when not running as root. */
export function requirePrereqs(opts: { root?: boolean; commands?: string[]; devices?: string[] }): void {
  const missing: string[] = [];
  if (opts.root && process.getuid?.() !== 0) missing.push('root privileges (run the suite as root)');
  for (const cmd of opts.commands ?? []) {
    try {
      execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    } catch {
      missing.push(`command '${cmd}' (install with scripts/install-deps.sh)`);
    }
  }
  for (const dev of opts.devices ?? []) {
    try {
      accessSync(dev, constants.R_OK | constants.W_OK);
    } catch {
      missing.push(`device ${dev}`);
    }
  }
  if (missing.length) throw new Error(`missing prerequisite: ${missing.join(', ')}`);
}
