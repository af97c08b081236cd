/**
 * @module cli/registry
 * `ferry registry --listen HOST:PORT --data DIR [--admin-password PW] [--config FILE]` serves the
 * registry until SIGINT/SIGTERM; `ferry registry gc --data DIR [--dry-run] [--min-age DUR]`
 * collects unreferenced blobs (safe while the registry runs).
 */
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { parse as parseYaml } from 'yaml';
import { createLogger } from '../observe/index.js';
import { startRegistry, runGc, parseRegistryConfig, type RegistryConfigInput } from '../registry/index.js';
import { untilSignal, parseArgs } from './lifecycle.js';

function loadConfig(file: string | undefined): RegistryConfigInput {
  if (!file) return {};
  const text = readFileSync(file, 'utf8');
  const doc = parseYaml(text) as unknown;
  return (doc ?? {}) as RegistryConfigInput;
}

export async function run(argv: string[]): Promise<number> {
  if (argv[0] === 'gc') return runGcCommand(argv.slice(1));
  const cmd = new Command('ferry registry')
    .description('OCI Distribution v1.1 registry with Harbor projects, robots, token auth, webhooks (subcommand: gc)')
    .option('--listen <addr>', 'host:port to listen on (default 127.0.0.1:5000)')
    .option('--data <dir>', 'data directory (blobs, uploads, registry.db)')
    .option('--admin-password <pw>', 'admin password (else config, FERRY_ADMIN_PASSWORD, stored, or generated)')
    .option('--config <file>', 'YAML/JSON config file')
    .option('--print-config', 'print the effective config (redacted) and exit')
    .exitOverride();
  const parsed = parseArgs(cmd, argv);
  if (parsed !== undefined) return parsed;
  const o = cmd.opts<{ listen?: string; data?: string; adminPassword?: string; config?: string; printConfig?: boolean }>();
  const fileConfig = loadConfig(o.config);
  const merged: RegistryConfigInput = { ...fileConfig, ...(o.listen ? { listen: o.listen } : {}), ...(o.data ? { dataDir: o.data } : {}) };
  const config = parseRegistryConfig(merged);
  if (o.printConfig) {
    process.stdout.write(`${JSON.stringify({ ...config, adminPassword: config.adminPassword ? '<redacted>' : undefined }, null, 2)}\n`);
    return 0;
  }
  if (!config.dataDir) {
    process.stderr.write('ferry registry: --data DIR is required\n');
    return 2;
  }
  const log = createLogger({ name: 'registry' });
  const reg = await startRegistry({
    dataDir: config.dataDir,
    listen: config.listen,
    config: merged,
    log,
    ...(o.adminPassword ? { adminPassword: o.adminPassword } : {}),
  });
  process.stdout.write(`ferry registry listening on ${reg.url}\n`);
  if (reg.adminPasswordGenerated) {
    process.stdout.write(`admin password (generated, shown once): ${reg.adminPassword}\n`);
  }
  await untilSignal(() => reg.close(), log);
  return 0;
}

async function runGcCommand(argv: string[]): Promise<number> {
  const cmd = new Command('ferry registry gc')
    .description('delete blobs that no manifest references (safe while the registry runs)')
    .requiredOption('--data <dir>', 'data directory of the registry')
    .option('--dry-run', 'only report what would be deleted')
    .option('--min-age <duration>', 'keep blobs committed or touched more recently than this (default 1h)')
    .option('--config <file>', 'YAML/JSON config file')
    .exitOverride();
  const parsed = parseArgs(cmd, argv);
  if (parsed !== undefined) return parsed;
  const o = cmd.opts<{ data: string; dryRun?: boolean; minAge?: string; config?: string }>();
  const file = loadConfig(o.config);
  const config: RegistryConfigInput = {
    ...file,
    ...(o.minAge !== undefined ? { gc: { ...(file.gc ?? {}), minAge: o.minAge } } : {}),
  };
  const log = createLogger({ name: 'registry-gc' });
  const r = await runGc({ dataDir: o.data, dryRun: o.dryRun === true, config, log });
  process.stdout.write(
    `${JSON.stringify({ dryRun: r.dryRun, blobsScanned: r.blobsScanned, blobsDeleted: r.blobsDeleted.length, bytesFreed: r.bytesFreed, uploadsRemoved: r.uploadsRemoved, deleted: r.blobsDeleted })}\n`,
  );
  return 0;
}
