/**
 * @module cli/get
 * `ferry get URL -O FILE [--peer ADDR] [--header K:V]...`: downloads one URL through the local
 * peer (dfget). The file is written to FILE.part and renamed when complete.
 */
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { Command } from 'commander';
import { PeerClient } from '../p2p/index.js';

export async function run(argv: string[]): Promise<number> {
  const cmd = new Command('ferry get')
    .description('download one URL through the local P2P peer (dfget)')
    .argument('<url>', 'URL to download')
    .requiredOption('-O, --output <file>', 'output file')
    .option('--peer <addr>', 'peer proxy address', process.env.FERRY_PEER ?? '127.0.0.1:65001')
    .option('-H, --header <k:v...>', 'request header(s), e.g. "Authorization: Bearer x"')
    .exitOverride();
  try { cmd.parse(argv, { from: 'user' }); } catch (err) { return (err as { exitCode?: number }).exitCode ?? 2; }
  const [url] = cmd.args as [string];
  const o = cmd.opts<{ output: string; peer: string; header?: string[] }>();
  const headers: Record<string, string> = {};
  for (const h of o.header ?? []) {
    const i = h.indexOf(':');
    if (i <= 0) { process.stderr.write(`ferry get: bad header ${JSON.stringify(h)} (want K:V)\n`); return 2; }
    headers[h.slice(0, i).trim().toLowerCase()] = h.slice(i + 1).trim();
  }
  const part = `${o.output}.part`;
  try {
    const res = await new PeerClient(o.peer).download(url, { headers });
    const expected = Number(res.headers['content-length']);
    let got = 0;
    res.on('data', (c: Buffer) => { got += c.length; });
    await pipeline(res, createWriteStream(part));
    if (Number.isFinite(expected) && got !== expected) throw new Error(`short download: ${got} of ${expected} bytes`);
    await rename(part, o.output);
    return 0;
  } catch (err) {
    await rm(part, { force: true });
    process.stderr.write(`ferry get: ${(err as Error).message}\n`);
    return 1;
  }
}
