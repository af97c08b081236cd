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
import { createWriteStream, readFileSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { Command } from 'commander';
import { FerryError } from '../core/index.js';
import { PeerClient, blobDigestOfUrl } from '../p2p/index.js';
import { parseArgs } from './lifecycle.js';

/** Headers that carry secrets: given on the command line they are visible to every user (ps, /proc). */
const SECRET_HEADERS = new Set(['authorization', 'proxy-authorization', 'cookie']);

/**
 * The request headers from `-H K:V` flags and a `--header-file` (one `K: V` per line, blank lines and
 * `#` comments skipped). A secret header given with -H is used, with a warning naming --header-file.
 */
export function requestHeaders(
  flags: string[],
  file: string | undefined,
  read: (path: string) => string = (p) => readFileSync(p, 'utf8'),
  warn: (line: string) => void = (l) => {
    process.stderr.write(`${l}\n`);
  },
): Record<string, string> {
  const headers: Record<string, string> = {};
  const add = (h: string, where: string): string => {
    const i = h.indexOf(':');
    if (i <= 0) throw new Error(`bad header ${JSON.stringify(where === '-H' ? h : h.slice(0, 20))} in ${where} (want K: V)`);
    const k = h.slice(0, i).trim().toLowerCase();
    headers[k] = h.slice(i + 1).trim();
    return k;
  };
  if (file !== undefined) {
    let text: string;
    try {
      text = read(file);
    } catch (err) {
      throw new Error(`--header-file ${file}: ${(err as Error).message}`);
    }
    for (const line of text.split(/\r?\n/)) if (line.trim() && !line.trimStart().startsWith('#')) add(line, `--header-file ${file}`);
  }
  for (const h of flags) {
    const k = add(h, '-H');
    if (SECRET_HEADERS.has(k))
      warn(`warning: -H ${k} puts a secret on the command line, where every user of this machine can read it; use --header-file`);
  }
  return headers;
}

/** A transfer that ended early or with the wrong bytes: worth one more try. */
class Incomplete extends Error {}

export async function run(argv: string[]): Promise<number> {
  const cmd = new Command('ferry get')
    .description('download one URL through the local P2P peer (dfget); registry blobs are checked against their digest')
    .argument('<url>', 'URL to download')
    .requiredOption('-O, --output <file>', 'output file')
    .option('--peer <addr>', 'peer proxy address', process.env.FERRY_PEER ?? '127.0.0.1:65001')
    .option('-H, --header <k:v...>', 'request header(s), e.g. "Range: bytes=0-99" (secrets: use --header-file)')
    .option('--header-file <file>', 'file of request headers, one "K: V" per line (for Authorization: not visible in ps)')
    .exitOverride();
  const parsed = parseArgs(cmd, argv);
  if (parsed !== undefined) return parsed;
  const [url] = cmd.args as [string];
  const o = cmd.opts<{ output: string; peer: string; header?: string[]; headerFile?: string }>();
  let headers: Record<string, string>;
  try {
    headers = requestHeaders(o.header ?? [], o.headerFile);
  } catch (err) {
    process.stderr.write(`ferry get: ${(err as Error).message}\n`);
    return 2;
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
