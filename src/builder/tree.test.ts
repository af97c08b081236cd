import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyLayer, insertPath, newDir, walkTree, lookupPath, splitPath, storableXattrs, type Inode } from './tree.js';
import { resolvePrefetch } from './prefetch.js';

const file = (content = ''): Inode => ({
  type: 'file',
  perm: 0o644,
  uid: 0,
  gid: 0,
  mtime: 0,
  mtimeNsec: 0,
  size: content.length,
  xattrs: new Map(),
  chunks: [],
});

function tree(paths: Record<string, Inode | 'dir'>): Inode {
  const root = newDir();
  for (const [p, n] of Object.entries(paths)) insertPath(root, p, n === 'dir' ? newDir() : n);
  return root;
}
const listing = (root: Inode): string[] => [...walkTree(root)].map(({ path, node }) => `${path}${node.type === 'dir' ? '/' : ''}`);

test('tree: OCI layer application (whiteouts, opaque dirs, type changes, recreate after whiteout)', () => {
  const lower = tree({ 'a/x': file(), 'a/y': file(), 'b/deep/z': file(), c: file(), 'd/keep': file(), e: 'dir', 'f/old': file() });
  const upper = tree({
    'a/.wh.x': file(), // whiteout
    'b/.wh..wh..opq': file(),
    'b/new': file(), // opaque dir
    'c/inner': file(), // file → dir
    '.wh.d': file(), // whole dir removed
    e: file(), // dir → file
    '.wh.f': file(),
    'f/fresh': file(), // removed, then recreated in the same layer
    'g/.wh.nothing': file(),
    'g/.wh..wh..opq': file(),
    'g/n': file(), // whiteouts in a brand-new dir
  });
  const merged = applyLayer(lower, upper);
  assert.deepEqual(listing(merged), ['//', '/a/', '/a/y', '/b/', '/b/new', '/c/', '/c/inner', '/e', '/f/', '/f/fresh', '/g/', '/g/n']);
});

test('tree: paths are normalised lexically; only escapes above the root are refused', () => {
  assert.throws(() => splitPath('../etc/passwd'), /escapes the root/);
  assert.throws(() => splitPath('a/../../b'), /escapes the root/);
  assert.throws(() => splitPath('/../b'), /escapes the root/);
  assert.deepEqual(splitPath('/abs'), ['abs']);
  assert.deepEqual(splitPath('./a//b/./c/'), ['a', 'b', 'c']);
  assert.deepEqual(splitPath('a//b/./c/../d'), ['a', 'b', 'd']);
  assert.deepEqual(splitPath('a/..'), []);
  assert.equal(lookupPath(tree({ 'a/b/d': file() }), 'a/x/../b//./d')?.type, 'file');
  assert.throws(() => insertPath(newDir(), '', file()), /root of a layer must be a directory/);
});

test('tree: xattrs nydusd cannot load are dropped and counted', () => {
  const x = new Map([
    ['user.a', Buffer.from('1')],
    ['system.sockprotoname', Buffer.from('x')],
    ['lustre.lov', Buffer.from('y')],
    ['security.capability', Buffer.from('c')],
    ['system.posix_acl_access', Buffer.from('acl')],
  ]);
  const { dropped } = storableXattrs(x);
  assert.deepEqual(dropped.sort(), ['lustre.lov', 'system.sockprotoname']);
  assert.deepEqual([...x.keys()].sort(), ['security.capability', 'system.posix_acl_access', 'user.a']);
});

test('prefetch: paths, globs, root and unmatched patterns', () => {
  const root = tree({ 'bin/sh': file(), 'bin/ls': file(), 'usr/lib/libc.so': file(), 'usr/lib/x/libm.so': file(), etc: 'dir' });
  const names = (ns: Inode[]): string[] => ns.map((n) => [...walkTree(root)].find((e) => e.node === n)!.path);
  assert.deepEqual(names(resolvePrefetch(root, ['/bin/sh', 'etc', '/missing', '# comment', ''])), ['/bin/sh', '/etc']);
  assert.deepEqual(names(resolvePrefetch(root, ['/bin/*'])), ['/bin/ls', '/bin/sh']);
  assert.deepEqual(names(resolvePrefetch(root, ['/usr/**.so'])), ['/usr/lib/libc.so', '/usr/lib/x/libm.so']);
  assert.deepEqual(resolvePrefetch(root, ['/']), [root]);
  assert.deepEqual(resolvePrefetch(root, ['/bin/sh', '/bin/s?']).length, 1, 'duplicates collapse');
  assert.equal(lookupPath(root, 'usr/lib/x/libm.so')?.type, 'file');
});
