import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'smol-toml';
import { mergeProxySnapshotter } from './config-toml.js';

const S = { name: 'ferry', address: '/run/ferry/snapshotter.sock' };
type Plugin = { type?: string; address?: string };
interface Cfg {
  version?: number;
  proxy_plugins: Record<string, Plugin>;
  plugins?: Record<string, { containerd: Record<string, unknown> }>;
}
/** The merged text parsed back (as plain JSON objects). */
const merged = (text: string): Cfg => JSON.parse(JSON.stringify(parse(mergeProxySnapshotter(text, S)))) as Cfg;
const cri = (m: Cfg): Record<string, unknown> => m.plugins!['io.containerd.grpc.v1.cri']!.containerd;

test('an empty config becomes a version 2 config with the proxy plugin and the CRI keys', () => {
  const m = merged('');
  assert.equal(m.version, 2);
  assert.deepEqual(m.proxy_plugins.ferry, { type: 'snapshot', address: S.address });
  assert.deepEqual(cri(m), { snapshotter: 'ferry', disable_snapshot_annotations: false });
});

test('an existing entry of the same name is updated in place; other plugins and keys stay', () => {
  const m = merged(
    'version = 2\n[proxy_plugins.ferry]\ntype = "snapshot"\naddress = "/old.sock"\n[proxy_plugins.nydus]\ntype = "snapshot"\naddress = "/n.sock"\n' +
      '[plugins."io.containerd.grpc.v1.cri".containerd]\nsnapshotter = "nydus"\ndefault_runtime_name = "runc"\n',
  );
  assert.equal(m.proxy_plugins.ferry!.address, S.address);
  assert.equal(m.proxy_plugins.nydus!.address, '/n.sock');
  assert.equal(cri(m).snapshotter, 'ferry');
  assert.equal(cri(m).default_runtime_name, 'runc');
});

test('with CRI disabled and not configured no CRI table is added', () => {
  const m = merged('version = 2\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n');
  assert.equal(m.plugins, undefined);
  assert.equal(m.proxy_plugins.ferry!.type, 'snapshot');
});

test('bad input is a clear error: not TOML, version 1, a key of the wrong type', () => {
  assert.throws(() => mergeProxySnapshotter('version = = 2', S, 'my.toml'), /my\.toml is not valid TOML/);
  assert.throws(() => mergeProxySnapshotter('version = 1\n', S), /version 1 containerd config/);
  assert.throws(() => mergeProxySnapshotter('version = 2\nproxy_plugins = "x"\n', S), /proxy_plugins is not a table/);
});
