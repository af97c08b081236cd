import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAccelConfig } from '../config/accel.js';
import { createMetricsRegistry } from '../observe/index.js';
import { AccelService } from './service.js';

/** A service asked to sign must not start without a usable key: it would convert unsigned. */
test('accel: converter.attestation with a group-readable key, a missing passphrase or no file refuses to start; a good key starts', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-accel-attest-'));
  try {
    const k = generateKeyPairSync('ed25519');
    const open = (attestation: Record<string, string>, env: NodeJS.ProcessEnv = {}): Promise<AccelService> =>
      AccelService.open({
        config: parseAccelConfig({ converter: { attestation } }),
        metrics: createMetricsRegistry(),
        workDir: join(dir, 'work'),
        env,
      });
    const loose = join(dir, 'loose.key');
    writeFileSync(loose, k.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o644 });
    await assert.rejects(open({ sign_key_file: loose }), /loose\.key is readable by group or others/);
    await assert.rejects(open({ sign_key_file: join(dir, 'none.key') }), /none\.key: ENOENT/);
    const enc = join(dir, 'enc.key');
    writeFileSync(enc, k.privateKey.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'pass-phrase-1' }), {
      mode: 0o600,
    });
    await assert.rejects(open({ sign_key_file: enc, passphrase_env: 'ACCEL_KEY_PASS' }), /passphrase_env: ACCEL_KEY_PASS is not set/);
    assert.throws(() => parseAccelConfig({ converter: { attestation: { sign_key: enc } } }), /sign_key/);
    const svc = await open({ sign_key_file: enc, passphrase_env: 'ACCEL_KEY_PASS' }, { ACCEL_KEY_PASS: 'pass-phrase-1' });
    await svc.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
