import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createLogger } from '../observe/index.js';
import { FakeClock } from '../../test/support/clock.js';
import {
  CredentialChain,
  DockerConfigSource,
  PullSecretSource,
  SuppliedCredentials,
  credentialChain,
  matchAuths,
  parseUserPassword,
  runCredentialHelper,
  staticCredentials,
  type HelperRunner,
} from './credentials.js';
import { TokenCache } from './auth.js';

const b64 = (s: string): string => Buffer.from(s).toString('base64');

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'ferry-creds-'));
}

test('matchAuths: exact host before wildcard, longest path prefix first, Docker Hub spellings', () => {
  const auths = {
    'reg.example:5000': { auth: b64('host:pw') },
    'reg.example:5000/team': { auth: b64('team:pw') },
    'reg.example:5000/team/app': { username: 'app', password: 'pw' },
    '*.corp.example': { auth: b64('wild:pw') },
    'https://index.docker.io/v1/': { auth: b64('hub:pw') },
    'broken.example': { auth: b64('no-colon') },
  };
  assert.equal(matchAuths(auths, 'reg.example:5000', 'other/x')?.username, 'host');
  assert.equal(matchAuths(auths, 'reg.example:5000', 'team/x')?.username, 'team');
  assert.equal(matchAuths(auths, 'reg.example:5000', 'team/app')?.username, 'app');
  assert.equal(matchAuths(auths, 'reg.example:5000', 'teamx/y')?.username, 'host', 'a path prefix matches whole components');
  assert.equal(matchAuths(auths, 'a.corp.example', 'x')?.username, 'wild');
  assert.equal(matchAuths(auths, 'a.b.corp.example', 'x'), undefined, '* is one label');
  assert.equal(matchAuths(auths, 'a.corp.example:443', 'x'), undefined, 'the port must match');
  assert.equal(matchAuths(auths, 'docker.io', 'library/busybox')?.username, 'hub');
  assert.equal(matchAuths(auths, 'registry-1.docker.io', 'library/busybox')?.username, 'hub');
  assert.equal(matchAuths(auths, 'broken.example', 'x'), undefined);
  assert.equal(matchAuths(auths, 'nowhere.example', 'x'), undefined);
});

test('parseUserPassword keeps colons in the password and refuses a bare name', () => {
  assert.deepEqual(parseUserPassword('robot$p+r:a:b'), { username: 'robot$p+r', password: 'a:b' });
  assert.throws(() => parseUserPassword('nouser'), /USER:PASSWORD/);
  assert.throws(() => parseUserPassword(':pw'), /USER:PASSWORD/);
});

test('the chain: explicit → supplied → pull secret → docker config; first answer wins', async () => {
  const dir = tmp();
  try {
    const secret = join(dir, 'secret.json');
    writeFileSync(secret, JSON.stringify({ auths: { 'r.example': { auth: b64('secret-user:s') } } }));
    const cfg = join(dir, 'config.json');
    writeFileSync(
      cfg,
      JSON.stringify({ auths: { 'r.example': { auth: b64('config-user:c') }, 'only-config.example': { auth: b64('oc:c') } } }),
    );
    const supplied = new SuppliedCredentials('cri');
    const chain = credentialChain({ supplied: [supplied], pullSecrets: [secret], dockerConfig: cfg });
    assert.deepEqual(chain.describe(), ['cri', `pull-secret:${secret}`, `docker-config:${cfg}`, 'anonymous']);
    assert.equal((await chain.find('r.example', 'p/app'))?.source, `pull-secret:${secret}`);
    assert.equal((await chain.find('only-config.example', 'x'))?.credentials.username, 'oc');
    supplied.set('r.example', 'p/app', { username: 'cri-user', password: 'x' });
    assert.deepEqual(await chain.find('r.example', 'p/app'), { credentials: { username: 'cri-user', password: 'x' }, source: 'cri' });
    assert.equal((await chain.find('r.example', 'p/other'))?.source, `pull-secret:${secret}`, 'supplied credentials are per repository');
    const explicit = credentialChain({
      explicit: { credentials: { username: 'me', password: 'y' } },
      supplied: [supplied],
      dockerConfig: false,
    });
    assert.equal((await explicit.find('r.example', 'p/app'))?.source, 'explicit');
    assert.equal(await credentialChain({ dockerConfig: false }).get('r.example', 'p/app'), undefined, 'anonymous');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('refused credentials are skipped while unchanged and for a while; the chain falls through', async () => {
  const clock = new FakeClock();
  let cri = { username: 'cri', password: 'old' };
  const chain = new CredentialChain(
    [{ name: 'cri', get: async () => cri }, staticCredentials({ username: 'config', password: 'c' }, 'r.example', 'config')],
    { clock, rejectTtlMs: 30_000 },
  );
  assert.equal((await chain.find('r.example', 'a'))?.source, 'cri');
  chain.rejected('r.example', 'a', cri);
  assert.equal((await chain.find('r.example', 'a'))?.source, 'config', 'falls through to the next source');
  assert.equal((await chain.find('r.example', 'b'))?.source, 'cri', 'refusal is per repository');
  cri = { username: 'cri', password: 'new' };
  assert.equal((await chain.find('r.example', 'a'))?.source, 'cri', 'changed credentials are tried again');
  chain.rejected('r.example', 'a', cri);
  chain.rejected('r.example', 'a', { username: 'config', password: 'c' });
  assert.equal(await chain.find('r.example', 'a'), undefined, 'everything refused: anonymous');
  await clock.advance(30_000);
  assert.equal((await chain.find('r.example', 'a'))?.source, 'cri', 'refusals expire (a re-enabled robot works again)');
});

test('a failing source is skipped, and its failure names the source, never a secret', async () => {
  const lines: string[] = [];
  const log = createLogger({
    level: 'debug',
    destination: new Writable({
      write(c, _e, cb) {
        lines.push(String(c));
        cb();
      },
    }),
  });
  const chain = new CredentialChain(
    [
      {
        name: 'helper:broken',
        get: async () => {
          throw new Error('helper crashed');
        },
      },
      staticCredentials({ username: 'robot$p+r', password: 'TOPSECRET-1' }),
    ],
    { log },
  );
  assert.equal((await chain.find('r.example', 'x'))?.source, 'explicit');
  chain.rejected('r.example', 'x', { username: 'robot$p+r', password: 'TOPSECRET-1' });
  const out = lines.join('');
  assert.match(out, /helper:broken/);
  assert.match(out, /registry refused credentials/);
  assert.ok(!out.includes('TOPSECRET-1'), out);
});

test('docker config: credHelpers for their host, credsStore for the rest, auths when the helper has nothing', async () => {
  const dir = tmp();
  try {
    const cfg = join(dir, 'config.json');
    writeFileSync(
      cfg,
      JSON.stringify({
        auths: { 'plain.example': { auth: b64('auths-user:a') }, 'stored.example': {} },
        credHelpers: { 'helped.example:5000': 'test' },
        credsStore: 'store',
      }),
    );
    const calls: string[] = [];
    const runHelper: HelperRunner = async (helper, url) => {
      calls.push(`${helper} ${url}`);
      if (helper === 'test') return { username: 'helper-user', password: 'h' };
      if (url === 'stored.example') return { username: 'store-user', password: 's' };
      return undefined;
    };
    const clock = new FakeClock();
    const src = new DockerConfigSource({ path: cfg, runHelper, clock, helperCacheMs: 30_000 });
    assert.equal((await src.get('helped.example:5000', 'x'))?.username, 'helper-user');
    assert.equal((await src.get('stored.example', 'x'))?.username, 'store-user');
    assert.equal((await src.get('plain.example', 'x'))?.username, 'auths-user', 'the store had nothing: auths');
    assert.equal((await src.get('docker.io', 'library/x'))?.username, undefined);
    assert.deepEqual(calls, [
      'test helped.example:5000',
      'store stored.example',
      'store plain.example',
      'store https://index.docker.io/v1/',
    ]);
    await src.get('helped.example:5000', 'x');
    assert.equal(calls.length, 4, 'a helper answer is reused for a while');
    await clock.advance(30_000);
    await src.get('helped.example:5000', 'x');
    assert.equal(calls.length, 5, 'and asked again after it');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('docker-credential-<name> is run per the helper protocol (server URL on stdin, JSON answer)', async () => {
  const dir = tmp();
  const path = process.env.PATH;
  try {
    const script = join(dir, 'docker-credential-ferrytest');
    writeFileSync(
      script,
      [
        '#!/bin/sh',
        '[ "$1" = get ] || exit 3',
        'read -r url',
        'case "$url" in',
        '  reg.example:5000) printf \'{"ServerURL":"%s","Username":"robot$p+pull","Secret":"s3cret"}\\n\' "$url" ;;',
        '  token.example) echo \'{"ServerURL":"token.example","Username":"<token>","Secret":"refresh"}\' ;;',
        '  *) echo "credentials not found in native keychain"; exit 1 ;;',
        'esac',
      ].join('\n'),
    );
    chmodSync(script, 0o755);
    process.env.PATH = `${dir}:${path}`;
    assert.deepEqual(await runCredentialHelper('ferrytest', 'reg.example:5000'), { username: 'robot$p+pull', password: 's3cret' });
    assert.equal(await runCredentialHelper('ferrytest', 'other.example'), undefined);
    assert.equal(await runCredentialHelper('ferrytest', 'token.example'), undefined, 'identity tokens are not used');
    await assert.rejects(runCredentialHelper('absent-helper', 'x'), /docker-credential-absent-helper: not found on PATH/);
    await assert.rejects(runCredentialHelper('../evil', 'x'), /invalid credential helper name/);
  } finally {
    process.env.PATH = path;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('pull secrets: a file, a legacy .dockercfg, and a secret volume directory (re-read when rotated)', async () => {
  const dir = tmp();
  try {
    const file = join(dir, 'pull.json');
    writeFileSync(file, JSON.stringify({ auths: { 'r.example': { username: 'u1', password: 'p' } } }));
    assert.equal((await new PullSecretSource(file).get('r.example', 'x'))?.username, 'u1');
    const legacy = join(dir, 'legacy.dockercfg');
    writeFileSync(legacy, JSON.stringify({ 'r.example': { auth: b64('legacy:p') } }));
    assert.equal((await new PullSecretSource(legacy).get('r.example', 'x'))?.username, 'legacy');
    // what kubelet's atomic writer lays out for a secret volume
    const vol = join(dir, 'vol');
    mkdirSync(join(vol, '..2026_01_01'), { recursive: true });
    writeFileSync(join(vol, '..2026_01_01', '.dockerconfigjson'), JSON.stringify({ auths: { 'r.example': { auth: b64('vol1:p') } } }));
    symlinkSync('..2026_01_01', join(vol, '..data'));
    symlinkSync('..data/.dockerconfigjson', join(vol, '.dockerconfigjson'));
    const src = new PullSecretSource(vol);
    assert.equal((await src.get('r.example', 'x'))?.username, 'vol1');
    const f = join(vol, '..2026_01_01', '.dockerconfigjson');
    writeFileSync(f, JSON.stringify({ auths: { 'r.example': { auth: b64('vol2-rotated:p') } } }));
    utimesSync(f, new Date(), new Date(Date.now() + 5000));
    assert.equal((await src.get('r.example', 'x'))?.username, 'vol2-rotated');
    assert.equal(await new PullSecretSource(join(dir, 'absent')).get('r.example', 'x'), undefined);
    writeFileSync(file, '{not json');
    utimesSync(file, new Date(), new Date(Date.now() + 10_000));
    await assert.rejects(new PullSecretSource(file).get('r.example', 'x'), /pull\.json/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('supplied credentials: per (host, repository), newest wins, listeners hear changes, bounded', async () => {
  const s = new SuppliedCredentials('cri', 2);
  const heard: string[] = [];
  s.onChange((h, r) => heard.push(`${h}/${r}`));
  assert.equal(s.set('r.example', 'a', { username: 'u', password: '1' }), true);
  assert.equal(s.set('r.example', 'a', { username: 'u', password: '1' }), false, 'the same again is no change');
  assert.equal(s.set('r.example', 'a', { username: 'u', password: '2' }, 'pull-api'), true);
  assert.equal((await s.get('r.example', 'a'))?.password, '2');
  assert.equal(s.sourceOf('r.example', 'a'), 'pull-api');
  assert.equal(await s.get('r.example'), undefined);
  s.set('r.example', 'b', { username: 'u', password: 'b' });
  s.set('r.example', 'c', { username: 'u', password: 'c' });
  assert.equal(s.size, 2);
  assert.equal(await s.get('r.example', 'a'), undefined, 'the least recently set entry went');
  assert.deepEqual(heard, ['r.example/a', 'r.example/a', 'r.example/b', 'r.example/c']);
});

test('TokenCache: tokens are refreshed before they expire, short-lived ones at ¾ of their life', () => {
  const c = new TokenCache();
  c.set('h', 's', 'tok', 60, 0);
  assert.equal(c.get('h', 's', 49_999), 'tok');
  assert.equal(c.get('h', 's', 50_000), undefined);
  c.set('h', 's', 'short', 4, 0);
  assert.equal(c.get('h', 's', 2_999), 'short');
  assert.equal(c.get('h', 's', 3_000), undefined);
  assert.equal(c.get('h', 'other', 0), undefined);
});
