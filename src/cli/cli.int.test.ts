/**
 * The `ferry` executable as a process: a closed output pipe (`ferry … | head`) ends it quietly,
 * commander's `--help` / usage errors are not reported twice.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { FERRY_BIN, fixture } from '../../test/support/paths.js';

/** 128 + SIGPIPE, as a shell reports `yes | head -1`'s `yes`. */
const BROKEN_PIPE_EXIT = 141;

/** A ~1.4 MB tree listing (far more than a pipe buffer holds). */
const BIG_BOOTSTRAP = fixture('nydus', 'nydusd_daemon_test_bootstrap');

/**
 * Runs ferry with stdout on a pipe, reads the first chunk, then closes the read end, as `| head -1`
 * does. Resolves with the exit status, the signal and everything written to stderr.
 */
function readFirstChunkThenClose(
  args: string[],
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string; first: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [FERRY_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let first = '';
    p.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    p.stdout.once('data', (d: Buffer) => {
      first = d.toString();
      p.stdout.destroy();
    });
    p.on('error', reject);
    p.on('close', (code, signal) => resolve({ code, signal, stderr, first }));
  });
}

test('a closed stdout pipe ends ferry quietly with status 141 (text and JSON output)', async () => {
  for (const args of [
    ['rafs', 'inspect', BIG_BOOTSTRAP],
    ['rafs', 'inspect', BIG_BOOTSTRAP, '--json'],
  ]) {
    const r = await readFirstChunkThenClose(args);
    assert.ok(r.first.length > 0, 'some output was read before closing');
    assert.equal(r.stderr, '', `nothing on stderr for ${args.join(' ')}, got:\n${r.stderr}`);
    assert.equal(r.signal, null);
    assert.equal(r.code, BROKEN_PIPE_EXIT);
  }
});

test('the same commands with their whole output read exit 0 (the guard changes nothing else)', () => {
  const r = spawnSync(process.execPath, [FERRY_BIN, 'rafs', 'inspect', BIG_BOOTSTRAP], { encoding: 'utf8', maxBuffer: 64 << 20 });
  assert.equal(r.status, 0, r.stderr);
  assert.ok(r.stdout.length > 1 << 20);
});

test('--help of a subcommand exits 0 without a second error line; a missing option is reported once', () => {
  const help = spawnSync(process.execPath, [FERRY_BIN, 'rafs', 'inspect', '--help'], { encoding: 'utf8' });
  assert.equal(help.status, 0, help.stderr);
  assert.match(help.stdout, /Usage: ferry rafs inspect/);
  assert.equal(help.stderr, '');
  const missing = spawnSync(process.execPath, [FERRY_BIN, 'rafs', 'unpack'], { encoding: 'utf8' });
  assert.equal(missing.status, 1);
  assert.equal(missing.stderr, "error: required option '-B, --bootstrap <file>' not specified\n");
});

test('plain HTTP has one spelling in every --help; the old spellings are still accepted, hidden', () => {
  const run = (args: string[]) => spawnSync(process.execPath, [FERRY_BIN, ...args], { encoding: 'utf8', timeout: 30_000 });
  for (const [cmd, flags, old] of [
    ['convert', ['--source-plain-http', '--target-plain-http'], ['--source-insecure', '--target-insecure']],
    ['check', ['--source-plain-http', '--target-plain-http'], ['--source-insecure', '--target-insecure']],
    ['mount', ['--plain-http'], ['--insecure']],
    ['build', ['--plain-http'], ['--insecure']],
    ['snapshotter', ['--plain-http <host>'], ['--insecure-registry']],
    ['pull', ['--plain-http'], []],
  ] as const) {
    const help = run([cmd, '--help']);
    assert.equal(help.status, 0, help.stderr);
    for (const f of flags) assert.ok(help.stdout.includes(f), `ferry ${cmd} --help shows ${f}`);
    for (const f of old) assert.ok(!help.stdout.includes(f), `ferry ${cmd} --help hides ${f}`);
  }
  // Accepted: the commands get past parsing to the registry (nothing listens on port 9), not a usage error.
  const refs = ['--source', '127.0.0.1:9/x:1', '--target', '127.0.0.1:9/x:1-nydus'];
  for (const args of [
    ['check', ...refs, '--source-insecure', '--target-insecure'],
    ['check', ...refs, '--source-plain-http', '--target-plain-http'],
    ['convert', ...refs, '--source-insecure', '--target-insecure'],
  ]) {
    const r = run(args);
    assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.doesNotMatch(r.stderr, /unknown option/);
    assert.match(r.stderr, /ECONNREFUSED|127\.0\.0\.1:9/);
  }
  const bad = run(['check', ...refs, '--source-insecur']);
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /unknown option '--source-insecur'/, 'a misspelt flag is still a usage error');
});
