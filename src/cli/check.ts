/**
 * @module cli/check
 * `ferry check --source REF --target REF`: verifies a Nydus image against its source (nydusify check).
 * Prints the differences (or a summary) and exits 1 when there are any.
 */
import { Command, Option } from 'commander';
import { FerryError, formatBytes } from '../core/index.js';
import { createLogger } from '../observe/index.js';
import { parseReference } from '../remote/index.js';
import { checkImage, type CheckOptions } from '../convert/index.js';
import { sideClient, creds, localfsBackend } from './convert.js';

export async function run(argv: string[]): Promise<number> {
  const cmd = new Command('ferry check')
    .description('verify a converted Nydus image against its source image')
    .requiredOption('--source <ref>', 'source (OCI) image reference')
    .requiredOption('--target <ref>', 'Nydus image reference')
    .option('--source-insecure', 'plain HTTP to the source registry')
    .option('--target-insecure', 'plain HTTP to the target registry')
    .option('--source-creds <user:password>', 'source credentials')
    .option('--target-creds <user:password>', 'target credentials')
    .option('--platform <list>', 'os/arch[,…] to check (default: every Nydus manifest)')
    .addOption(new Option('--backend-type <type>', 'blobs stored outside the registry').choices(['localfs']))
    .option('--backend-config <json>', 'backend config, e.g. {"dir":"/path"}')
    .option('--work-dir <dir>', 'parent of the temporary work directory')
    .option('--json', 'print the result as JSON')
    .exitOverride();
  try {
    cmd.parse(argv, { from: 'user' });
  } catch (err) {
    return (err as { exitCode?: number }).exitCode ?? 2;
  }
  const o = cmd.opts<Record<string, string | boolean | undefined>>();
  const log = createLogger({ name: 'check', level: process.env.FERRY_LOG_LEVEL ?? 'warn' });
  try {
    const src = parseReference(String(o.source));
    const dst = parseReference(String(o.target));
    const opts: CheckOptions = {
      source: src, target: dst, log,
      sourceClient: sideClient(src.registry, Boolean(o.sourceInsecure), creds(o.sourceCreds), log),
      targetClient: sideClient(dst.registry, Boolean(o.targetInsecure), creds(o.targetCreds), log),
    };
    if (o.platform) opts.platforms = String(o.platform).split(',').map((s) => s.trim()).filter(Boolean);
    if (o.workDir) opts.workDir = String(o.workDir);
    if (o.backendType) opts.backend = localfsBackend(o.backendConfig);
    const res = await checkImage(opts);
    if (o.json) {
      process.stdout.write(`${JSON.stringify(res, null, 2)}\n`);
    } else {
      for (const c of res.checked) {
        process.stdout.write(`${c.platform ? `${c.platform}: ` : ''}${c.targetDigest} vs ${c.sourceDigest}: ${c.entries} entries, ${c.files} files, ${formatBytes(c.bytes)} of data verified\n`);
      }
      for (const d of res.differences) {
        process.stdout.write(`DIFF ${d.platform ? `[${d.platform}] ` : ''}/${d.path}: ${d.what}${d.source !== undefined || d.target !== undefined ? ` (source ${d.source ?? '-'}, nydus ${d.target ?? '-'})` : ''}\n`);
      }
      process.stdout.write(res.ok ? 'check passed\n' : `check FAILED: ${res.differences.length} difference(s)\n`);
    }
    return res.ok ? 0 : 1;
  } catch (err) {
    process.stderr.write(`ferry check: ${(err as Error).message}\n`);
    return FerryError.hasCode(err, 'INVALID_ARGUMENT') ? 2 : 1;
  }
}
