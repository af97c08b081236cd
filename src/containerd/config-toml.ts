/**
 * @module containerd/config-toml
 * Registering a proxy snapshotter in an existing containerd 1.6 `config.toml` (version 2) without
 * breaking it: the file is parsed with a TOML library, the snapshotter is set as
 * `proxy_plugins.<name>` and, unless the file disables the CRI plugin without configuring it, as
 * the CRI plugin's snapshotter with the image annotations lazy pulling needs. Appending a snippet
 * that declares `[proxy_plugins]` or the CRI table again is what containerd refuses ("duplicated
 * tables"); merging cannot produce that.
 */
import { parse, stringify, type TomlTable } from 'smol-toml';
import { FerryError } from '../core/index.js';

const CRI = 'io.containerd.grpc.v1.cri';

export interface ProxySnapshotter {
  name: string;
  /** Unix socket of the snapshotter. */
  address: string;
}

const isTable = (v: unknown): v is TomlTable => typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);

/** `parent[key]` as a table, created when absent; a value of another type there is an error naming `path`. */
function tableAt(parent: TomlTable, key: string, path: string): TomlTable {
  const v = parent[key];
  if (v === undefined) {
    const t: TomlTable = {};
    parent[key] = t;
    return t;
  }
  if (!isTable(v)) throw new FerryError('INVALID_ARGUMENT', `${path} is not a table`);
  return v;
}

/**
 * The containerd config `text` (from `source`, for messages) with `s` registered; throws
 * INVALID_ARGUMENT for text that is not TOML or a config of another version.
 */
export function mergeProxySnapshotter(text: string, s: ProxySnapshotter, source = 'config.toml'): string {
  let doc: TomlTable;
  try {
    doc = parse(text);
  } catch (err) {
    throw new FerryError('INVALID_ARGUMENT', `${source} is not valid TOML: ${(err as Error).message}`, { cause: err });
  }
  const version = doc.version ?? (Object.keys(doc).length === 0 ? 2 : 1);
  if (version !== 2) {
    throw new FerryError(
      'INVALID_ARGUMENT',
      `${source} is a version ${String(version)} containerd config; only version = 2 (containerd 1.6's plugin names) can be merged`,
    );
  }
  doc.version = 2;
  const plugin = tableAt(tableAt(doc, 'proxy_plugins', 'proxy_plugins'), s.name, `proxy_plugins.${s.name}`);
  plugin.type = 'snapshot';
  plugin.address = s.address;
  const disabled = Array.isArray(doc.disabled_plugins) && doc.disabled_plugins.some((p) => p === CRI || p === 'cri');
  const plugins = doc.plugins;
  if (!disabled || (isTable(plugins) && plugins[CRI] !== undefined)) {
    const cri = tableAt(tableAt(tableAt(doc, 'plugins', 'plugins'), CRI, `plugins."${CRI}"`), 'containerd', `plugins."${CRI}".containerd`);
    cri.snapshotter = s.name;
    cri.disable_snapshot_annotations = false;
  }
  return `# ${source} with the ${JSON.stringify(s.name)} proxy snapshotter merged in by \`ferry snapshotter print-config --merge\` (comments are not kept)\n${stringify(doc)}\n`;
}
