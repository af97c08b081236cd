import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../../test/support/clock.js';
import type { StatResult, statOrigin } from './source.js';
import { OriginStatCache } from './stat-cache.js';

const blob = `http://r:5000/v2/lib/app/blobs/sha256:${'ab'.repeat(32)}`;

/** A fake origin: answers by credential, counts the HEADs it was sent. */
function origin(allowed: Record<string, boolean>): { heads: string[]; stat: typeof statOrigin } {
  const heads: string[] = [];
  const stat = async (url: string, headers: Record<string, string>): Promise<StatResult> => {
    const who = headers.authorization ?? 'anonymous';
    heads.push(`${who} ${url}`);
    await new Promise((r) => setImmediate(r));
    return allowed[who] ? { ok: true, contentLength: 1234, headers: {} } : { ok: false, status: 401, headers: {}, body: Buffer.alloc(0) };
  };
  return { heads, stat };
}

test('stat cache: one HEAD per (credential, blob) within the TTL; refusals, other credentials and non-blob URLs are asked', async () => {
  const clock = new FakeClock();
  const o = origin({ 'Bearer good': true });
  const c = new OriginStatCache({ origin: {}, ttlMs: 30_000, clock, stat: o.stat });
  const good = { authorization: 'Bearer good' };
  // concurrent range requests of one blob share one HEAD
  const rs = await Promise.all([1, 2, 3, 4].map(() => c.get(blob, good)));
  for (const r of rs) assert.deepEqual(r.ok && r.contentLength, 1234);
  assert.equal(o.heads.length, 1, 'one HEAD for four concurrent requests');
  await c.get(blob, good);
  assert.equal(o.heads.length, 1, 'the allowance is remembered');
  // another credential is its own decision; a refusal is never remembered
  assert.equal((await c.get(blob, { authorization: 'Bearer bad' })).ok, false);
  assert.equal((await c.get(blob, { authorization: 'Bearer bad' })).ok, false);
  assert.equal(o.heads.length, 3, 'the refused credential asked each time');
  assert.equal((await c.get(blob, {})).ok, false, 'anonymous is not the cached credential');
  // a URL that is not a digest-addressed blob (its size may change) is asked every time
  const tagged = 'http://r:5000/files/app.tar';
  await c.get(tagged, good);
  await c.get(tagged, good);
  assert.equal(o.heads.filter((h) => h.endsWith(tagged)).length, 2);
  // the allowance ages out
  await clock.advance(30_001);
  await c.get(blob, good);
  assert.equal(o.heads.filter((h) => h === `Bearer good ${blob}`).length, 2, 'asked again after the TTL');
  // TTL 0: nothing cached
  const none = new OriginStatCache({ origin: {}, ttlMs: 0, clock, stat: o.stat });
  const n0 = o.heads.length;
  await none.get(blob, good);
  await none.get(blob, good);
  assert.equal(o.heads.length - n0, 2);
});
