import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { RegistryClient } from '../remote/index.js';
import type { LazyFs } from '../daemon/protocol.js';
import { LazyImages } from './lazy.js';
import type { MetaStore } from './store.js';

const layer = { chainId: `sha256:${'c'.repeat(64)}`, layerDigest: `sha256:${'l'.repeat(64)}`, layers: [], plainHttp: false };

test('attestation policy: a Nydus layer without an image reference label is refused (its manifest cannot be checked), not downloaded', async () => {
  const o = {
    root: '/nonexistent',
    store: {} as MetaStore, // never reached: the refusal comes first
    lazyFs: {} as LazyFs,
    registry: new RegistryClient(),
  };
  const policy = new LazyImages({ ...o, requireAttestation: generateKeyPairSync('ed25519').publicKey });
  await assert.rejects(
    policy.prepare({ ...layer, nydusBlob: true, nydusBootstrap: false }),
    /has no image reference label: the attestation policy cannot check its image/,
  );
  // without the policy the same layer is left to containerd (null), as before
  assert.equal(await new LazyImages(o).prepare({ ...layer, nydusBlob: true, nydusBootstrap: false }), null);
  // an ordinary layer is no business of the policy
  assert.equal(await policy.prepare({ ...layer, nydusBlob: false, nydusBootstrap: false }), null);
});
