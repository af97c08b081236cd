/**
 * @module bench/report/render
 * Turns results.json into the report: the charts (SVG), a Markdown summary and an HTML page that
 * embeds the charts inline and lists every mode, including those not run and why.
 */
import { formatBytes } from '../../core/index.js';
import type { BenchResults, GroupSummary, ModeId, RegistryKind } from '../types.js';
import { MODE_LABELS, REGISTRY_LABELS } from '../types.js';
import { barChart, lineChart, stackedBarChart } from './charts.js';

export const MODE_COLORS: Record<ModeId, string> = {
  oci: '#6e7781',
  'lazy-erofs': '#1f6feb',
  'lazy-fuse': '#54aeff',
  'lazy-prefetch': '#1a7f37',
  'lazy-trace': '#cf222e',
  'lazy-p2p': '#8250df',
  'oci-p2p': '#bf8700',
  estargz: '#953800',
  'estargz-opt': '#d4a72c',
  'oci-ref': '#0a3069',
};

export interface Chart {
  id: string;
  title: string;
  svg: string;
}

const sec = (ms: number): string => (Number.isFinite(ms) ? `${(ms / 1000).toFixed(2)} s` : '–');
const bytes = (b: number): string => (Number.isFinite(b) ? formatBytes(Math.round(b)) : '–');
const pct = (x: number): string => (Number.isFinite(x) ? `${(x * 100).toFixed(x < 0.1 ? 2 : 1)} %` : '–');
const range = (a: number, b: number): string => (Number.isFinite(a) && Number.isFinite(b) ? `${sec(a)}–${sec(b)}` : '–');
const ms = (x: number): string => (Number.isFinite(x) ? `${Math.round(x)} ms` : '–');
const times = (x: number | null): string => (x !== null && Number.isFinite(x) ? `${x.toFixed(x >= 10 ? 0 : 1)}×` : '–');

function ranModes(r: BenchResults): ModeId[] {
  return r.modes.filter((m) => m.status === 'run').map((m) => m.id);
}

/** The profile the charts and N-node tables show: the first registry and link of the run. */
function primary(r: BenchResults): { registry: RegistryKind; bandwidth: string } {
  return { registry: r.settings.registries[0] ?? 'ferry', bandwidth: r.settings.bandwidths[0] ?? '' };
}

const inPrimary = (r: BenchResults, g: GroupSummary): boolean => g.registry === primary(r).registry && g.bandwidth === primary(r).bandwidth;

function group(
  r: BenchResults,
  w: string,
  m: ModeId,
  n: number,
  profile: { registry: RegistryKind; bandwidth: string } = primary(r),
): GroupSummary | undefined {
  return r.summary.find(
    (g) => g.workload === w && g.mode === m && g.nodes === n && g.registry === profile.registry && g.bandwidth === profile.bandwidth,
  );
}

/** Every (registry, link) pair with N = 1 results, primary first. */
function profiles(r: BenchResults): Array<{ registry: RegistryKind; bandwidth: string }> {
  const out: Array<{ registry: RegistryKind; bandwidth: string }> = [];
  for (const bandwidth of r.settings.bandwidths)
    for (const registry of r.settings.registries)
      if (r.summary.some((g) => g.registry === registry && g.bandwidth === bandwidth)) out.push({ registry, bandwidth });
  return out;
}

const profileText = (r: BenchResults): string => `${primary(r).bandwidth} registry link · ${REGISTRY_LABELS[primary(r).registry]}`;

/** Fan-out workloads: those measured at more than one N. */
function fanoutWorkloads(r: BenchResults): string[] {
  return r.workloads
    .map((w) => w.id)
    .filter((id) => new Set(r.summary.filter((g) => g.workload === id && inPrimary(r, g)).map((g) => g.nodes)).size > 1);
}

/** How many runs each group actually has ("5", or "3–4" after an interrupted run). */
function runsText(r: BenchResults): string {
  const counts = r.summary.map((g) => g.runs - g.failures);
  if (counts.length === 0) return '0';
  const lo = Math.min(...counts);
  const hi = Math.max(...counts);
  return lo === hi ? String(lo) : `${lo}–${hi}`;
}

export function buildCharts(r: BenchResults): Chart[] {
  const charts: Chart[] = [];
  const modes = ranModes(r);
  const wl = r.workloads.map((w) => w.id);
  const sub = `${profileText(r)} · median of ${runsText(r)} cold run(s), whiskers min–max · ${r.startedAt.slice(0, 10)}`;
  charts.push({
    id: 'chart-ready',
    title: 'Time to ready per workload (N = 1)',
    svg: barChart({
      id: 'chart-ready',
      title: 'Time to ready per workload and mode (1 node)',
      subtitle: sub,
      groups: wl,
      yLabel: 'seconds from pull start to ready',
      series: r.modes
        .map((ms) => ms.id)
        .map((m) => ({
          name: modes.includes(m) ? MODE_LABELS[m] : `${MODE_LABELS[m]} — not run`,
          color: MODE_COLORS[m],
          values: wl.map((w) => {
            const g = group(r, w, m, 1);
            return g?.readyMs.n ? g.readyMs.median / 1000 : null;
          }),
          lo: wl.map((w) => {
            const g = group(r, w, m, 1);
            return g?.readyMs.n ? g.readyMs.min / 1000 : null;
          }),
          hi: wl.map((w) => {
            const g = group(r, w, m, 1);
            return g?.readyMs.n ? g.readyMs.max / 1000 : null;
          }),
          labels: wl.map((w) => {
            const g = group(r, w, m, 1);
            if (!g?.readyMs.n) return null;
            const v = (g.readyMs.median / 1000).toFixed(g.readyMs.median < 10_000 ? 2 : 1);
            return m !== 'oci' && g.speedup !== null ? `${v} (${times(g.speedup)})` : v;
          }),
        })),
    }),
  });
  charts.push({
    id: 'chart-phases',
    title: 'Where the time goes: pull, create, run (N = 1)',
    svg: stackedBarChart({
      id: 'chart-phases',
      title: 'Where the time goes: pull, create, run (1 node)',
      subtitle: 'medians of each phase, seconds; bar = sum',
      groups: wl,
      yLabel: 'seconds',
      segmentNames: ['pull', 'create', 'run → ready'],
      series: modes
        .filter((m) => m !== 'oci-p2p' && m !== 'lazy-p2p')
        .map((m) => ({
          name: MODE_LABELS[m],
          color: MODE_COLORS[m],
          segments: wl.map((w) => {
            const g = group(r, w, m, 1);
            return g?.readyMs.n ? [g.pullMs.median / 1000, g.createMs.median / 1000, g.runMs.median / 1000] : [null, null, null];
          }),
        })),
    }),
  });
  charts.push({
    id: 'chart-bytes',
    title: 'Registry bytes per start, % of the OCI image',
    svg: barChart({
      id: 'chart-bytes',
      title: 'Bytes served by the registry per container start (1 node)',
      subtitle: 'percent of the compressed OCI image; registry counter (interface counter if absent)',
      groups: wl,
      yLabel: '% of image',
      format: (v) => `${v < 10 ? v.toFixed(1) : v.toFixed(0)}%`,
      series: modes
        .filter((m) => m !== 'lazy-p2p' && m !== 'oci-p2p')
        .map((m) => ({
          name: MODE_LABELS[m],
          color: MODE_COLORS[m],
          values: wl.map((w) => {
            const g = group(r, w, m, 1);
            return g?.registryBytes.n ? g.registryBytesPerImage * 100 : null;
          }),
        })),
    }),
  });
  for (const fw of fanoutWorkloads(r)) {
    const ns = [...new Set(r.summary.filter((g) => g.workload === fw).map((g) => g.nodes))].sort((a, b) => a - b);
    const fModes = modes.filter((m) => ns.some((n) => n > 1 && group(r, fw, m, n)));
    const img = r.workloads.find((w) => w.id === fw)?.imageBytes ?? 0;
    charts.push({
      id: `chart-egress-${fw}`,
      title: `Registry egress vs nodes (${fw})`,
      svg: lineChart({
        id: `chart-egress-${fw}`,
        title: `Registry egress vs number of nodes (${fw})`,
        subtitle: `all nodes start at once · ${profileText(r)} · median`,
        x: ns,
        xLabel: 'nodes starting the image at once',
        yLabel: 'MiB served by the registry',
        series: [
          ...fModes.map((m) => ({
            name: MODE_LABELS[m],
            color: MODE_COLORS[m],
            points: ns.map((n) => {
              const g = group(r, fw, m, n);
              return g?.registryBytes.n ? g.registryBytes.median / 2 ** 20 : null;
            }),
          })),
          { name: 'N × OCI image size', color: '#8c959f', dashed: true, points: ns.map((n) => (n * img) / 2 ** 20) },
        ],
      }),
    });
    charts.push({
      id: `chart-allready-${fw}`,
      title: `All-nodes-ready time vs nodes (${fw})`,
      svg: lineChart({
        id: `chart-allready-${fw}`,
        title: `Time until all nodes are ready (${fw})`,
        subtitle: `slowest node, pull start → ready · ${profileText(r)} · median`,
        x: ns,
        xLabel: 'nodes starting the image at once',
        yLabel: 'seconds',
        series: fModes.map((m) => ({
          name: MODE_LABELS[m],
          color: MODE_COLORS[m],
          points: ns.map((n) => {
            const g = group(r, fw, m, n);
            return g?.allReadyMs.n ? g.allReadyMs.median / 1000 : null;
          }),
        })),
      }),
    });
  }
  return charts;
}

const diffText = (d: number): string => (d >= 0 ? `${(d * 100).toFixed(0)} % slower` : `${(-d * 100).toFixed(0)} % faster`);

/** Headline findings, computed from the summaries (no numbers invented: missing data is skipped). */
export function highlights(r: BenchResults): string[] {
  const out: string[] = [];
  for (const w of r.workloads) {
    const oci = group(r, w.id, 'oci', 1);
    if (!oci?.readyMs.n) continue;
    const best = r.summary
      .filter((g) => inPrimary(r, g) && g.workload === w.id && g.nodes === 1 && g.mode !== 'oci' && g.readyMs.n && g.speedup !== null)
      .sort((a, b) => a.readyMs.median - b.readyMs.median)[0];
    if (!best) continue;
    const bytesPart = Number.isFinite(best.registryBytesPerImage)
      ? `, registry served ${pct(best.registryBytesPerImage)} of the image`
      : '';
    out.push(
      `${w.id}: ${MODE_LABELS[best.mode]} ready in ${sec(best.readyMs.median)} vs ${sec(oci.readyMs.median)} for OCI (speed-up ${times(best.speedup)}${bytesPart})`,
    );
  }
  const large = r.workloads.find((w) => w.id === 'large');
  const small = r.workloads.find((w) => w.id === 'python');
  if (large && small) {
    for (const m of ['lazy-erofs', 'lazy-prefetch', 'lazy-trace'] as ModeId[]) {
      const gl = group(r, 'large', m, 1);
      const gs = group(r, 'python', m, 1);
      if (gl?.readyMs.n && gs?.readyMs.n) {
        out.push(
          `large image (${bytes(large.imageBytes)}) vs python (${bytes(small.imageBytes)}) with ${MODE_LABELS[m]}: ${sec(gl.readyMs.median)} vs ${sec(gs.readyMs.median)} (${diffText(gl.readyMs.median / gs.readyMs.median - 1)})`,
        );
      }
    }
  }
  out.push(...ociRefHighlights(r));
  for (const fw of fanoutWorkloads(r)) {
    const img = r.workloads.find((w) => w.id === fw)?.imageBytes ?? NaN;
    const maxN = Math.max(...r.summary.filter((g) => g.workload === fw && inPrimary(r, g)).map((g) => g.nodes));
    const parts = (['oci', 'oci-p2p', 'lazy-erofs', 'lazy-p2p'] as ModeId[])
      .map((m) => {
        const g = group(r, fw, m, maxN);
        return g?.registryBytes.n
          ? `${MODE_LABELS[m]} ${(g.registryBytes.median / img).toFixed(2)}× image, all ready in ${sec(g.allReadyMs.median)}`
          : undefined;
      })
      .filter(Boolean);
    if (parts.length) out.push(`${fw}, ${maxN} nodes at once — registry egress: ${parts.join('; ')}`);
  }
  return out;
}

/**
 * The OCI-ref mode against the two images it stands between (one node, first registry and link):
 * full Nydus (`lazy-erofs`) and the plain OCI pull, in time to ready, registry bytes and requests.
 */
export function ociRefHighlights(r: BenchResults): string[] {
  const out: string[] = [];
  for (const w of r.workloads) {
    const ref = group(r, w.id, 'oci-ref', 1);
    if (!ref?.readyMs.n) continue;
    const three = [ref, group(r, w.id, 'lazy-erofs', 1), group(r, w.id, 'oci', 1)];
    const col = (f: (g: GroupSummary) => string): string => three.map((g) => (g?.readyMs.n ? f(g) : '–')).join(' / ');
    out.push(
      `${w.id}, OCI-ref / full Nydus (EROFS) / OCI: ready ${col((g) => sec(g.readyMs.median))}; ` +
        `registry served ${col((g) => bytes(g.registryBytes.median))} in ${col((g) => (Number.isFinite(g.registryRequests.median) ? String(Math.round(g.registryRequests.median)) : '–'))} requests`,
    );
  }
  return out;
}

function mdTable(head: string[], rows: string[][]): string {
  return [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

/** Throughput a workload reported for its own read (bytes ÷ its read_ms), MB/s. */
function readRate(w: { reportsReadBytes?: number }, g: GroupSummary): string {
  if (!w.reportsReadBytes || !g.appMs.n || !(g.appMs.median > 0)) return '–';
  return `${(w.reportsReadBytes / 1e6 / (g.appMs.median / 1000)).toFixed(1)} MB/s`;
}

/** One row per workload × registry × link × mode at N = 1: the registries side by side. */
function readyRows(r: BenchResults): string[][] {
  const rows: string[][] = [];
  for (const w of r.workloads) {
    for (const pf of profiles(r)) {
      for (const m of r.modes) {
        const g = group(r, w.id, m.id, 1, pf);
        const head = [w.id, pf.registry, pf.bandwidth, MODE_LABELS[m.id]];
        if (m.status !== 'run' || !g) {
          const why =
            m.status !== 'run' ? (m.reason ?? 'not measured') : 'not measured for this workload (P2P modes run on the fan-out workloads)';
          rows.push([...head, 'not run', '', '', '', '', '', '', '', '', '', '', why]);
          continue;
        }
        rows.push([
          ...head,
          g.readyMs.n ? sec(g.readyMs.median) : 'failed',
          range(g.readyMs.min, g.readyMs.max),
          sec(g.pullMs.median),
          sec(g.createMs.median),
          sec(g.runMs.median),
          bytes(g.registryBytes.median),
          pct(g.registryBytesPerImage),
          g.registryRequests.n ? String(Math.round(g.registryRequests.median)) : '–',
          g.lazyBytesFetched.n ? bytes(g.lazyBytesFetched.median) : '–',
          readRate(w, g),
          ms(g.ferryCpuMs.median),
          m.id === 'oci' ? '1× (baseline)' : times(g.speedup) + (g.failures ? ` · ${g.failures} failed` : ''),
        ]);
      }
    }
  }
  return rows;
}

const READY_HEAD = [
  'workload',
  'registry',
  'link',
  'mode',
  'ready (median)',
  'min–max',
  'pull',
  'create',
  'run',
  'registry bytes',
  '% of image',
  'requests per start',
  'daemon fetched',
  'app read rate',
  'node daemons CPU',
  'speed-up vs OCI',
];
const FAN_HEAD = [
  'N',
  'mode',
  'all ready (median)',
  'p95',
  'min–max',
  'registry egress',
  '× image',
  'per-node rx (median)',
  'Ferry CPU/node',
];

function fanRows(r: BenchResults, fw: string): string[][] {
  const img = r.workloads.find((w) => w.id === fw)?.imageBytes ?? NaN;
  return r.summary
    .filter((g) => g.workload === fw && inPrimary(r, g))
    .sort((a, b) => a.nodes - b.nodes || a.mode.localeCompare(b.mode))
    .map((g) => [
      String(g.nodes),
      MODE_LABELS[g.mode],
      g.allReadyMs.n ? sec(g.allReadyMs.median) : 'failed',
      sec(g.allReadyMs.p95),
      range(g.allReadyMs.min, g.allReadyMs.max),
      bytes(g.registryBytes.median),
      Number.isFinite(img) && g.registryBytes.n ? `${(g.registryBytes.median / img).toFixed(2)}×` : '–',
      bytes(g.nodeRxBytes.median),
      ms(g.ferryCpuMs.median),
    ]);
}

const ratio = (a: number | undefined, b: number | undefined): string =>
  a !== undefined && b !== undefined && Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : '–';

export const PEER_HEAD = [
  'workload',
  'registry',
  'link',
  'eStargz reference',
  'time: lazy ÷ eStargz',
  'time: lazy + trace ÷ eStargz',
  'requests: lazy / eStargz',
  'bytes: lazy ÷ eStargz',
];

/**
 * Ferry against the peer, N = 1, per workload, registry and link: ready-time ratios of Ferry's
 * default lazy mode and of lazy + trace to eStargz (the better of plain and optimized), requests
 * per start of each, registry bytes ratio; which eStargz variant was the faster (the reference)
 * is named in its own column. Rows only where both were measured.
 */
export function peerRows(r: BenchResults): string[][] {
  const rows: string[][] = [];
  for (const w of r.workloads) {
    for (const pf of profiles(r)) {
      const med = (m: ModeId): GroupSummary | undefined => {
        const g = group(r, w.id, m, 1, pf);
        return g?.readyMs.n ? g : undefined;
      };
      const peer = [med('estargz'), med('estargz-opt')]
        .filter((g): g is GroupSummary => g !== undefined)
        .sort((a, b) => a.readyMs.median - b.readyMs.median)[0];
      const lazy = med('lazy-erofs');
      if (!peer || !lazy) continue;
      const trace = med('lazy-trace');
      const req = (g: GroupSummary): string => (g.registryRequests.n ? String(Math.round(g.registryRequests.median)) : '?');
      rows.push([
        w.id,
        pf.registry,
        pf.bandwidth,
        peer.mode === 'estargz-opt' ? 'optimized' : 'plain',
        ratio(lazy.readyMs.median, peer.readyMs.median),
        ratio(trace?.readyMs.median, peer.readyMs.median),
        `${req(lazy)} / ${req(peer)}`,
        ratio(lazy.registryBytes.median, peer.registryBytes.median),
      ]);
    }
  }
  return rows;
}

function machineLine(r: BenchResults): string {
  const m = r.machine;
  return `${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB, ${m.os}, kernel ${m.kernel}, Node ${m.node}`;
}

export function renderMarkdown(r: BenchResults, chartFiles: string[] = []): string {
  const lines: string[] = [];
  lines.push('# Ferry bench results', '');
  lines.push(`- date: ${r.startedAt} → ${r.finishedAt} (commit ${r.gitCommit})`);
  lines.push(`- machine: ${machineLine(r)}`);
  lines.push(
    `- registry links: ${r.settings.bandwidths.join(', ')} (tc tbf; N > 1 at ${primary(r).bandwidth} only), registries: ${r.settings.registries.map((k) => REGISTRY_LABELS[k]).join(' and ')} (charts: ${REGISTRY_LABELS[primary(r).registry]}), repetitions: ${r.settings.repeat} requested, ${runsText(r)} successful per configuration, nodes: ${r.settings.nodes.join(', ')}${r.settings.quick ? ' (--quick)' : ''}`,
  );
  lines.push(
    '- every run cold: fresh containerd root and snapshotter/peer state per node, page cache dropped; modes interleaved in a shuffled order per repetition',
    '',
  );
  const hl = highlights(r);
  if (hl.length) {
    lines.push('## Highlights', '');
    for (const h of hl) lines.push(`- ${h}`);
    lines.push('');
  }
  lines.push('## Workloads', '');
  lines.push(
    mdTable(
      ['workload', 'what', 'ready signal', 'OCI image (compressed)', 'uncompressed', 'Nydus image', 'eStargz image'],
      r.workloads.map((w) => [
        w.id,
        w.title,
        w.ready.kind === 'exit'
          ? `exit 0 + "${w.ready.stdout}"`
          : w.ready.kind === 'line'
            ? `log line "${w.ready.pattern}"`
            : `HTTP 200 on :${w.ready.port} (10 ms poll)`,
        bytes(w.imageBytes),
        bytes(w.uncompressedBytes),
        w.nydusBytes ? bytes(w.nydusBytes) : '–',
        w.estargzBytes ? bytes(w.estargzBytes) : '–',
      ]),
    ),
    '',
  );
  lines.push('## Modes', '');
  lines.push(
    mdTable(
      ['mode', 'status', 'why not run'],
      r.modes.map((m) => [m.label, m.status === 'run' ? 'run' : '**not run**', m.reason ?? '']),
    ),
    '',
  );
  lines.push('## Time to ready, 1 node (registries and links side by side)', '');
  lines.push(mdTable(READY_HEAD, readyRows(r)), '');
  const peers = peerRows(r);
  if (peers.length) {
    lines.push('## Ferry against eStargz (1 node, ratios in the same registry and link)', '');
    lines.push(mdTable(PEER_HEAD, peers), '');
  }
  for (const fw of fanoutWorkloads(r)) {
    lines.push(`## N nodes at once (${fw}, ${profileText(r)})`, '');
    lines.push(mdTable(FAN_HEAD, fanRows(r, fw)), '');
  }
  if (chartFiles.length) {
    lines.push('## Charts', '');
    for (const f of chartFiles) lines.push(`![${f}](${f})`);
    lines.push('');
  }
  const failed = r.runs.filter((x) => !x.ok);
  if (r.notes.length || failed.length) {
    lines.push('## Notes', '');
    for (const n of r.notes) lines.push(`- ${n}`);
    for (const f of failed.slice(0, 20))
      lines.push(
        `- failed run: ${f.workload} · ${f.mode} · ${f.registry} · ${f.bandwidth} · N=${f.nodes} · rep ${f.rep}: ${(f.error ?? '').slice(0, 300)}`,
      );
    lines.push('');
  }
  return lines.join('\n');
}

function htmlEsc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function htmlTable(head: string[], rows: string[][]): string {
  return `<table><thead><tr>${head.map((h) => `<th>${htmlEsc(h)}</th>`).join('')}</tr></thead><tbody>${rows
    .map((row) => `<tr${row.includes('not run') ? ' class="notrun"' : ''}>${row.map((c) => `<td>${htmlEsc(c)}</td>`).join('')}</tr>`)
    .join('')}</tbody></table>`;
}

export function renderHtml(r: BenchResults, charts: Chart[]): string {
  const css = `body{font-family:"DejaVu Sans",Arial,sans-serif;margin:24px auto;max-width:1200px;color:#1f2328;padding:0 16px}
h1{font-size:26px}h2{font-size:19px;margin-top:32px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left}
th{background:#f6f8fa}tr.notrun td{color:#8c959f}.meta{color:#57606a;font-size:14px;line-height:1.6}
.charts{display:flex;flex-wrap:wrap;gap:16px}.charts figure{margin:0;border:1px solid #d0d7de;border-radius:6px;padding:6px;background:#fff}
.status-run{color:#1a7f37;font-weight:bold}.status-not-run{color:#cf222e;font-weight:bold}`;
  const parts: string[] = [];
  parts.push(
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Ferry bench report</title><style>${css}</style></head><body>`,
  );
  parts.push('<h1>Ferry bench report</h1>');
  parts.push(
    `<div class="meta">Date: ${htmlEsc(r.startedAt)} → ${htmlEsc(r.finishedAt)} · commit ${htmlEsc(r.gitCommit)}<br>Machine: ${htmlEsc(machineLine(r))}<br>` +
      `Registry links ${htmlEsc(r.settings.bandwidths.join(', '))} (tc tbf) · registries ${htmlEsc(r.settings.registries.map((k) => REGISTRY_LABELS[k]).join(' and '))} (charts and N-node tables: ${htmlEsc(profileText(r))}) · ${r.settings.repeat} repetition(s) requested, ${runsText(r)} successful per configuration · nodes ${r.settings.nodes.join(', ')}${r.settings.quick ? ' · quick subset' : ''}<br>` +
      'Every run is cold (fresh containerd and snapshotter state, page cache dropped); modes run in a shuffled order within each repetition.</div>',
  );
  const hl = highlights(r);
  if (hl.length) parts.push(`<h2>Highlights</h2><ul>${hl.map((h) => `<li>${htmlEsc(h)}</li>`).join('')}</ul>`);
  parts.push('<h2>Modes</h2>');
  parts.push(
    `<table><thead><tr><th>mode</th><th>status</th><th>why not run</th></tr></thead><tbody>${r.modes
      .map(
        (m) =>
          `<tr><td>${htmlEsc(m.label)}</td><td class="status-${m.status}">${m.status === 'run' ? 'run' : 'not run'}</td><td>${htmlEsc(m.reason ?? '')}</td></tr>`,
      )
      .join('')}</tbody></table>`,
  );
  parts.push('<h2>Charts</h2><div class="charts">');
  for (const c of charts) parts.push(`<figure>${c.svg}</figure>`);
  parts.push('</div>');
  parts.push('<h2>Time to ready, 1 node (registries and links side by side)</h2>');
  parts.push(htmlTable(READY_HEAD, readyRows(r)));
  const peers = peerRows(r);
  if (peers.length) {
    parts.push('<h2>Ferry against eStargz (1 node, ratios in the same registry and link)</h2>');
    parts.push(htmlTable(PEER_HEAD, peers));
  }
  for (const fw of fanoutWorkloads(r)) {
    parts.push(`<h2>N nodes at once (${htmlEsc(`${fw}, ${profileText(r)}`)})</h2>`);
    parts.push(htmlTable(FAN_HEAD, fanRows(r, fw)));
  }
  parts.push('<h2>Workloads</h2>');
  parts.push(
    htmlTable(
      ['workload', 'what', 'command', 'OCI image', 'uncompressed', 'Nydus image', 'eStargz image'],
      r.workloads.map((w) => [
        w.id,
        w.title,
        w.command.join(' '),
        bytes(w.imageBytes),
        bytes(w.uncompressedBytes),
        w.nydusBytes ? bytes(w.nydusBytes) : '–',
        w.estargzBytes ? bytes(w.estargzBytes) : '–',
      ]),
    ),
  );
  const failed = r.runs.filter((x) => !x.ok);
  if (r.notes.length || failed.length) {
    parts.push('<h2>Notes</h2><ul>');
    for (const n of r.notes) parts.push(`<li>${htmlEsc(n)}</li>`);
    for (const f of failed.slice(0, 20))
      parts.push(
        `<li>failed run ${htmlEsc(`${f.workload} · ${f.mode} · ${f.registry} · ${f.bandwidth} · N=${f.nodes} · rep ${f.rep}: ${(f.error ?? '').slice(0, 300)}`)}</li>`,
      );
    parts.push('</ul>');
  }
  parts.push('<p class="meta">Raw data: <a href="results.json">results.json</a> · summary: <a href="summary.md">summary.md</a></p>');
  parts.push('</body></html>\n');
  return parts.join('\n');
}
