/**
 * @module accel
 * The acceleration service (the role of acceld): reads acceld's config.yaml, takes Harbor
 * PUSH_ARTIFACT webhooks, converts pushed images to Nydus with durable, retried tasks.
 */
import { connect, type AddressInfo } from 'node:net';
import { lstatSync, rmSync, type Stats } from 'node:fs';
import { FerryError, type Clock } from '../core/index.js';
import { createMetricsRegistry, silentLogger, type Logger, type MetricsRegistry } from '../observe/index.js';
import { ignoredKeys, loadAccelConfig, parseAccelConfig, type AccelConfig } from '../config/accel.js';
import { AccelService } from './service.js';
import { createAccelServer } from './server.js';

export { AccelService, type Submission, type SubmitOutcome } from './service.js';
export { ZERO_TIME, eventKeyOf, type TaskQueue, type Lease, type ClaimedTask, type NewTask, type TaskResult } from './queue.js';
export { SqliteTaskQueue } from './queue-sqlite.js';
export { PgTaskQueue, ACCEL_MIGRATIONS } from './queue-pg.js';
export { openTaskQueue } from './engines.js';
export {
  HARBOR_EVENT_TYPES,
  harborWebhookPayloadSchema,
  type HarborEventType,
  type HarborWebhookPayload,
  type TaskView,
  type TaskStatus,
} from './protocol.js';
export { AccelClient } from './client.js';

export interface StartAccelOptions {
  /** Path of acceld's config.yaml … */
  configPath?: string;
  /** … or the config itself (parsed object or raw YAML-shaped input). */
  config?: AccelConfig | unknown;
  /** Overrides server.host/port/uds: `host:port` (port 0 = ephemeral). */
  listen?: string;
  /** Overrides provider.work_dir. */
  workDir?: string;
  log?: Logger;
  /** Time of leases, heartbeats, polls and retries (default the system clock). */
  clock?: Clock;
}

export interface AccelHandle {
  /** http://host:port (or `unix:PATH` when listening on a socket) */
  url: string;
  service: AccelService;
  metrics: MetricsRegistry;
  close(): Promise<void>;
}

/**
 * server.uds may be replaced only when nothing is there or a socket nobody serves (left by a killed
 * accel): never a file, a directory or a symlink, nor a socket in use.
 */
async function assertSocketPathFree(path: string): Promise<void> {
  let st: Stats;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket())
    throw new FerryError('FAILED_PRECONDITION', `server.uds ${path} exists and is not a socket: remove it or change server.uds`);
  const live = await new Promise<boolean>((resolve) => {
    const c = connect(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
  if (live) throw new FerryError('FAILED_PRECONDITION', `server.uds ${path} is served by another process: stop it or change server.uds`);
}

/** Starts the service: workers plus the HTTP API. */
export async function startAccel(opts: StartAccelOptions): Promise<AccelHandle> {
  const log = opts.log ?? silentLogger();
  const config = opts.configPath ? loadAccelConfig(opts.configPath) : parseAccelConfig(opts.config ?? {});
  for (const k of ignoredKeys(config)) log.info({ key: k.key, reason: k.reason }, 'config key accepted and ignored');
  // Ferry has no unauthenticated mode (acceld has): without a header nobody can create or list tasks.
  const sources = Object.entries(config.provider.source);
  const unguarded = sources.filter(([, s]) => !s.webhook?.auth_header).map(([h]) => h);
  if (unguarded.length === sources.length) {
    log.warn('no provider.source.<host>.webhook.auth_header is configured: every task creation and task listing will be refused (401)');
  } else if (unguarded.length) {
    log.warn({ hosts: unguarded }, 'provider.source hosts without webhook.auth_header: their webhooks are refused (401)');
  }
  const metrics = createMetricsRegistry({ processMetrics: false });
  const service = await AccelService.open({
    config,
    log,
    metrics,
    ...(opts.workDir ? { workDir: opts.workDir } : {}),
    ...(opts.clock ? { clock: opts.clock } : {}),
  });
  const server = createAccelServer({ service, config, metrics, log });
  let url: string;
  try {
    if (!opts.listen && config.server.uds) {
      await assertSocketPathFree(config.server.uds);
      rmSync(config.server.uds, { force: true });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(config.server.uds, resolve);
      });
      url = `unix:${config.server.uds}`;
    } else {
      let host = config.server.host;
      let port = config.server.port;
      if (opts.listen) {
        const i = opts.listen.lastIndexOf(':');
        host = opts.listen.slice(0, i) || '0.0.0.0';
        port = Number(opts.listen.slice(i + 1));
      }
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, resolve);
      });
      const a = server.address() as AddressInfo;
      url = `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${a.port}`;
    }
  } catch (err) {
    await service.close();
    throw err;
  }
  service.start();
  log.info(
    { url, workDir: service.workDir, workers: config.converter.worker, queue: service.queue.engine, worker: service.worker },
    'accel service listening',
  );
  return {
    url,
    service,
    metrics,
    close: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await service.close();
    },
  };
}
