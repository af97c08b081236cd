import { test } from 'node:test';
import assert from 'node:assert/strict';
import { plainHttp, type BuildOptions } from './build.js';

test('buildah skips TLS only when asked or when every registry involved is on loopback', () => {
  const o = {} as BuildOptions;
  assert.equal(plainHttp(o, ['127.0.0.1:5000', undefined]), true);
  assert.equal(plainHttp(o, ['127.0.0.1:5000', 'localhost:5000']), true);
  // a loopback target must not turn TLS off for a base image pulled from elsewhere
  assert.equal(plainHttp(o, ['docker.io', '127.0.0.1:5000']), false);
  assert.equal(plainHttp(o, ['registry.example:443']), false);
  assert.equal(plainHttp({ insecure: true } as BuildOptions, ['registry.example:443']), true);
});
