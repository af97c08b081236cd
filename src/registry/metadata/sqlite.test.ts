import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { metadataSuite } from './testsuite.js';
import { SqliteMetadata } from './sqlite.js';

metadataSuite('sqlite', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-meta-'));
  const meta = new SqliteMetadata(join(dir, 'registry.db'));
  return {
    meta,
    cleanup: async () => {
      meta.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});
