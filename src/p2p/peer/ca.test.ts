import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCa, loadOrCreateCa } from './ca.js';
import { startPeer } from './peer.js';

test('CA key: generated 0600 and reused; a key file group/others can access is refused, naming the file and chmod 600', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-ca-'));
  try {
    const made = loadOrCreateCa({ dataDir: dir });
    assert.equal(made.generated, true);
    assert.equal(statSync(made.keyPath).mode & 0o777, 0o600);
    assert.equal(loadOrCreateCa({ dataDir: dir }).generated, false, 'reused');
    for (const mode of [0o644, 0o640, 0o604, 0o620, 0o660]) {
      chmodSync(made.keyPath, mode);
      assert.throws(
        () => loadOrCreateCa({ dataDir: dir }),
        (err: Error) => {
          assert.match(
            err.message,
            new RegExp(`CA key ${made.keyPath.replace(/[.]/g, '\\.')} is accessible to group/others \\(mode 0${mode.toString(8)}\\)`),
          );
          assert.match(err.message, new RegExp(`chmod 600 ${made.keyPath.replace(/[.]/g, '\\.')}$`));
          return true;
        },
        mode.toString(8),
      );
    }
    chmodSync(made.keyPath, 0o400);
    assert.equal(loadOrCreateCa({ dataDir: dir }).generated, false, '0400 is fine');
    // Given files (--ca-cert / --ca-key) are held to the same rule.
    const ca = createCa('given');
    const cert = join(dir, 'given.crt');
    const key = join(dir, 'given.key');
    writeFileSync(cert, ca.certPem, { mode: 0o644 });
    writeFileSync(key, ca.keyPem, { mode: 0o644 });
    chmodSync(key, 0o644);
    assert.throws(() => loadOrCreateCa({ certPath: cert, keyPath: key, dataDir: dir }), /chmod 600/);
    chmodSync(key, 0o600);
    assert.equal(loadOrCreateCa({ certPath: cert, keyPath: key, dataDir: dir }).keyPath, key);
    // The peer refuses to start with it (before it listens).
    chmodSync(made.keyPath, 0o644);
    await assert.rejects(
      startPeer({ dataDir: dir, proxyListen: '127.0.0.1:0', uploadListen: '127.0.0.1:0', config: { proxy: { hijackHosts: ['^x:443$'] } } }),
      /CA key .*ca\.key is accessible to group\/others.*chmod 600/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
