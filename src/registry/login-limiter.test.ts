/**
 * The failed-login limiter on a fake clock: thresholds per (account, source) and per source,
 * exponential backoff to the cap, concurrency bounded like sequence, resets, forgetting, memory bound.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { LoginLimiter, sourceKey, type LoginLimits } from './login-limiter.js';

const LIMITS: LoginLimits = { maxFailures: 5, maxSourceFailures: 12, windowMs: 60_000, lockoutMs: 1000, maxLockoutMs: 8000 };

function clock(): { now: () => number; advance(ms: number): void } {
  let t = 1_000_000;
  return {
    now: () => t,
    advance: (ms) => {
      t += ms;
    },
  };
}

/** One attempt with the given outcome; returns the refusal or the lockout the failure started. */
function attempt(
  l: LoginLimiter,
  user: string,
  source: string,
  ok = false,
): { refused?: string; retryAfterMs?: number; lockedForMs?: number } {
  const a = l.begin(user, source);
  if (!a.admitted) return { refused: `${a.lockout.scope}:${a.lockout.reason}`, retryAfterMs: a.lockout.retryAfterMs };
  const started = a.finish(ok ? 'ok' : 'failed');
  return started ? { lockedForMs: started.lockedForMs } : {};
}

it('locks an account from one source after maxFailures, then doubles each lockout up to the cap', () => {
  const c = clock();
  const l = new LoginLimiter(LIMITS, c.now);
  for (let i = 0; i < 4; i++) assert.deepEqual(attempt(l, 'admin', '10.0.0.1'), {});
  assert.deepEqual(attempt(l, 'admin', '10.0.0.1'), { lockedForMs: 1000 });
  assert.deepEqual(
    attempt(l, 'admin', '10.0.0.1', true),
    { refused: 'account:locked', retryAfterMs: 1000 },
    'a correct password is refused too',
  );
  assert.equal(l.locked('admin', '10.0.0.1')?.retryAfterMs, 1000);
  c.advance(400);
  assert.equal(attempt(l, 'admin', '10.0.0.1').retryAfterMs, 600);
  // Each failure after a lockout locks again, twice as long, up to maxLockoutMs.
  for (const want of [2000, 4000, 8000, 8000]) {
    c.advance(l.locked('admin', '10.0.0.1')!.retryAfterMs);
    assert.equal(l.locked('admin', '10.0.0.1'), undefined);
    assert.deepEqual(attempt(l, 'admin', '10.0.0.1'), { lockedForMs: want });
  }
  // Other accounts from the same source and the same account from another source are untouched.
  assert.deepEqual(attempt(l, 'robot$p+ci', '10.0.0.1', true), {});
  assert.deepEqual(attempt(l, 'admin', '10.0.0.2', true), {});
});

it('a success resets the account key: the next lockout needs maxFailures again and starts at the first length', () => {
  const c = clock();
  const l = new LoginLimiter(LIMITS, c.now);
  for (let i = 0; i < 5; i++) attempt(l, 'admin', '10.0.0.1');
  c.advance(1000);
  assert.deepEqual(attempt(l, 'admin', '10.0.0.1'), { lockedForMs: 2000 });
  c.advance(2000);
  assert.deepEqual(attempt(l, 'admin', '10.0.0.1', true), {});
  for (let i = 0; i < 4; i++) assert.deepEqual(attempt(l, 'admin', '10.0.0.1'), {}, `failure ${i + 1} after the reset`);
  assert.deepEqual(attempt(l, 'admin', '10.0.0.1'), { lockedForMs: 1000 });
});

it('failures older than the window do not count, and a key quiet for a window forgets its lockouts', () => {
  const c = clock();
  const l = new LoginLimiter(LIMITS, c.now);
  for (let i = 0; i < 4; i++) attempt(l, 'admin', '10.0.0.1');
  c.advance(60_001);
  for (let i = 0; i < 4; i++) assert.deepEqual(attempt(l, 'admin', '10.0.0.1'), {});
  assert.deepEqual(attempt(l, 'admin', '10.0.0.1'), { lockedForMs: 1000 });
  c.advance(1000 + 60_001);
  for (let i = 0; i < 4; i++) assert.deepEqual(attempt(l, 'admin', '10.0.0.1'), {});
  assert.deepEqual(attempt(l, 'admin', '10.0.0.1'), { lockedForMs: 1000 }, 'the backoff started over');
});

it('concurrent attempts count while they are checked: a burst gets no more checks than a sequence', () => {
  const c = clock();
  const l = new LoginLimiter(LIMITS, c.now);
  const admitted = [];
  let busy = 0;
  for (let i = 0; i < 100; i++) {
    const a = l.begin('admin', '10.0.0.1');
    if (a.admitted) admitted.push(a);
    else {
      assert.equal(a.lockout.reason, 'busy');
      busy++;
    }
  }
  assert.equal(admitted.length, 5);
  assert.equal(busy, 95);
  const started = admitted.map((a) => a.finish('failed'));
  assert.deepEqual(started.filter(Boolean), [{ lockedForMs: 1000, scope: 'account' }]);
  const r = l.begin('admin', '10.0.0.1');
  assert.ok(!r.admitted && r.lockout.reason === 'locked' && r.lockout.first);
  const r2 = l.begin('admin', '10.0.0.1');
  assert.ok(!r2.admitted && !r2.lockout.first, 'only the first refusal of a lockout is reported');
  // After the lockout, one check at a time.
  c.advance(1000);
  const one = l.begin('admin', '10.0.0.1');
  assert.ok(one.admitted);
  const two = l.begin('admin', '10.0.0.1');
  assert.ok(!two.admitted && two.lockout.reason === 'busy');
  // An aborted check (the check itself failed) counts nothing.
  one.finish('aborted');
  assert.ok(l.begin('admin', '10.0.0.1').admitted);
});

it('one source spraying many accounts is locked as a whole; successes do not reset that', () => {
  const c = clock();
  const l = new LoginLimiter(LIMITS, c.now);
  for (let i = 0; i < 11; i++) {
    assert.deepEqual(attempt(l, `user${i}`, '10.0.0.9'), {});
    if (i === 5) assert.deepEqual(attempt(l, 'good', '10.0.0.9', true), {});
  }
  assert.deepEqual(attempt(l, 'user11', '10.0.0.9'), { lockedForMs: 1000 });
  assert.deepEqual(attempt(l, 'good', '10.0.0.9', true), { refused: 'source:locked', retryAfterMs: 1000 });
  assert.deepEqual(attempt(l, 'good', '10.0.0.8', true), {}, 'another source is not affected');
});

it('keeps a bounded table whatever the attacker sends', () => {
  const c = clock();
  const l = new LoginLimiter(LIMITS, c.now);
  for (let i = 0; i < 60_000; i++) attempt(l, `u${i}`, `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
  assert.ok(l.size <= 100_000, `${l.size} entries`);
  c.advance(120_000);
  attempt(l, 'x', '10.9.9.9', true);
  assert.ok(l.size <= 2, `quiet entries are dropped (${l.size} left)`);
});

it('keys IPv6 sources by /64 and IPv4-mapped addresses as IPv4', () => {
  assert.equal(sourceKey('::ffff:127.0.0.1'), '127.0.0.1');
  assert.equal(sourceKey('10.1.2.3'), '10.1.2.3');
  assert.equal(sourceKey('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
  assert.equal(sourceKey('2001:db8:1:2:bbbb:cccc:dddd:eeee'), '2001:db8:1:2::/64');
  assert.equal(sourceKey('2001:db8::1'), '2001:db8:0:0::/64');
  assert.equal(sourceKey('::1'), '0:0:0:0::/64');
  assert.equal(sourceKey('fe80::1%eth0'), 'fe80:0:0:0::/64');
  assert.equal(sourceKey(undefined), 'unknown');
});
