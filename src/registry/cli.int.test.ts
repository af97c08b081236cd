/**
 * The `ferry registry` command line: config files merged with flags, redacted `--print-config`,
 * a clear error for unknown config keys, and the generated admin password printed once.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FERRY_BIN } from '../../test/support/paths.js';

const run = promisify(execFile);

it('--print-config merges the file and flags and redacts the password; unknown keys fail', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-reg-cli-'));
  try {
    await writeFile(join(dir, 'r.yaml'), 'adminPassword: S3cretPw\nmaxManifestSize: 1MiB\nwebhook:\n  maxRetries: 5\n');
    const { stdout } = await run(process.execPath, [
      FERRY_BIN,
      'registry',
      '--config',
      join(dir, 'r.yaml'),
      '--listen',
      '127.0.0.1:6000',
      '--data',
      dir,
      '--print-config',
    ]);
    const cfg = JSON.parse(stdout) as Record<string, unknown> & { webhook: { maxRetries: number } };
    assert.equal(cfg.listen, '127.0.0.1:6000');
    assert.equal(cfg.maxManifestSize, 1024 * 1024);
    assert.equal(cfg.webhook.maxRetries, 5);
    assert.equal(cfg.adminPassword, '<redacted>');
    assert.ok(!stdout.includes('S3cretPw'));
    await writeFile(join(dir, 'bad.yaml'), 'listen: 127.0.0.1:0\nnoSuchKey: 1\n');
    await assert.rejects(
      run(process.execPath, [FERRY_BIN, 'registry', '--config', join(dir, 'bad.yaml'), '--data', dir]),
      (err: { code?: number; stderr?: string }) => {
        assert.notEqual(err.code, 0);
        assert.match(err.stderr ?? '', /invalid registry config.*noSuchKey/);
        return true;
      },
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

it('prints a generated admin password once and stops cleanly on SIGTERM', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-reg-cli-'));
  const env: NodeJS.ProcessEnv = { ...process.env, FERRY_LOG_LEVEL: 'silent' };
  delete env.FERRY_ADMIN_PASSWORD;
  const start = async (): Promise<string> => {
    const child = spawn(process.execPath, [FERRY_BIN, 'registry', '--listen', '127.0.0.1:0', '--data', dir], {
      env,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    try {
      const end = Date.now() + 20_000;
      while (!/listening on/.test(out)) {
        if (Date.now() > end || child.exitCode !== null) throw new Error(`no start: ${out}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      await new Promise((r) => setTimeout(r, 100));
    } finally {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const code = await exited;
      assert.equal(code, 0);
    }
    return out;
  };
  try {
    const first = await start();
    assert.match(first, /admin password \(generated, shown once\): \S{12,}/);
    const second = await start();
    assert.doesNotMatch(second, /admin password/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
