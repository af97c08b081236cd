/**
 * The OCI conformance suite (testing/conformance.ts) on PostgreSQL + S3: a private PostgreSQL 15
 * and radosgw (test/support), the registry configured as a replica would be (password and S3 keys
 * from the environment).
 */
import { startPostgres } from '../../test/support/postgres.js';
import { startRadosgw } from '../../test/support/ceph.js';
import { conformanceSuite } from './testing/conformance.js';
import { startTestRegistry, type TestRegistry } from './testing/client.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

conformanceSuite('PostgreSQL + S3', async (): Promise<TestRegistry> => {
  const [db, s3] = await Promise.all([startPostgres(), startRadosgw({ bucket: 'conformance' })]);
  const u = new URL(db.url);
  u.password = '';
  process.env.FERRY_TEST_CONFORMANCE_DB_PASSWORD = db.password;
  process.env.AWS_ACCESS_KEY_ID = s3.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = s3.secretAccessKey;
  const reg = await startTestRegistry({
    config: {
      database: { postgres: { url: u.toString(), password_env: 'FERRY_TEST_CONFORMANCE_DB_PASSWORD' } },
      storage: { s3: { bucket: s3.bucket!, endpoint: s3.endpoint, region: s3.region } },
    },
  });
  return {
    ...reg,
    async destroy() {
      await reg.destroy();
      await s3.stop();
      await db.stop();
    },
  };
});
