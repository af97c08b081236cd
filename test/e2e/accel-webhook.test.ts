/**
 * ferry registry + ferry accel configured from acceld's example config (hosts and secrets adapted):
 * a push into `library` fires PUSH_ARTIFACT, accel converts it, `<tag>-nydus` appears with upstream
 * media types/annotations and passes `check`. Also the webhook endpoint's refusals (401 without or
 * with a wrong Authorization header, CloudEvents, non-JSON, unknown types, unconfigured hosts),
 * `ferry task create --sync` / `task list`, health and metrics.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { ferry } from '../support/ferry.js';
import { requirePrereqs } from '../support/prereq.js';
import { fixture } from '../support/paths.js';
import { startRegistry, type RegistryHandle } from '../../src/registry/index.js';
import { startAccel, type AccelHandle, type TaskView } from '../../src/accel/index.js';
import { RegistryClient, parseReference } from '../../src/remote/index.js';
import { checkImage } from '../../src/convert/index.js';
import { exec, pushImage, type BuiltImage } from '../../src/bench/env/index.js';
import { MediaType, NydusAnnotation, parseImageManifest } from '../../src/oci/index.js';
import { makeTestImage, eventually } from './convert-support.js';
import { pushCosignSignature, signingKey, verifyCosignSignature } from '../support/signatures.js';
import { fsckErofs } from '../support/erofs.js';
import { blobView } from '../../src/builder/index.js';
import { openBootstrap, unpackBootstrapLayer } from '../../src/format/rafs/index.js';
import { createWriteStream } from 'node:fs';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { pipeline } from 'node:stream/promises';

const PASSWORD = 'Harbor12345';
const AUTH_HEADER = 'header';
let dir: string;
let reg: RegistryHandle;
let accel: AccelHandle;
let image: BuiltImage;
let client: RegistryClient;
/** The registry's webhook policy pointing at accel. */
let policyUrl: string;

/**
 * Waits (bounded) until every webhook delivery of the policy is final (Success, Error, Stopped):
 * from then on accel has answered every event it will get — and it queues a task before answering.
 */
async function deliveriesFinal(): Promise<void> {
  const auth = { authorization: `Basic ${Buffer.from(`admin:${PASSWORD}`).toString('base64')}` };
  await eventually(
    'every webhook delivery final',
    async () => {
      const list = (await (await fetch(`${policyUrl}/executions`, { headers: auth })).json()) as Array<{ status: string }>;
      return list.every((e) => e.status !== 'Pending' && e.status !== 'Running') ? list : undefined;
    },
    60_000,
    50,
  );
}

before(async () => {
  requirePrereqs({ commands: ['skopeo', 'setfattr', 'tar', 'fsck.erofs'] });
  dir = await mkdtemp(join(tmpdir(), 'ferry-accel-e2e-'));
  reg = await startRegistry({
    listen: '127.0.0.1:0',
    dataDir: join(dir, 'registry'),
    adminPassword: PASSWORD,
    config: { webhook: { settleDelay: 200, pollInterval: 100 } },
  });
  // acceld's example config, adapted: the Harbor host becomes our registry, the robot becomes admin.
  const cfg = parse(await readFile(fixture('acceld', 'config.yaml.nydus'), 'utf8')) as {
    provider: { source: Record<string, { auth?: string; insecure?: boolean; webhook?: { auth_header: string } }> };
    converter: { worker: number; driver: { config: Record<string, string> } };
  };
  // As in a Harbor deployment, accel authenticates as a robot account (robot$accel), not as admin.
  const robotRes = await fetch(`${reg.url}/api/v2.0/robots`, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from(`admin:${PASSWORD}`).toString('base64')}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      name: 'accel',
      level: 'system',
      duration: -1,
      permissions: [
        {
          kind: 'project',
          namespace: '*',
          access: [
            { resource: 'repository', action: 'pull' },
            { resource: 'repository', action: 'push' },
          ],
        },
      ],
    }),
  });
  assert.equal(robotRes.status, 201, await robotRes.clone().text());
  const robot = (await robotRes.json()) as { name: string; secret: string };
  assert.equal(robot.name, 'robot$accel');
  const example = cfg.provider.source['registry.anolis.com']!;
  delete cfg.provider.source['registry.anolis.com'];
  cfg.provider.source[reg.host] = { ...example, auth: Buffer.from(`${robot.name}:${robot.secret}`).toString('base64') };
  cfg.converter.driver.config.work_dir = join(dir, 'scratch');
  const cfgPath = join(dir, 'config.yaml');
  await writeFile(cfgPath, stringify(cfg));
  accel = await startAccel({ configPath: cfgPath, listen: '127.0.0.1:0', workDir: join(dir, 'accel') });
  // Harbor: a webhook policy on `library` pointing at accel, with the Auth Header of the config.
  const res = await fetch(`${reg.url}/api/v2.0/projects/library/webhook/policies`, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from(`admin:${PASSWORD}`).toString('base64')}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      name: 'accel',
      event_types: ['PUSH_ARTIFACT'],
      enabled: true,
      targets: [{ type: 'http', address: `${accel.url}/api/v1/conversions`, auth_header: AUTH_HEADER, payload_format: 'Default' }],
    }),
  });
  assert.equal(res.status, 201, await res.text());
  policyUrl = `${reg.url}${res.headers.get('location')!}`;
  client = new RegistryClient({ credentials: () => ({ username: 'admin', password: PASSWORD }) });
  image = await makeTestImage(join(dir, 'img'));
});
after(async () => {
  await accel?.close();
  await reg?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('a push into library yields <tag>-nydus with upstream media types/annotations, and check passes', async (t) => {
  await pushImage(image.layoutDir, `${reg.host}/library/app:v1`, { creds: `admin:${PASSWORD}` });
  const t0 = Date.now();
  const ref = parseReference(`${reg.host}/library/app:v1-nydus`);
  const head = await eventually('the -nydus tag', () => client.headManifest(ref), 90_000);
  // how fast is measured by bench/convert/run.ts (push → -nydus latency), not asserted here
  t.diagnostic(`push → -nydus: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const m = await client.getManifest(ref);
  assert.equal(m.digest, head.digest);
  const man = parseImageManifest(m.body);
  assert.equal(man.mediaType, MediaType.OCI_MANIFEST);
  assert.equal(man.layers.length, 4);
  assert.ok(man.layers.slice(0, 3).every((l) => l.mediaType === MediaType.NYDUS_BLOB && l.annotations?.[NydusAnnotation.BLOB] === 'true'));
  assert.equal(man.layers[3]!.annotations?.[NydusAnnotation.BOOTSTRAP], 'true');
  assert.equal(man.annotations?.['containerd.io/snapshot/nydus-source-digest'], image.manifestDigest);
  assert.equal(man.annotations?.['containerd.io/snapshot/nydus-source-reference'], `${reg.host}/library/app:v1`);
  // harbor_annotation: true in the v0.1.1 example config
  assert.equal(man.annotations?.['io.goharbor.artifact.v1alpha1.acceleration.driver.name'], 'nydus');
  const chk = await checkImage({ source: `${reg.host}/library/app:v1`, target: `${reg.host}/library/app:v1-nydus`, sourceClient: client });
  assert.deepEqual(chk.differences, []);
  assert.ok(chk.checked[0]!.files > 5);

  // An external reader: erofs-utils' fsck.erofs walks the bootstrap with the blobs' uncompressed views
  // as its extra devices and extracts every file.
  const bootPath = join(dir, 'v1-nydus.boot');
  const boot = await unpackBootstrapLayer(await client.getBlobBuffer(reg.host, 'library/app', man.layers[3]!.digest));
  await writeFile(bootPath, boot);
  const views: string[] = [];
  for (const b of openBootstrap(boot).blobs) {
    const blobPath = join(dir, `${b.blobId}.blob`);
    await pipeline(await client.getBlob(reg.host, 'library/app', `sha256:${b.blobId}`), createWriteStream(blobPath));
    views.push(join(dir, `${b.blobId}.view`));
    await blobView(blobPath, views.at(-1)!, b.compressor);
  }
  fsckErofs(bootPath, views, join(dir, 'extracted'));
  assert.equal(await readFile(join(dir, 'extracted/srv/app/run.sh'), 'utf8'), '#!/bin/sh\necho hello from ferry\n');

  const tasks = (await (await fetch(`${accel.url}/api/v1/conversions`, { headers: { authorization: AUTH_HEADER } })).json()) as TaskView[];
  const mine = tasks.filter((t) => t.source === `${reg.host}/library/app:v1`);
  assert.equal(mine.length, 1, JSON.stringify(tasks));
  assert.equal(mine[0]!.status, 'COMPLETED');
  assert.ok(mine[0]!.source_size > 0 && mine[0]!.target_size > 0);
  // accel's own push of v1-nydus fired a webhook too; it is skipped, not converted again.
  assert.ok(!tasks.some((t) => t.source.endsWith('-nydus')));
});

test('webhook endpoint: auth header required, bad payloads refused clearly', async () => {
  const url = `${accel.url}/api/v1/conversions`;
  const payload = (resourceUrl: string, type = 'PUSH_ARTIFACT'): string =>
    JSON.stringify({
      type,
      occur_at: 1700000000,
      operator: 'admin',
      event_data: {
        resources: [{ digest: image.manifestDigest, tag: 'v1', resource_url: resourceUrl }],
        repository: { name: 'app', namespace: 'library', repo_full_name: 'library/app', repo_type: 'public' },
      },
    });
  const post = (body: string, headers: Record<string, string> = {}): Promise<Response> =>
    fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });
  const good = `${reg.host}/library/app:v1`;
  let r = await post(payload(good));
  assert.equal(r.status, 401);
  assert.equal(((await r.json()) as { code: string }).code, 'ERR_UNAUTHORIZED');
  r = await post(payload(good), { authorization: 'wrong' });
  assert.equal(r.status, 401);
  r = await post(payload('harbor.elsewhere.example/library/app:v1'), { authorization: AUTH_HEADER });
  assert.equal(r.status, 401);
  assert.match(((await r.json()) as { message: string }).message, /not configured/);
  r = await post('not json{', { authorization: AUTH_HEADER });
  assert.equal(r.status, 400);
  assert.equal(((await r.json()) as { code: string }).code, 'ERR_ILLEGAL_PARAMETER');
  r = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/cloudevents+json', authorization: AUTH_HEADER },
    body: JSON.stringify({ specversion: '1.0', type: 'harbor.artifact.pushed', data: {} }),
  });
  assert.equal(r.status, 400);
  assert.match(((await r.json()) as { message: string }).message, /CloudEvents/);
  r = await post(payload(good, 'NO_SUCH_EVENT'), { authorization: AUTH_HEADER });
  assert.equal(r.status, 400);
  r = await post(payload(good, 'PULL_ARTIFACT'), { authorization: AUTH_HEADER });
  assert.equal(r.status, 200);
  r = await post(JSON.stringify({ type: 'PUSH_ARTIFACT', event_data: { resources: [] } }), { authorization: AUTH_HEADER });
  assert.equal(r.status, 400);
  r = await post(payload(`${reg.host}/library/App:v1`), { authorization: AUTH_HEADER });
  assert.equal(r.status, 400);
  r = await fetch(`${accel.url}/api/v1/nope`);
  assert.equal(r.status, 404);
  assert.deepEqual(await r.json(), { code: 'ERR_INVALID_ENDPOINT', message: 'Endpoint not found' });
  r = await fetch(`${accel.url}/api/v1/health`);
  assert.equal(await r.text(), 'Ok');
  const metrics = await (await fetch(`${accel.url}/metrics`)).text();
  for (const re of [
    /acceleration_service_core_conversions_op_total\{op="convert"\} [1-9]/,
    /acceleration_service_api_requests_total\{code="401",method="POST",url="\/api\/v1\/conversions"\} [1-9]/,
    /ferry_accel_tasks\{status="COMPLETED"\} [1-9]/,
    /ferry_accel_source_bytes_total [1-9]/,
  ]) {
    assert.ok(re.test(metrics), `metrics lack ${re}`);
  }
});

test('ferry task create --sync and task list (accelctl role, both authenticated); a source that does not exist fails with the reason', async () => {
  // A project without a webhook policy: only the task converts it.
  await pushImage(image.layoutDir, `${reg.host}/team/app:v1`, { creds: `admin:${PASSWORD}` });
  const addr = accel.url.replace('http://', '');
  let r = await ferry(['task', 'create', `${reg.host}/team/app:v1`, '--addr', addr]);
  assert.equal(r.code, 2, r.stdout + r.stderr);
  assert.match(r.stderr, /401/);
  r = await ferry(['task', 'create', `${reg.host}/team/app:v1`, '--sync', '--addr', addr, '--auth-header', AUTH_HEADER]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /COMPLETED .*team\/app:v1-nydus/);
  assert.ok(await client.headManifest(parseReference(`${reg.host}/team/app:v1-nydus`)));
  r = await ferry(['task', 'create', `${reg.host}/team/gone:v1`, '--sync', '--addr', addr, '--auth-header', AUTH_HEADER]);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  const unauthenticated = await ferry(['task', 'list', '--addr', addr, '--json']);
  assert.equal(unauthenticated.code, 2);
  assert.match(unauthenticated.stderr, /401 .*--auth-header/s);
  const list = await ferry(['task', 'list', '--addr', addr, '--json', '--auth-header', AUTH_HEADER]);
  const tasks = JSON.parse(list.stdout) as TaskView[];
  const gone = tasks.find((t) => t.source.endsWith('team/gone:v1'))!;
  assert.equal(gone.status, 'FAILED');
  assert.equal(gone.attempts, 1, 'a vanished source is not retried');
  assert.match(gone.reason, /^NOT_FOUND: source .*team\/gone:v1 does not exist in the registry/);
  const table = await ferry(['task', 'list', '--addr', addr], { env: { FERRY_ACCEL_AUTH_HEADER: AUTH_HEADER } });
  assert.match(table.stdout, /^ID\s+CREATED\s+STATUS\s+SOURCE\s+REASON/);
});

test('a cosign signature pushed after the conversion is carried to the -nydus digest, and its tag is never converted', async () => {
  const repo = { registry: reg.host, repository: 'library/app' };
  const target = await eventually('the -nydus tag', () => client.headManifest(parseReference(`${reg.host}/library/app:v1-nydus`)), 90_000);
  const key = signingKey();
  const sigTag = `sha256-${image.manifestDigest.slice(7)}.sig`;
  await pushCosignSignature(client, repo, image.manifestDigest, key.privateKey);
  const carried = `sha256-${target.digest.slice(7)}.sig`;
  await eventually(
    'the signature under the Nydus digest',
    () => client.headManifest(parseReference(`${reg.host}/library/app:${carried}`)),
    60_000,
  );
  assert.equal(await verifyCosignSignature(client, repo, carried, key.publicKey), image.manifestDigest, 'it names the source digest');
  await deliveriesFinal();
  const tasks = (await (await fetch(`${accel.url}/api/v1/conversions`, { headers: { authorization: AUTH_HEADER } })).json()) as TaskView[];
  assert.ok(!tasks.some((t) => t.source.includes('.sig')), JSON.stringify(tasks.map((t) => t.source)));
  assert.equal(await client.headManifest(parseReference(`${reg.host}/library/app:${sigTag}-nydus`)), undefined);
});

test('an ocicrypt-encrypted image pushed by skopeo fails once with a clear reason, is not retried, and no -nydus appears', async () => {
  // skopeo encrypts every layer (JWE, an RSA key made here): `…tar+gzip+encrypted` layers
  const pub = join(dir, 'enc-pub.pem');
  await writeFile(pub, generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'pem' }));
  const r = await exec('skopeo', [
    'copy',
    '--quiet',
    '--dest-tls-verify=false',
    `--dest-creds=admin:${PASSWORD}`,
    '--encryption-key',
    `jwe:${pub}`,
    `oci:${image.layoutDir}`,
    `docker://${reg.host}/library/secret:v1`,
  ]);
  assert.equal(r.code, 0, r.stderr);
  const src = await client.getManifest(parseReference(`${reg.host}/library/secret:v1`));
  assert.ok(parseImageManifest(src.body).layers.every((l) => l.mediaType === `${MediaType.OCI_LAYER_GZIP}+encrypted`));
  const task = await eventually(
    'the encrypted image task finished',
    async () => {
      const list = (await (
        await fetch(`${accel.url}/api/v1/conversions`, { headers: { authorization: AUTH_HEADER } })
      ).json()) as TaskView[];
      const t = list.find((x) => x.source === `${reg.host}/library/secret:v1`);
      return t && t.status !== 'PROCESSING' ? t : undefined;
    },
    60_000,
  );
  assert.equal(task.status, 'FAILED');
  assert.equal(task.attempts, 1, 'a permanent refusal is not retried');
  assert.match(
    task.reason,
    /^FAILED_PRECONDITION: .*layer 0 \(sha256:[a-f0-9]{64}\) is encrypted \(application\/vnd\.oci\.image\.layer\.v1\.tar\+gzip\+encrypted, ocicrypt\)/,
  );
  assert.equal(await client.headManifest(parseReference(`${reg.host}/library/secret:v1-nydus`)), undefined);
});

test('a multi-arch index push is converted once and tagged once (children are not tagged latest-nydus)', async () => {
  // children by digest, then the tagged index — the order docker buildx / skopeo --all use
  const children = [];
  for (const arch of ['amd64', 'arm64']) {
    const cfg = Buffer.from(
      JSON.stringify({ architecture: arch, os: 'linux', rootfs: { type: 'layers', diff_ids: [image.layers[0]!.diffId] } }),
    );
    await client.pushBlob(
      reg.host,
      'library/multi',
      image.layers[0]!.digest,
      image.layers[0]!.size,
      await client.getBlobBuffer(reg.host, 'library/app', image.layers[0]!.digest, 1 << 28),
    );
    const config = await client.pushBuffer(reg.host, 'library/multi', cfg, MediaType.OCI_CONFIG);
    const body = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.OCI_MANIFEST,
        config,
        layers: [{ mediaType: image.layers[0]!.mediaType, digest: image.layers[0]!.digest, size: image.layers[0]!.size }],
      }),
    );
    const digest = await client.putManifest(
      parseReference(`${reg.host}/library/multi@sha256:${createHash('sha256').update(body).digest('hex')}`),
      body,
      MediaType.OCI_MANIFEST,
    );
    children.push({ mediaType: MediaType.OCI_MANIFEST, digest, size: body.length, platform: { os: 'linux', architecture: arch } });
  }
  const idx = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OCI_INDEX, manifests: children }));
  await client.putManifest(parseReference(`${reg.host}/library/multi:v1`), idx, MediaType.OCI_INDEX);
  const target = parseReference(`${reg.host}/library/multi:v1-nydus`);
  await eventually('the -nydus index', () => client.headManifest(target), 60_000);
  const m = await client.getManifest(target);
  assert.equal(m.mediaType, MediaType.OCI_INDEX);
  assert.equal((JSON.parse(m.body.toString()) as { manifests: unknown[] }).manifests.length, 2);
  await deliveriesFinal(); // every event about the index, its children and the -nydus pushes has reached accel
  const tasks = (
    (await (await fetch(`${accel.url}/api/v1/conversions`, { headers: { authorization: AUTH_HEADER } })).json()) as TaskView[]
  ).filter((t) => t.source.includes('/library/multi'));
  assert.equal(tasks.length, 1, JSON.stringify(tasks));
  assert.equal(await client.headManifest(parseReference(`${reg.host}/library/multi:latest-nydus`)), undefined);
});

test('ferry accel refuses a config with an unknown key, naming it', async () => {
  const bad = join(dir, 'bad.yaml');
  await writeFile(bad, 'converter:\n  wokrer: 3\n');
  const r = await ferry(['accel', '--config', bad, '--listen', '127.0.0.1:0']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown key converter\.wokrer/);
});
