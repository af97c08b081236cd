/**
 * @module cli/get
 * `ferry get URL -O FILE [--peer ADDR] [--header K:V]...`: downloads one URL through the local
 * peer (dfget). The file is written to FILE.part and renamed when complete. For a registry blob
 * URL (`/v2/<name>/blobs/<alg>:<hex>`) the bytes are hashed as they arrive and FILE appears only
 * if they match the digest; a mismatch or a transfer the peer aborted (it does so when its copy
 * fails the digest, and drops that copy) is tried once more, then the command fails naming the
 * digest.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { Command } from 'commander';
import { FerryError } from '../core/index.js';
import { PeerClient, blobDigestOfUrl } from '../p2p/index.js';
import { parseArgs } from './lifecycle.js';

/** A transfer that ended early or with the wrong bytes: worth one more try. */
class Incomplete extends Error {}

export async function run(argv: string[]): Promise<number> {
  const cmd = new Command('ferry get')
    .description('download one URL through the local P2P peer (dfget); registry blobs are checked against their digest')
    .argument('<url>', 'URL to download')
    .requiredOption('-O, --output <file>', 'output file')
    .option('--peer <addr>', 'peer proxy address', process.env.FERRY_PEER ?? '127.0.0.1:65001')
    .option('-H, --header <k:v...>', 'request header(s), e.g. "Authorization: Bearer x"')
    .exitOverride();
  const parsed = parseArgs(cmd, argv);
  if (parsed !== undefined) return parsed;
  const [url] = cmd.args as [string];
  const o = cmd.opts<{ output: string; peer: string; header?: string[] }>();
  const headers: Record<string, string> = {};
  for (const h of o.header ?? []) {
    const i = h.indexOf(':');
    if (i <= 0) {
      process.stderr.write(`ferry get: bad header ${JSON.stringify(h)} (want K:V)\n`);
      return 2;
    }
    headers[h.slice(0, i).trim().toLowerCase()] = h.slice(i + 1).trim();
  }
  const part = `${o.output}.part`;
  const digest = blobDigestOfUrl(url);
  const client = new PeerClient(o.peer);
  const once = async (): Promise<void> => {
    const res = await client.download(url, { headers });
    const expected = Number(res.headers['content-length']);
    const hash = digest ? createHash(digest.slice(0, digest.indexOf(':'))) : undefined;
    let got = 0;
    res.on('data', (c: Buffer) => {
      got += c.length;
      hash?.update(c);
    });
    try {
      await pipeline(res, createWriteStream(part));
    } catch (err) {
      if (FerryError.is(err)) throw err;
      throw new Incomplete(`transfer aborted after ${got} bytes (${(err as Error).message})`);
    }
    if (Number.isFinite(expected) && got !== expected) throw new Incomplete(`short download: ${got} of ${expected} bytes`);
    if (digest && hash) {
      const actual = `${digest.slice(0, digest.indexOf(':'))}:${hash.digest('hex')}`;
      if (actual !== digest) throw new Incomplete(`the bytes received hash to ${actual}`);
    }
  };
  for (let attempt = 1; ; attempt++) {
    try {
      await once();
      await rename(part, o.output);
      return 0;
    } catch (err) {
      await rm(part, { force: true });
      const what = digest ? `blob ${digest}` : url;
      if (err instanceof Incomplete && attempt < 2) {
        process.stderr.write(`ferry get: ${what}: ${err.message}; trying again\n`);
        continue;
      }
      process.stderr.write(
        err instanceof Incomplete
          ? `ferry get: ${what} did not verify: ${err.message}${attempt > 1 ? ' (second try)' : ''}\n`
          : `ferry get: ${(err as Error).message}\n`,
      );
      return 1;
    }
  }
}
