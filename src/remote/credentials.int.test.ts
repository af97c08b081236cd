/**
 * The registry client with the credential chain against a real `ferry registry`: a private
 * project, a pull-only robot, 2-second tokens. Tokens are refreshed through the chain as they
 * expire; credentials the registry refuses make the chain fall through to its next source; with
 * nothing left the answer is a clear 401, at once.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { startTestRegistry, type TestRegistry } from '../registry/testing/client.js';
import { RegistryClient } from './client.js';
import { CredentialChain, SuppliedCredentials, staticCredentials } from './credentials.js';
import { parseReference } from './reference.js';

let reg: TestRegistry;
let robot: { name: string; secret: string; id: number };
let tokenRequests = 0;
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

before(async () => {
  reg = await startTestRegistry({ config: { tokenExpiration: '2s' } });
  await reg.createProject('priv');
  const layer = Buffer.from('private layer bytes');
  const config = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}');
  const dl = await reg.pushBlob('priv/app', layer);
  const dc = await reg.pushBlob('priv/app', config);
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: dc, size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: dl, size: layer.length }],
  });
  assert.equal((await reg.putManifest('priv/app', 'v1', manifest, OCI_MANIFEST)).status, 201);
  robot = await reg.createRobot('priv', 'puller');
});

after(async () => {
  await reg?.destroy();
});

/** A chain whose every lookup counts as a token request (the registry asks for Basic only at its token endpoint). */
function counting(chain: CredentialChain): CredentialChain {
  const get = chain.get.bind(chain);
  chain.get = async (h, r) => {
    tokenRequests++;
    return get(h, r);
  };
  return chain;
}

test('tokens that expire every 2 s are refreshed through the chain; reads keep working', async () => {
  const chain = counting(new CredentialChain([staticCredentials({ username: robot.name, password: robot.secret })]));
  const client = new RegistryClient({ credentials: chain, retries: 0 });
  const ref = parseReference(`${reg.host}/priv/app:v1`);
  const first = await client.resolveImage(ref);
  const layer = first.manifest.layers[0]!;
  assert.equal((await client.getBlobBuffer(reg.host, 'priv/app', layer.digest)).toString(), 'private layer bytes');
  const before = tokenRequests;
  // past the token's lifetime (a bounded wait for expiry, not a timing assertion)
  await new Promise((r) => setTimeout(r, 2600));
  const again = await client.getBlobBuffer(reg.host, 'priv/app', layer.digest);
  assert.equal(again.toString(), 'private layer bytes');
  assert.ok(tokenRequests > before, 'a new token was requested with the chain');
  assert.equal(createHash('sha256').update(again).digest('hex'), layer.digest.slice(7));
});

test('refused credentials fall through to the next source; with none left: a clear 401 at once', async () => {
  const supplied = new SuppliedCredentials('cri');
  supplied.set(reg.host, 'priv/app', { username: robot.name, password: 'wrong-secret' });
  const chain = new CredentialChain([
    supplied,
    staticCredentials({ username: robot.name, password: robot.secret }, reg.host, 'pull-secret'),
  ]);
  const client = new RegistryClient({ credentials: chain, retries: 0 });
  const ref = parseReference(`${reg.host}/priv/app:v1`);
  await client.resolveImage(ref);
  assert.equal((await chain.find(reg.host, 'priv/app'))?.source, 'pull-secret', 'the refused CRI credentials are skipped');

  const wrongOnly = new RegistryClient({
    credentials: new CredentialChain([staticCredentials({ username: robot.name, password: 'wrong' })]),
    retries: 0,
  });
  await assert.rejects(wrongOnly.resolveImage(ref), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'UNAUTHENTICATED');
    assert.match(err.message, /401/);
    assert.ok(!err.message.includes('wrong'), 'the message carries no secret');
    return true;
  });
  const anonymous = new RegistryClient({ credentials: new CredentialChain([]), retries: 0 });
  await assert.rejects(anonymous.resolveImage(ref), /401/);
});
