/**
 * @module cli/check
 * `ferry check --source REF --target REF`: verifies a Nydus image against its source (nydusify check).
 * Prints the differences (or a summary) and exits 1 when there are any.
 */
import { Command, Option } from 'commander';
import { FerryError, formatBytes } from '../core/index.js';
import { createLogger } from '../observe/index.js';
import { parseReference } from '../remote/index.js';
import { checkImage, type CheckOptions, type CheckResult } from '../convert/index.js';
import { sideClient, localfsBackend } from './convert.js';
import { addSideCredentialOptions, sideCredentials } from './credentials.js';
import { parseArgs } from './lifecycle.js';
import { plainHttpFlag } from './plain-http.js';

/** The text report: per image checked, source then Nydus (as in `--source … --target …`), then the differences. */
export function checkReport(res: CheckResult): string {
  const lines: string[] = [];
  for (const c of res.checked) {
    lines.push(
      `${c.platform ? `${c.platform}: ` : ''}source ${c.sourceDigest} vs nydus ${c.targetDigest}: ${c.entries} entries, ${c.files} files, ${formatBytes(c.bytes)} of data verified`,
    );
  }
  for (const d of res.differences) {
    lines.push(
      `DIFF ${d.platform ? `[${d.platform}] ` : ''}/${d.path}: ${d.what}${d.source !== undefined || d.target !== undefined ? ` (source ${d.source ?? '-'}, nydus ${d.target ?? '-'})` : ''}`,
    );
  }
  lines.push(res.ok ? 'check passed' : `check FAILED: ${res.differences.length} difference(s)`);
  return `${lines.join('\n')}\n`;
}

export async function run(argv: string[]): Promise<number> {
  const cmd = new Command('ferry check')
    .description('verify a converted Nydus image against its source image')
    .requiredOption('--source <ref>', 'source (OCI) image reference')
    .requiredOption('--target <ref>', 'Nydus image reference')
    .option('--platform <list>', 'os/arch[,…] to check (default: every Nydus manifest)')
    .addOption(new Option('--backend-type <type>', 'blobs stored outside the registry').choices(['localfs']))
    .option('--backend-config <json>', 'backend config, e.g. {"dir":"/path"}')
    .option('--work-dir <dir>', 'parent of the temporary work directory')
    .option('--json', 'print the result as JSON')
    .exitOverride();
  addSideCredentialOptions(cmd, '~/.docker/config.json');
  plainHttpFlag(cmd, 'source-plain-http', 'the source registry speaks plain HTTP', ['source-insecure']);
  plainHttpFlag(cmd, 'target-plain-http', 'the target registry speaks plain HTTP', ['target-insecure']);
  const parsed = parseArgs(cmd, argv);
  if (parsed !== undefined) return parsed;
  const o = cmd.opts<Record<string, string | boolean | undefined>>();
  const log = createLogger({ name: 'check', level: process.env.FERRY_LOG_LEVEL ?? 'warn' });
  try {
    const src = parseReference(String(o.source));
    const dst = parseReference(String(o.target));
    const opts: CheckOptions = {
      source: src,
      target: dst,
      log,
      sourceClient: sideClient(src.registry, Boolean(o.sourcePlainHttp), sideCredentials(o, 'source'), log),
      targetClient: sideClient(dst.registry, Boolean(o.targetPlainHttp), sideCredentials(o, 'target'), log),
    };
    if (o.platform)
      opts.platforms = String(o.platform)
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
    if (o.workDir) opts.workDir = String(o.workDir);
    if (o.backendType) opts.backend = localfsBackend(o.backendConfig);
    const res = await checkImage(opts);
    process.stdout.write(o.json ? `${JSON.stringify(res, null, 2)}\n` : checkReport(res));
    return res.ok ? 0 : 1;
  } catch (err) {
    process.stderr.write(`ferry check: ${(err as Error).message}\n`);
    return FerryError.hasCode(err, 'INVALID_ARGUMENT') ? 2 : 1;
  }
}
