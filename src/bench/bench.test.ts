import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { deflateSync } from 'node:zlib';
import { median, percentile, seededRandom, shuffle, summarize } from './stats.js';
import { barChart, lineChart, niceScale } from './report/charts.js';
import { buildCharts, ociRefHighlights, renderHtml, renderMarkdown } from './report/render.js';
import { countColor, decodePng, nonBackgroundShare } from './report/png.js';
import { choosePullClient, summarizeRuns } from './run.js';
import { counterDelta, parseRegistryCounters, sumMetric } from './registry.js';
import { reportedMs } from './measure.js';
import { stargzAuthFile, stargzDaemonArgs } from './estargz.js';
import { DRIVERS, checkLazyPull, hostsToml, lazyPullClient, rpullArgs } from './modes.js';
import { ALL_MODES, MODE_LABELS, type BenchResults, type NodeResult, type RunResult, type WorkloadInfo } from './types.js';

describe('bench stats', () => {
  it('computes median, nearest-rank p95, min/max and ignores non-finite values', () => {
    assert.equal(median([3, 1, 2]), 2);
    assert.equal(median([4, 1, 2, 3]), 2.5);
    assert.equal(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 95), 10);
    assert.equal(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20], 95), 19);
    const s = summarize([5, NaN, 1, 3]);
    assert.deepEqual({ n: s.n, median: s.median, min: s.min, max: s.max }, { n: 3, median: 3, min: 1, max: 5 });
    assert.equal(summarize([]).n, 0);
  });
  it('shuffles reproducibly from a seed, keeping every element', () => {
    const a = shuffle([1, 2, 3, 4, 5, 6], seededRandom(7));
    const b = shuffle([1, 2, 3, 4, 5, 6], seededRandom(7));
    assert.deepEqual(a, b);
    assert.deepEqual([...a].sort(), [1, 2, 3, 4, 5, 6]);
  });
});

function node(readyMs: number, over: Partial<NodeResult> = {}): NodeResult {
  return {
    node: 1,
    ok: true,
    pullMs: readyMs * 0.8,
    createMs: readyMs * 0.05,
    runMs: readyMs * 0.15,
    readyMs,
    rxBytes: 1000,
    ferryCpuMs: 10,
    containerdCpuMs: 20,
    ...over,
  };
}
function run(
  mode: RunResult['mode'],
  nodes: number,
  ready: number[],
  reg: number,
  rep = 1,
  over: Partial<Pick<RunResult, 'registry' | 'bandwidth' | 'registryRequests'>> = {},
): RunResult {
  return {
    workload: 'python',
    mode,
    registry: 'ferry',
    bandwidth: '100mbit',
    registryRequests: 20,
    ...over,
    nodes,
    rep,
    startedAt: '2026-01-01T00:00:00Z',
    ok: true,
    registryBlobBytes: reg,
    registryIfaceBytes: reg * 1.02,
    allReadyMs: Math.max(...ready),
    serviceCpuMs: 0,
    perNode: ready.map((r, i) => node(r, { node: i + 1 })),
  };
}
const info: WorkloadInfo = {
  id: 'python',
  title: 'python hello',
  command: ['python3'],
  ready: { kind: 'exit', stdout: 'hello' },
  imageBytes: 50_000_000,
  uncompressedBytes: 150_000_000,
  refs: { ferry: { oci: 'r/x:oci', nydus: 'r/x:nydus' }, distribution: { oci: 'd/x:oci', nydus: 'd/x:nydus' } },
};

function results(): BenchResults {
  const runs = [
    run('oci', 1, [10_000], 50_000_000),
    run('oci', 1, [12_000], 50_000_000, 2),
    run('lazy-erofs', 1, [1_000], 2_000_000),
    run('lazy-erofs', 1, [1_200], 2_000_000, 2),
    run('oci', 2, [20_000, 21_000], 100_000_000),
    run('lazy-p2p', 2, [1_500, 1_600], 2_100_000),
    run('oci', 1, [15_000], 50_000_000, 1, { registry: 'distribution', registryRequests: 9 }),
    run('lazy-erofs', 1, [3_000], 2_500_000, 1, { registry: 'distribution', registryRequests: 210 }),
    run('estargz', 1, [2_000], 5_000_000, 1, { registry: 'distribution', registryRequests: 22 }),
    run('estargz-opt', 1, [1_500], 5_000_000, 1, { registry: 'distribution', registryRequests: 24 }),
  ];
  return {
    schema: 'ferry-bench/v2',
    startedAt: '2026-01-01T00:00:00Z',
    finishedAt: '2026-01-01T00:10:00Z',
    gitCommit: 'abc',
    machine: { hostname: 'h', cpuModel: 'cpu', cores: 2, memoryGiB: 24, kernel: '6', os: 'Debian', node: 'v20' },
    settings: { bandwidths: ['100mbit'], repeat: 2, nodes: [1, 2], quick: false, registries: ['ferry', 'distribution'], seed: 1 },
    modes: [
      { id: 'oci', label: 'OCI', status: 'run' },
      { id: 'lazy-erofs', label: 'lazy', status: 'run' },
      { id: 'lazy-fuse', label: 'fuse', status: 'not-run', reason: 'no FUSE option yet' },
      { id: 'lazy-p2p', label: 'p2p', status: 'run' },
    ],
    workloads: [info],
    runs,
    summary: summarizeRuns(runs, [info]),
    notes: ['a note'],
  };
}

describe('bench summaries and report', () => {
  it('summarises groups with speed-up against the OCI baseline at the same N', () => {
    const r = results();
    const lazy = r.summary.find((g) => g.mode === 'lazy-erofs' && g.nodes === 1 && g.registry === 'ferry')!;
    assert.equal(lazy.readyMs.median, 1_100);
    assert.equal(lazy.speedup, 11_000 / 1_100);
    assert.equal(lazy.registryBytesPerImage, 2_000_000 / 50_000_000);
    const p2p = r.summary.find((g) => g.mode === 'lazy-p2p' && g.nodes === 2)!;
    assert.equal(p2p.allReadyMs.median, 1_600);
    assert.equal(p2p.speedup, 21_000 / 1_600);
    assert.equal(r.summary.find((g) => g.mode === 'oci' && g.nodes === 1 && g.registry === 'ferry')!.speedup, 1);
  });
  it('keeps each registry in groups of its own, with speed-up against the OCI run of the same registry', () => {
    const r = results();
    const d = r.summary.find((g) => g.mode === 'lazy-erofs' && g.registry === 'distribution')!;
    assert.equal(d.readyMs.median, 3_000);
    assert.equal(d.speedup, 15_000 / 3_000);
    assert.equal(d.registryRequests.median, 210);
    const f = r.summary.find((g) => g.mode === 'lazy-erofs' && g.nodes === 1 && g.registry === 'ferry')!;
    assert.equal(f.readyMs.n, 2);
    assert.equal(f.registryRequests.median, 20);
  });
  it('puts the OCI-ref mode beside full Nydus and OCI: time to ready, registry bytes and requests', () => {
    const base = results();
    const runs = [
      ...base.runs,
      run('oci-ref', 1, [2_000], 4_000_000, 1, { registryRequests: 31 }),
      run('oci-ref', 1, [2_400], 4_000_000, 2, { registryRequests: 33 }),
    ];
    const r: BenchResults = {
      ...base,
      modes: [...base.modes, { id: 'oci-ref', label: MODE_LABELS['oci-ref'], status: 'run' }],
      runs,
      summary: summarizeRuns(runs, [info]),
    };
    const g = r.summary.find((x) => x.mode === 'oci-ref')!;
    assert.equal(g.speedup, 11_000 / 2_200);
    assert.deepEqual(ociRefHighlights(r), [
      'python, OCI-ref / full Nydus (EROFS) / OCI: ready 2.20 s / 1.10 s / 11.00 s; registry served 3.8 MiB / 1.9 MiB / 47.7 MiB in 32 / 20 / 20 requests',
    ]);
    const md = renderMarkdown(r, []);
    assert.match(md, /\| python \| ferry \| 100mbit \| Ferry OCI-ref \(original gzip image, zran index\) \| 2\.20 s \|/);
    assert.match(md, /- python, OCI-ref \/ full Nydus/);
    assert.deepEqual(ociRefHighlights(results()), [], 'no line without OCI-ref runs');
  });
  it('counts failed runs and leaves them out of the statistics', () => {
    const runs = [run('oci', 1, [10_000], 1), { ...run('oci', 1, [1], 1, 2), ok: false, error: 'boom', perNode: [node(1, { ok: false })] }];
    const g = summarizeRuns(runs, [info])[0]!;
    assert.equal(g.failures, 1);
    assert.equal(g.readyMs.n, 1);
    assert.equal(g.readyMs.median, 10_000);
  });
  it('renders Markdown and HTML with every mode, not-run reasons and the charts', () => {
    const r = results();
    const md = renderMarkdown(r, ['charts/chart-ready.png']);
    assert.match(md, /\| python \| ferry \| 100mbit \| Ferry lazy \(EROFS\) \| 1\.10 s \|/);
    // the registries side by side, each with requests per start
    assert.match(md, /\| python \| distribution \| 100mbit \| Ferry lazy \(EROFS\) \| 3\.00 s \|.*\| 210 \|.*\| 5\.0× \|/);
    assert.match(md, /not run.*no FUSE option yet/);
    assert.match(md, /## N nodes at once \(python, 100mbit registry link · ferry registry\)/);
    assert.match(
      md,
      /- python: Ferry lazy \(EROFS\) ready in 1\.10 s vs 11\.00 s for OCI \(speed-up 10×, registry served 4\.00 % of the image\)/,
    );
    assert.match(
      md,
      /python, 2 nodes at once — registry egress: OCI \(containerd pull \+ overlayfs\) 2\.00× image, all ready in 21\.00 s; Ferry lazy \+ P2P 0\.04× image/,
    );
    assert.match(md, /!\[charts\/chart-ready.png\]/);
    // against the peer: the better eStargz variant (optimized, 1.5 s) is the reference
    assert.match(md, /\| python \| distribution \| 100mbit \| optimized \| 2\.00× \| – \| 210 \/ 24 \| 0\.50× \|/);
    assert.doesNotMatch(md, /\| python \| ferry \| 100mbit \| [0-9.]+× \|/, 'no peer row where eStargz was not measured');
    const charts = buildCharts(r);
    assert.deepEqual(
      charts.map((c) => c.id),
      ['chart-ready', 'chart-phases', 'chart-bytes', 'chart-egress-python', 'chart-allready-python'],
    );
    const html = renderHtml(r, charts);
    for (const c of charts) assert.ok(html.includes(`id="${c.id}"`), c.id);
    assert.match(html, /no FUSE option yet/);
    assert.doesNotMatch(html, /NaN/);
  });
});

describe('bench charts', () => {
  it('picks nice axis scales', () => {
    assert.deepEqual(niceScale(9.3), { max: 10, step: 2 });
    assert.deepEqual(niceScale(0), { max: 1, step: 0.2 });
    assert.equal(niceScale(123).max, 125);
  });
  it('draws one bar per measured value and marks missing ones', () => {
    const svg = barChart({
      id: 'c',
      title: 'T <x>',
      groups: ['a', 'b'],
      yLabel: 's',
      series: [
        { name: 'm1', values: [1, null] },
        { name: 'm2', values: [2, 3], lo: [1.5, 2], hi: [2.5, 4] },
      ],
    });
    assert.equal((svg.match(/class="bar"/g) ?? []).length, 3);
    assert.match(svg, />n\/a</);
    assert.match(svg, /T &lt;x&gt;/);
    assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg" id="c"/);
  });
  it('draws lines with gaps for missing points', () => {
    const svg = lineChart({ id: 'l', title: 'L', x: [1, 2, 4], xLabel: 'N', yLabel: 'MiB', series: [{ name: 's', points: [1, null, 3] }] });
    assert.equal((svg.match(/<circle/g) ?? []).length, 2);
    assert.equal((svg.match(/ M/g) ?? []).length + (svg.match(/d="M/g) ?? []).length, 2);
  });
});

describe('bench helpers', () => {
  it('sums a Prometheus counter over label sets', () => {
    const text =
      '# HELP x\nferry_registry_blob_bytes_served_total{repo="a"} 10\nferry_registry_blob_bytes_served_total{repo="b"} 5\nferry_registry_blob_bytes_served_total_other 99\n';
    assert.equal(sumMetric(text, 'ferry_registry_blob_bytes_served_total'), 15);
    assert.equal(sumMetric('', 'ferry_registry_blob_bytes_served_total'), null);
  });
  it('reads bytes and requests from each registry’s own metrics', () => {
    const ferry =
      'ferry_registry_blob_bytes_served_total 100\nferry_registry_requests_total{route="blob",code="206"} 7\n' +
      'ferry_registry_requests_total{route="manifest",code="200"} 2\nferry_registry_requests_total{route="other",code="200"} 40\n';
    assert.deepEqual(parseRegistryCounters('ferry', ferry), { blobBytes: 100, requests: 9 });
    const dist =
      'registry_http_requests_total{code="200",handler="blob",method="get"} 5\n' +
      'registry_http_requests_total{code="200",handler="manifest",method="get"} 1\n' +
      'registry_http_response_size_bytes_sum{handler="blob"} 4096\nregistry_http_response_size_bytes_sum{handler="manifest"} 999\n';
    assert.deepEqual(parseRegistryCounters('distribution', dist), { blobBytes: 4096, requests: 6 });
    // distribution answered but no request series yet: zero, not unknown; no metrics at all: unknown
    assert.deepEqual(parseRegistryCounters('distribution', 'registry_http_in_flight_requests{handler="blob"} 0\n'), {
      blobBytes: 0,
      requests: 0,
    });
    assert.deepEqual(parseRegistryCounters('distribution', 'go_goroutines 3\n'), { blobBytes: null, requests: null });
    assert.equal(counterDelta(5, 12), 7);
    assert.equal(counterDelta(null, 12), null);
  });
  it('takes the time a workload reports for its own read', () => {
    assert.equal(reportedMs('hello read_ms=1234'), 1234);
    assert.equal(reportedMs('hello'), undefined);
  });
  it('gives the stargz daemon plain-HTTP hosts and logins in a file, not on its command line', () => {
    const args = stargzDaemonArgs({ root: '/r', address: '/r/s.sock', registries: ['10.0.0.1:5000'], authFile: '/r/auth' });
    assert.deepEqual(args.slice(args.indexOf('--insecure-host')), ['--insecure-host', '10.0.0.1:5000', '--auth-file', '/r/auth']);
    assert.ok(!args.join(' ').includes('secret'));
    assert.equal(
      stargzAuthFile([{ host: 'a:5000', creds: { username: 'u', password: 'secret' } }, { host: 'b:5001' }]),
      'a:5000 u:secret\n',
    );
  });
  it('knows the oci-ref mode, which pulls the original image only where its index was attached', () => {
    assert.ok(ALL_MODES.includes('oci-ref'));
    assert.equal(DRIVERS['oci-ref'].ref({ oci: 'r/x:oci', nydus: 'r/x:nydus' }), undefined);
    assert.equal(DRIVERS['oci-ref'].ref({ oci: 'r/x:oci', nydus: 'r/x:nydus', ociRef: 'r/x:oci' }), 'r/x:oci');
  });
  it('accepts an oci-ref pull only when every layer was taken lazily', () => {
    const out = (...how: string[]): string =>
      `${JSON.stringify({ name: 'r/x:oci', layers: how.map((h, i) => ({ digest: `sha256:${String(i).repeat(64)}`, how: h, bytes: 0 })) })}\n`;
    checkLazyPull(out('remote', 'remote'), 'r/x:oci');
    assert.throws(
      () => checkLazyPull(out('remote', 'applied'), 'r/x:oci'),
      /not run lazily: 1 of 2 layers downloaded \(sha256:111111111111 applied\)/,
    );
    assert.throws(() => checkLazyPull(out(), 'r/x:oci'), /not run lazily: no of 0 layers/);
    assert.throws(() => checkLazyPull('ferry pull: boom\n', 'r/x:oci'), /printed no result: ferry pull: boom/);
  });
  it('pulls the Ferry lazy modes with ctr-remote by default, ferry pull on request or without ctr-remote, oci-ref always with ferry pull', () => {
    assert.equal(choosePullClient(undefined, true).client, 'ctr-remote');
    assert.match(choosePullClient(undefined, true).note, /ctr-remote images rpull --snapshotter ferry/);
    assert.equal(choosePullClient('ferry', true).client, 'ferry');
    const missing = choosePullClient(undefined, false);
    assert.equal(missing.client, 'ferry');
    assert.match(missing.note, /ctr-remote, the default client, is not installed/);
    assert.equal(lazyPullClient({}, {}), 'ctr-remote');
    assert.equal(lazyPullClient({ pullClient: 'ferry' }, { trace: true }), 'ferry');
    assert.equal(lazyPullClient({ pullClient: 'ctr-remote' }, { ociRef: true }), 'ferry');
    assert.deepEqual(rpullArgs({ address: '/c.sock', namespace: 'ns' }, 'ferry', 'r/x:nydus'), [
      '--address',
      '/c.sock',
      '--namespace',
      'ns',
      'images',
      'rpull',
      '--plain-http',
      '--snapshotter',
      'ferry',
      'r/x:nydus',
    ]);
  });
  it('writes a containerd hosts.toml mirror entry', () => {
    assert.equal(
      hostsToml('198.18.0.1:5000', 'http://127.0.0.1:65001'),
      'server = "http://198.18.0.1:5000"\n\n[host."http://127.0.0.1:65001"]\n  capabilities = ["pull", "resolve"]\n' +
        '  [host."http://127.0.0.1:65001".header]\n    X-Dragonfly-Registry = "http://198.18.0.1:5000"\n',
    );
  });
  it('decodes a PNG (all filter types) and measures its content', () => {
    const w = 4;
    const h = 5;
    const rows: Buffer[] = [];
    // raw RGB rows, each with a different filter whose encoding we compute
    const pix = (x: number, y: number): number[] => (x === 1 && y === 2 ? [31, 111, 235] : [255, 255, 255]);
    let prev = Buffer.alloc(w * 3);
    for (let y = 0; y < h; y++) {
      const line = Buffer.from(Array.from({ length: w }, (_, x) => pix(x, y)).flat());
      const f = y % 5;
      const enc = Buffer.alloc(line.length);
      for (let i = 0; i < line.length; i++) {
        const a = i >= 3 ? line[i - 3]! : 0;
        const b = prev[i]!;
        const c = i >= 3 ? prev[i - 3]! : 0;
        let pred = 0;
        if (f === 1) pred = a;
        else if (f === 2) pred = b;
        else if (f === 3) pred = (a + b) >> 1;
        else if (f === 4) {
          const p = a + b - c;
          const pa = Math.abs(p - a);
          const pb = Math.abs(p - b);
          const pc = Math.abs(p - c);
          pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
        }
        enc[i] = (line[i]! - pred) & 0xff;
      }
      rows.push(Buffer.concat([Buffer.from([f]), enc]));
      prev = line;
    }
    const chunk = (type: string, data: Buffer): Buffer => {
      const len = Buffer.alloc(4);
      len.writeUInt32BE(data.length);
      return Buffer.concat([len, Buffer.from(type, 'latin1'), data, Buffer.alloc(4)]);
    };
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(w, 0);
    ihdr.writeUInt32BE(h, 4);
    ihdr[8] = 8;
    ihdr[9] = 2;
    const png = Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      chunk('IHDR', ihdr),
      chunk('IDAT', deflateSync(Buffer.concat(rows))),
      chunk('IEND', Buffer.alloc(0)),
    ]);
    const img = decodePng(png);
    assert.equal(img.width, 4);
    assert.equal(countColor(img, '#1f6feb', 0), 1);
    assert.equal(nonBackgroundShare(img), 1 / 20);
    assert.throws(() => decodePng(Buffer.from('nope')), /not a PNG/);
  });
});
