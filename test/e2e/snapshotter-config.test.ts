/**
 * `ferry snapshotter print-config` against a containerd config that already has `[proxy_plugins]`
 * (another proxy snapshotter) and a CRI table — the case where appending a snippet that declares
 * those tables again stops containerd ("duplicated tables"). Both ways Ferry offers are started
 * with a real containerd: the printed snippet appended, and `--merge FILE`; each time containerd
 * comes up with the ferry snapshotter (served in this test) and the other plugin registered, and
 * `ctr snapshots --snapshotter ferry prepare` reaches Ferry (counted on its TCP metrics listener). A control shows the fixture config does
 * break with a snippet that repeats `[proxy_plugins]`.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requirePrereqs } from '../support/prereq.js';
import { ferry } from '../support/ferry.js';
import { startContainerd, type Containerd } from '../../src/bench/env/index.js';
import { parseSnapshotterConfig } from '../../src/config/snapshotter.js';
import { startSnapshotter, type SnapshotterHandle } from '../../src/snapshotter/index.js';

/** What an operator's config typically has already: a proxy plugin table and CRI settings. */
const EXISTING = [
  '',
  '[proxy_plugins]',
  '  [proxy_plugins."other"]',
  '    type = "snapshot"',
  '    address = "/run/other-snapshotter.sock"',
  '',
  '[plugins."io.containerd.grpc.v1.cri".containerd]',
  '  default_runtime_name = "runc"',
  '',
].join('\n');

let dir: string;
let snap: SnapshotterHandle;
const started: Containerd[] = [];

before(async () => {
  requirePrereqs({ root: true, commands: ['containerd', 'ctr'] });
  dir = await mkdtemp(join(tmpdir(), 'ferry-snap-cfg-'));
  snap = await startSnapshotter({
    config: parseSnapshotterConfig({ address: join(dir, 'snap.sock'), root: join(dir, 'snaproot'), metricsAddress: '127.0.0.1:0' }),
  });
});

after(async () => {
  for (const c of started) await c.stop().catch(() => undefined);
  await snap?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** The snapshotter's Prepare RPCs so far, scraped from its TCP metrics listener as Prometheus would. */
async function prepareCalls(): Promise<number> {
  assert.match(snap.metricsAddress, /^127\.0\.0\.1:\d+$/);
  const text = await (await fetch(`http://${snap.metricsAddress}/metrics`)).text();
  const m = /^ferry_snapshotter_rpc_total\{method="Prepare",code="OK"\} (\d+)$/m.exec(text);
  return m ? Number(m[1]) : 0;
}

async function printConfig(extra: string[] = []): Promise<string> {
  const r = await ferry(['snapshotter', 'print-config', '--address', snap.address, ...extra], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

/** containerd started with `edit(generated config + EXISTING)`; both proxy plugins loaded, Ferry reachable. */
async function startsWith(name: string, edit: (toml: string) => Promise<string>): Promise<string> {
  let used = '';
  const cd = await startContainerd({
    dir: join(dir, name),
    editConfig: async (generated) => {
      used = await edit(generated + EXISTING);
      return used;
    },
  });
  started.push(cd);
  const plugins = await cd.ctr(['plugins', 'ls']);
  assert.equal(plugins.code, 0, plugins.stderr);
  assert.match(plugins.stdout, /io\.containerd\.snapshotter\.v1\s+ferry\s+-\s+ok/);
  assert.match(plugins.stdout, /io\.containerd\.snapshotter\.v1\s+other\s+-\s+ok/);
  const before = await prepareCalls();
  const prep = await cd.ctr(['snapshots', '--snapshotter', 'ferry', 'prepare', `probe-${name}`, '']);
  assert.equal(prep.code, 0, `containerd reaches the ferry snapshotter: ${prep.stderr}`);
  assert.equal(await prepareCalls(), before + 1, "the snapshotter's TCP metrics count containerd's Prepare call");
  assert.equal((await cd.ctr(['snapshots', '--snapshotter', 'ferry', 'rm', `probe-${name}`])).code, 0);
  return used;
}

test('the printed snippet appended to a config with [proxy_plugins] and a CRI table: containerd starts with both plugins', async () => {
  const snippet = await printConfig();
  await startsWith('appended', async (toml) => toml + snippet);
});

test('--merge FILE prints that config with Ferry merged in (CRI keys set, existing keys kept): containerd starts with it', async () => {
  const used = await startsWith('merged', async (toml) => {
    const file = join(dir, 'existing.toml');
    await writeFile(file, toml);
    return printConfig(['--merge', file]);
  });
  assert.match(used, /default_runtime_name = "runc"/, 'the CRI table keeps its keys');
  assert.match(used, /snapshotter = "ferry"/);
  assert.match(used, /disable_snapshot_annotations = false/);
  const bad = await ferry(['snapshotter', 'print-config', '--merge', join(dir, 'missing.toml')]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /missing\.toml/);
  await writeFile(join(dir, 'v1.toml'), 'root = "/x"\n');
  const v1 = await ferry(['snapshotter', 'print-config', '--merge', join(dir, 'v1.toml')]);
  assert.equal(v1.code, 2);
  assert.match(v1.stderr, /version 1 containerd config/);
});

test('control: a snippet that declares [proxy_plugins] again stops containerd (what the snippet avoids)', async () => {
  const old = `[proxy_plugins]\n  [proxy_plugins."ferry"]\n    type = "snapshot"\n    address = ${JSON.stringify(snap.address)}\n`;
  await assert.rejects(
    startContainerd({ dir: join(dir, 'control'), editConfig: (generated) => generated + EXISTING + old, startTimeoutMs: 20_000 }),
    /exited|duplicate|already/i,
  );
});
