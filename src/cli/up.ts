/**
 * @module cli/up
 * `ferry up [--data DIR] [--host 127.0.0.1] [--no-accel] [--no-p2p]`: everything Ferry has, on one
 * machine, on embedded defaults, in one data directory:
 * - the registry on HOST:5000 (blobs + SQLite in DIR/registry),
 * - the acceleration service on HOST:2077 (tasks in DIR/accel), wired to the registry by a Harbor
 *   webhook policy on project `library`, so every push of `library/<repo>:<tag>` produces
 *   `<tag>-nydus` by itself,
 * - a P2P scheduler on HOST:8002 and one seed peer (proxy HOST:65001 mirroring the registry,
 *   data in DIR/seed-peer), members of one cluster (signed with a generated cluster secret); the
 *   preheat job API accepts only the generated preheat token.
 * Secrets it generates (admin password unless given, the webhook Authorization header, the
 * preheat token, the cluster secret) are kept in DIR/up-secrets.json (mode 0600) so a restart
 * reuses them. Stops everything on Ctrl-C.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Command } from 'commander';
import { createLogger, type Logger } from '../observe/index.js';
import { startRegistry } from '../registry/index.js';
import { startAccel } from '../accel/index.js';
import { startScheduler } from '../p2p/scheduler/index.js';
import { startPeer } from '../p2p/peer/index.js';
import { untilSignal, parseArgs } from './lifecycle.js';

interface Secrets {
  adminPassword: string;
  /** Authorization header the registry's webhook sends to accel (and `ferry task create --auth-header`). */
  webhookAuthHeader: string;
  /** Bearer token of the scheduler's preheat job API. */
  preheatToken: string;
  /** The P2P cluster secret (scheduler and peers sign their requests with it). */
  clusterToken: string;
}

interface Stoppable {
  name: string;
  close(): Promise<void>;
}

function loadSecrets(file: string, givenPassword: string | undefined): { secrets: Secrets; generated: boolean; preheatGenerated: boolean } {
  let stored: Partial<Secrets> = {};
  if (existsSync(file)) {
    try {
      stored = JSON.parse(readFileSync(file, 'utf8')) as Partial<Secrets>;
    } catch (err) {
      throw new Error(`${file} is not valid JSON (${(err as Error).message}); fix or remove it`);
    }
  }
  const generated = givenPassword === undefined && stored.adminPassword === undefined;
  const secrets: Secrets = {
    adminPassword: givenPassword ?? stored.adminPassword ?? randomBytes(12).toString('base64url'),
    webhookAuthHeader: stored.webhookAuthHeader ?? `Bearer ${randomBytes(24).toString('base64url')}`,
    preheatToken: stored.preheatToken ?? randomBytes(24).toString('base64url'),
    clusterToken: stored.clusterToken ?? randomBytes(32).toString('hex'),
  };
  writeFileSync(file, `${JSON.stringify(secrets, null, 2)}\n`, { mode: 0o600 });
  chmodSync(file, 0o600); // also when it existed with another mode
  return { secrets, generated, preheatGenerated: stored.preheatToken === undefined };
}

/** Creates (once) the webhook policy on `library` that sends PUSH_ARTIFACT events to accel. */
async function ensureWebhookPolicy(registryUrl: string, password: string, target: string, authHeader: string, log: Logger): Promise<void> {
  const auth = `Basic ${Buffer.from(`admin:${password}`).toString('base64')}`;
  const base = `${registryUrl}/api/v2.0/projects/library/webhook/policies`;
  const list = await fetch(base, { headers: { authorization: auth } });
  if (!list.ok) throw new Error(`listing webhook policies failed: HTTP ${list.status} ${await list.text()}`);
  const policies = (await list.json()) as Array<{ name: string }>;
  if (policies.some((p) => p.name === 'ferry-accel')) return;
  const res = await fetch(base, {
    method: 'POST',
    headers: { authorization: auth, 'content-type': 'application/json' },
    body: JSON.stringify({
      name: 'ferry-accel',
      description: 'convert every pushed image to Nydus (ferry up)',
      enabled: true,
      event_types: ['PUSH_ARTIFACT'],
      targets: [{ type: 'http', address: target, auth_header: authHeader, skip_cert_verify: true, payload_format: 'Default' }],
    }),
  });
  if (res.status !== 201) throw new Error(`creating the webhook policy failed: HTTP ${res.status} ${await res.text()}`);
  log.info({ target }, 'webhook policy ferry-accel created on project library');
}

export async function run(argv: string[]): Promise<number> {
  const cmd = new Command('ferry up')
    .description('start the registry, the acceleration service and the P2P scheduler + seed peer on embedded defaults')
    .option('--data <dir>', 'data directory for everything', join(homedir(), '.ferry'))
    .option('--host <addr>', 'address every server listens on', '127.0.0.1')
    .option('--registry-port <n>', 'registry port', '5000')
    .option('--accel-port <n>', 'acceleration service port', '2077')
    .option('--scheduler-port <n>', 'P2P scheduler port', '8002')
    .option('--proxy-port <n>', 'seed peer proxy port', '65001')
    .option('--admin-password <pw>', 'registry admin password (else FERRY_ADMIN_PASSWORD, else stored, else generated)')
    .option('--no-accel', 'do not start the acceleration service')
    .option('--no-p2p', 'do not start the P2P scheduler and seed peer')
    .exitOverride();
  const parsed = parseArgs(cmd, argv);
  if (parsed !== undefined) return parsed;
  const o = cmd.opts<{
    data: string;
    host: string;
    registryPort: string;
    accelPort: string;
    schedulerPort: string;
    proxyPort: string;
    adminPassword?: string;
    accel: boolean;
    p2p: boolean;
  }>();
  const dataDir = resolve(o.data);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const log = createLogger({ name: 'up' });
  const secretsFile = join(dataDir, 'up-secrets.json');
  const { secrets, generated, preheatGenerated } = loadSecrets(
    secretsFile,
    o.adminPassword ?? (process.env.FERRY_ADMIN_PASSWORD || undefined),
  );
  const started: Stoppable[] = [];
  const stopAll = async (): Promise<void> => {
    for (const s of started.reverse()) {
      try {
        await s.close();
      } catch (err) {
        log.error({ err, component: s.name }, 'stop failed');
      }
    }
  };
  const lines: string[] = [];
  const howTo: string[] = [];
  const jq = (key: keyof Secrets): string => `"$(jq -r .${key} ${secretsFile})"`;
  let regHost = `${o.host}:${o.registryPort}`;
  try {
    const reg = await startRegistry({
      dataDir: join(dataDir, 'registry'),
      listen: `${o.host}:${o.registryPort}`,
      adminPassword: secrets.adminPassword,
      log,
    });
    started.push({ name: 'registry', close: () => reg.close() });
    regHost = reg.host;
    lines.push(`registry     ${reg.url}   (data ${join(dataDir, 'registry')}, metrics ${reg.url}/metrics)`);

    if (o.accel) {
      const accel = await startAccel({
        listen: `${o.host}:${o.accelPort}`,
        workDir: join(dataDir, 'accel'),
        log,
        config: {
          server: { name: 'API', host: o.host, port: Number(o.accelPort) },
          metric: { enabled: true },
          provider: {
            source: {
              [reg.host]: {
                auth: Buffer.from(`admin:${secrets.adminPassword}`).toString('base64'),
                insecure: true,
                webhook: { auth_header: secrets.webhookAuthHeader },
              },
            },
            work_dir: join(dataDir, 'accel'),
          },
          converter: {
            worker: 2,
            driver: { type: 'nydus', config: { fs_version: '6', compressor: 'zstd' } },
            rules: [{ tag_suffix: '-nydus' }],
          },
        },
      });
      started.push({ name: 'accel', close: () => accel.close() });
      await ensureWebhookPolicy(reg.url, secrets.adminPassword, `${accel.url}/api/v1/conversions`, secrets.webhookAuthHeader, log);
      lines.push(
        `accel        ${accel.url}   (tasks: FERRY_ACCEL_AUTH_HEADER=${jq('webhookAuthHeader')} ferry task list --address ${accel.url})`,
      );
      howTo.push(
        'convert an image by hand (the webhook Authorization header accel expects):',
        `  ferry task create --address ${accel.url} --auth-header ${jq('webhookAuthHeader')} ${regHost}/library/app:v1`,
      );
    }

    if (o.p2p) {
      const sched = await startScheduler({
        listen: `${o.host}:${o.schedulerPort}`,
        log,
        config: { cluster: { token: secrets.clusterToken }, preheat: { tokens: [secrets.preheatToken] } },
      });
      started.push({ name: 'scheduler', close: () => sched.close() });
      lines.push(`scheduler    ${sched.url}   (preheat: POST ${sched.url}/oapi/v1/jobs, Authorization: Bearer <preheat token>)`);
      const seed = await startPeer({
        dataDir: join(dataDir, 'seed-peer'),
        schedulers: [sched.url],
        seed: true,
        proxyListen: `${o.host}:${o.proxyPort}`,
        uploadListen: `${o.host}:0`,
        log,
        config: { cluster: { token: secrets.clusterToken }, proxy: { registryMirror: { url: reg.url, nsScheme: 'http' } } },
      });
      started.push({ name: 'seed-peer', close: () => seed.close() });
      lines.push(`seed peer    ${seed.proxyUrl}   (mirror of ${reg.url}; uploads ${seed.uploadUrl})`);
      howTo.push(
        preheatGenerated
          ? `preheat token (generated, stored in ${secretsFile}): ${secrets.preheatToken}`
          : `preheat token: stored in ${secretsFile}`,
        `  curl -H "Authorization: Bearer $(jq -r .preheatToken ${secretsFile})" -H content-type:application/json \\`,
        `    -d '{"type":"preheat","args":{"type":"image","url":"${reg.url}/v2/library/app/manifests/v1","username":"admin","password":"<password>"}}' ${sched.url}/oapi/v1/jobs`,
        'another node joins the P2P cluster with the same cluster secret (copy it there; the scheduler must be reachable: ferry up --host <address>):',
        `  FERRY_CLUSTER_TOKEN=${jq('clusterToken')} ferry peer --scheduler ${sched.url} --data /var/lib/ferry/peer \\`,
        `    --registry-mirror ${reg.url} --upload-listen <node address>:65002`,
      );
    }

    process.stdout.write(
      [
        'ferry up: started',
        ...lines.map((l) => `  ${l}`),
        '',
        generated
          ? `admin password (generated, stored in ${join(dataDir, 'up-secrets.json')}): ${secrets.adminPassword}`
          : `admin password: as given / stored in ${join(dataDir, 'up-secrets.json')}`,
        '',
        'push an image (it is converted to <tag>-nydus automatically):',
        `  skopeo copy --dest-tls-verify=false --dest-creds admin:<password> docker://… docker://${regHost}/library/app:v1`,
        `  skopeo inspect --tls-verify=false docker://${regHost}/library/app:v1-nydus`,
        ...howTo,
        'Ctrl-C stops everything.',
        '',
      ].join('\n'),
    );
  } catch (err) {
    await stopAll();
    throw err;
  }
  await untilSignal(stopAll, log);
  return 0;
}
