/**
 * `ferry bench --quick` end to end: real containerd/runc in network namespaces behind a tbf-shaped
 * registry link, a well-formed report, and the report page rendered by headless Chromium with its
 * charts present (DOM has the chart SVGs; the screenshot is not blank and shows the bar colours).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FERRY_BIN } from '../support/paths.js';
import { requirePrereqs } from '../support/prereq.js';
import { countColor, decodePng, dumpDom, nonBackgroundShare, screenshot } from '../../src/bench/report/index.js';
import { MODE_COLORS } from '../../src/bench/report/index.js';
import type { BenchResults } from '../../src/bench/index.js';

describe('ferry bench --quick', () => {
  let out: string;
  let results: BenchResults;
  before(async () => {
    requirePrereqs({ root: true, commands: ['containerd', 'ctr', 'runc', 'skopeo', 'ip', 'tc', 'nsenter', 'curl', 'chromium', 'busybox', 'docker-registry'] });
    out = await mkdtemp(join(tmpdir(), 'ferry-bench-quick-'));
  });
  after(async () => { if (out) await rm(out, { recursive: true, force: true }); });

  it('runs the quick subset and writes results.json, summary.md, report.html and charts', async () => {
    const child = spawn(process.execPath, [FERRY_BIN, 'bench', '--quick', '--out', out, '--no-png'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), 8 * 60_000);
    const code = await new Promise<number>((res) => child.on('close', (c) => res(c ?? 1)));
    clearTimeout(timer);
    assert.equal(code, 0, `ferry bench exited ${code}: ${stderr.slice(-2000)}`);
    assert.match(stdout, /report: .*report\.html/);
    assert.match(stderr, /\[\d+\/\d+\] hello/); // progress lines (stderr is not a TTY here)
    results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as BenchResults;
    assert.equal(results.schema, 'ferry-bench/v1');
    assert.equal(results.settings.quick, true);
    assert.deepEqual(results.settings.nodes, [1, 2]);
    assert.equal(results.modes.length, 7);
    // lazy-trace: a warm-up run recorded and pushed the trace, then the measured runs used it
    if (results.modes.find((m) => m.id === 'lazy-erofs')?.status === 'run') {
      const lt = results.modes.find((m) => m.id === 'lazy-trace')!;
      assert.equal(lt.status, 'run', lt.reason);
      assert.ok(results.runs.some((r) => r.mode === 'lazy-trace' && r.ok), 'lazy-trace ran');
      assert.ok(!results.notes.some((n) => n.includes('warm-up failed')), results.notes.join(' | '));
    }
    for (const m of results.modes) {
      if (m.status === 'not-run') assert.ok(m.reason && m.reason.length > 5, `mode ${m.id} not run without a reason`);
    }
    // the OCI baseline always runs, at N = 1 and N = 2, and succeeds
    const oci1 = results.summary.find((g) => g.mode === 'oci' && g.nodes === 1);
    const oci2 = results.summary.find((g) => g.mode === 'oci' && g.nodes === 2);
    assert.ok(oci1 && oci2, 'OCI baseline groups present');
    assert.equal(oci1.failures, 0, JSON.stringify(results.runs.filter((r) => !r.ok).map((r) => r.error)));
    assert.ok(oci1.readyMs.median > 0 && oci1.readyMs.median < 60_000, `ready ${oci1.readyMs.median}`);
    const img = results.workloads[0]!.imageBytes;
    // a full pull transfers the whole image: the registry and the interface both see ≥ its size
    assert.ok(oci1.registryBytes.median >= img * 0.98 && oci1.registryBytes.median < img * 1.3, `registry bytes ${oci1.registryBytes.median} vs image ${img}`);
    assert.ok(oci1.registryIfaceBytes.median >= img, 'interface counter covers the image');
    assert.ok(oci2.registryBytes.median >= 2 * img * 0.98, 'two nodes without P2P pull the image twice');
    for (const r of results.runs.filter((x) => x.ok)) {
      for (const n of r.perNode) assert.equal(n.output, 'hello');
    }
    // every run either succeeded or says why it failed; every mode that ran has runs
    for (const r of results.runs) assert.ok(r.ok || (r.error && r.error.length > 5), `run ${r.mode} failed without an error`);
    for (const m of results.modes.filter((x) => x.status === 'run')) {
      assert.ok(results.runs.some((r) => r.mode === m.id), `mode ${m.id} has no runs`);
      if (!results.runs.some((r) => r.mode === m.id && r.ok)) {
        process.stderr.write(`note: mode ${m.id} ran but never succeeded: ${results.runs.filter((r) => r.mode === m.id).map((r) => r.error).join(' | ')}\n`);
      }
    }
    // with Ferry P2P (when this build has it) two nodes cost the registry about one image
    if (results.modes.find((m) => m.id === 'oci-p2p')?.status === 'run') {
      const p2 = results.summary.find((g) => g.mode === 'oci-p2p' && g.nodes === 2)!;
      assert.ok(p2.registryBytes.median <= img * 1.3, `P2P N=2 registry bytes ${p2.registryBytes.median} vs image ${img}`);
      const run2 = results.runs.find((r) => r.mode === 'oci-p2p' && r.nodes === 2 && r.ok)!;
      assert.ok(run2.perNode.every((n) => n.p2p && n.p2p.remotePeer > 0), 'each node got its layers from a peer');
    }
    const md = readFileSync(join(out, 'summary.md'), 'utf8');
    assert.match(md, /## Time to ready, 1 node/);
    assert.match(md, /\| hello \| OCI \(containerd pull \+ overlayfs\) \| \d+\.\d\d s \|/);
    for (const id of ['chart-ready', 'chart-phases', 'chart-bytes', 'chart-egress-hello', 'chart-allready-hello']) {
      assert.ok(existsSync(join(out, 'charts', `${id}.svg`)), id);
    }
  });

  it('renders in headless Chromium with the charts present', async () => {
    const html = join(out, 'report.html');
    const dom = await dumpDom(html);
    for (const id of ['chart-ready', 'chart-phases', 'chart-bytes', 'chart-egress-hello', 'chart-allready-hello']) {
      assert.match(dom, new RegExp(`<svg[^>]*id="${id}"`), `${id} in the rendered DOM`);
    }
    assert.ok((dom.match(/class="bar"/g) ?? []).length >= 2, 'bars drawn');
    const png = join(out, 'report.png');
    await screenshot(html, png, { width: 1280, height: 1800 });
    const image = decodePng(readFileSync(png));
    assert.equal(image.width, 1280);
    assert.ok(nonBackgroundShare(image) > 0.02, 'screenshot is not blank');
    assert.ok(countColor(image, MODE_COLORS.oci, 4) > 500, 'the OCI bars are visible in the screenshot');
  });
});
