/**
 * @module cli/task
 * `ferry task create REF [--sync]`, `ferry task list` (accelctl's role) and `ferry task retry ID`
 * (Ferry: queue a FAILED task again) against a running `ferry accel` (`--addr`, default
 * localhost:2077). All need `--auth-header` (or
 * FERRY_ACCEL_AUTH_HEADER): the webhook.auth_header of the source host in accel's config.
 */
import { Command } from 'commander';
import { FerryError } from '../core/index.js';
import { AccelClient } from '../accel/index.js';

/** Where the header comes from, for a refused request. */
function authHint(given: boolean): string {
  return (
    `${given ? 'the --auth-header value is not accepted' : 'no --auth-header given'}: pass --auth-header VALUE (or set FERRY_ACCEL_AUTH_HEADER) ` +
    "with the provider.source.<registry host>.webhook.auth_header of accel's config; `ferry up` keeps it in " +
    '~/.ferry/up-secrets.json, key webhookAuthHeader (<DIR>/up-secrets.json with --data DIR)'
  );
}

interface AddrOpts {
  addr: string;
  address?: string;
  authHeader?: string;
}

function clientOf(o: AddrOpts): { client: AccelClient; hasHeader: boolean } {
  const header = o.authHeader ?? process.env.FERRY_ACCEL_AUTH_HEADER;
  return { client: new AccelClient(o.address ?? o.addr, header ? { authHeader: header } : {}), hasHeader: Boolean(header) };
}

function cut(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n - 3)}...` : s;
}

export async function run(argv: string[]): Promise<number> {
  const program = new Command('ferry task').description('create and list conversion tasks of a running accel service').exitOverride();
  let code = 0;
  let hasHeader = false;
  const addrOpt = (c: Command): Command =>
    c
      .option('--addr <host:port>', 'accel service address (host:port or URL)', 'localhost:2077')
      .option('--address <host:port>', 'same as --addr')
      .option(
        '--auth-header <value>',
        "required: provider.source.<host>.webhook.auth_header of accel's config (or FERRY_ACCEL_AUTH_HEADER)",
      );
  addrOpt(
    program
      .command('create')
      .argument('<ref>', 'source image reference')
      .option('--sync', 'wait for the conversion result')
      .description('convert an image'),
  ).action(async (ref: string, o: AddrOpts & { sync?: boolean }) => {
    const { client: c, hasHeader: h } = clientOf(o);
    hasHeader = h;
    const ids = await c.createTask(ref, { sync: Boolean(o.sync) });
    if (ids.length === 0) process.stdout.write('skipped (nothing to convert for this reference; see the service log)\n');
    for (const id of ids) process.stdout.write(`${id}\n`);
    if (o.sync) {
      const tasks = await c.listTasks();
      for (const id of ids) {
        const t = tasks.find((x) => x.id === id);
        if (t) process.stdout.write(`${t.status} ${t.target}${t.reason ? ` (${t.reason})` : ''}\n`);
        if (t && t.status !== 'COMPLETED') code = 1;
      }
    }
  });
  addrOpt(
    program
      .command('list')
      .alias('ls')
      .option('--json', 'print JSON')
      .description('list the tasks of the source hosts configured with this --auth-header, newest first'),
  ).action(async (o: AddrOpts & { json?: boolean }) => {
    const { client: c, hasHeader: h } = clientOf(o);
    hasHeader = h;
    const tasks = await c.listTasks();
    if (o.json) {
      process.stdout.write(`${JSON.stringify(tasks, null, 2)}\n`);
      return;
    }
    const rows = [
      ['ID', 'CREATED', 'STATUS', 'SOURCE', 'REASON'],
      ...tasks.map((t) => [t.id, t.created, t.status, cut(t.source, 80), cut(t.reason, 80)]),
    ];
    const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    for (const r of rows) process.stdout.write(`${r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i]!))).join('  ')}\n`);
  });
  addrOpt(program.command('retry').argument('<id>', 'task id').description('queue a FAILED task again (attempts from zero)')).action(
    async (id: string, o: AddrOpts) => {
      const { client: c, hasHeader: h } = clientOf(o);
      hasHeader = h;
      const t = await c.retryTask(id);
      process.stdout.write(`${t.id} ${t.status} ${t.source}\n`);
    },
  );
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (err) {
    const exit = (err as { exitCode?: number }).exitCode;
    if (exit !== undefined && !FerryError.is(err)) return exit;
    const hint = FerryError.hasCode(err, 'UNAUTHENTICATED') ? `\n  ${authHint(hasHeader)}` : '';
    process.stderr.write(`ferry task: ${(err as Error).message}${hint}\n`);
    return FerryError.hasCode(err, 'INVALID_ARGUMENT') || FerryError.hasCode(err, 'UNAUTHENTICATED') ? 2 : 1;
  }
  return code;
}
