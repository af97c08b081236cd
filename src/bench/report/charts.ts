/**
 * @module bench/report/charts
 * Self-contained SVG charts (no scripts, no external fonts), so the same file works inline in the
 * HTML report, as a standalone .svg in the README and as the source of a PNG screenshot.
 */

export const PALETTE = ['#1f6feb', '#d1242f', '#1a7f37', '#bf8700', '#8250df', '#cf222e', '#0a3069', '#6e7781'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** A "nice" axis maximum and tick step for values up to `max`. */
export function niceScale(max: number, ticks = 5): { max: number; step: number } {
  if (!(max > 0) || !Number.isFinite(max)) return { max: 1, step: 0.2 };
  const raw = max / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 2.5 ? 2.5 : norm <= 5 ? 5 : 10) * mag;
  return { max: Math.ceil(max / step) * step, step };
}

function fmtTick(v: number): string {
  if (v === 0) return '0';
  if (Math.abs(v) >= 100) return v.toFixed(0);
  if (Math.abs(v) >= 10) return v.toFixed(1).replace(/\.0$/, '');
  return v.toFixed(2).replace(/0+$/, '').replace(/\.$/, '');
}

export interface BarSeries {
  name: string;
  color?: string;
  /** One value per group; null = not measured (drawn as a "n/a" mark). */
  values: Array<number | null>;
  /** Optional whisker low/high per group (e.g. min–max). */
  lo?: Array<number | null>;
  hi?: Array<number | null>;
  /** Optional label above each bar (e.g. "12.3×"). */
  labels?: Array<string | null>;
}

export interface BarChartSpec {
  id: string;
  title: string;
  subtitle?: string;
  groups: string[];
  series: BarSeries[];
  yLabel: string;
  width?: number;
  height?: number;
  /** Format of the value printed on each bar. */
  format?: (v: number) => string;
}

const FONT = 'font-family="DejaVu Sans, Liberation Sans, Arial, sans-serif"';

function frame(id: string, w: number, h: number, title: string, subtitle: string | undefined, body: string): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" id="${esc(id)}" class="ferry-chart" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" ${FONT} role="img" aria-label="${esc(title)}">
<rect x="0" y="0" width="${w}" height="${h}" fill="#ffffff"/>
<text x="${w / 2}" y="26" text-anchor="middle" font-size="17" font-weight="bold" fill="#1f2328">${esc(title)}</text>
${subtitle ? `<text x="${w / 2}" y="46" text-anchor="middle" font-size="12" fill="#57606a">${esc(subtitle)}</text>` : ''}
${body}
</svg>
`;
}

function legend(items: Array<{ name: string; color: string; dashed?: boolean }>, x: number, y: number, maxWidth: number): string {
  let cx = x;
  let cy = y;
  const parts: string[] = [];
  for (const it of items) {
    const wItem = 26 + it.name.length * 6.6 + 16;
    if (cx + wItem > x + maxWidth && cx > x) {
      cx = x;
      cy += 18;
    }
    parts.push(
      it.dashed
        ? `<line x1="${cx}" y1="${cy - 4}" x2="${cx + 18}" y2="${cy - 4}" stroke="${it.color}" stroke-width="2" stroke-dasharray="4 3"/>`
        : `<rect x="${cx}" y="${cy - 10}" width="18" height="11" rx="2" fill="${it.color}"/>`,
    );
    parts.push(`<text x="${cx + 24}" y="${cy}" font-size="12" fill="#1f2328">${esc(it.name)}</text>`);
    cx += wItem;
  }
  return parts.join('\n');
}

/** Plot area of a grouped bar chart, with the y axis, grid and group labels already drawn. */
interface BarPlot {
  parts: string[];
  plotW: number;
  plotH: number;
  y(v: number): number;
}

/**
 * Draws what grouped bar charts share (grid, ticks, y label, group labels, baseline) and calls
 * `bar(gi, si, x, width)` for each bar slot of each group.
 */
function groupedBars(
  o: {
    W: number;
    H: number;
    left: number;
    right: number;
    top: number;
    bottom: number;
    yLabel: string;
    maxValue: number;
    groups: string[];
    nSeries: number;
  },
  bar: (plot: BarPlot, gi: number, si: number, x: number, width: number) => void,
): BarPlot {
  const plotW = o.W - o.left - o.right;
  const plotH = o.H - o.top - o.bottom;
  const { max, step } = niceScale(o.maxValue);
  const y = (v: number): number => o.top + plotH - (v / max) * plotH;
  const parts: string[] = [];
  const plot: BarPlot = { parts, plotW, plotH, y };
  for (let t = 0; t <= max + step / 1000; t += step) {
    parts.push(
      `<line x1="${o.left}" y1="${y(t).toFixed(1)}" x2="${o.W - o.right}" y2="${y(t).toFixed(1)}" stroke="#d0d7de" stroke-width="1"/>`,
    );
    parts.push(`<text x="${o.left - 8}" y="${(y(t) + 4).toFixed(1)}" text-anchor="end" font-size="11" fill="#57606a">${fmtTick(t)}</text>`);
  }
  parts.push(
    `<text transform="translate(16 ${o.top + plotH / 2}) rotate(-90)" text-anchor="middle" font-size="12" fill="#1f2328">${esc(o.yLabel)}</text>`,
  );
  const nG = Math.max(1, o.groups.length);
  const nS = Math.max(1, o.nSeries);
  const groupW = plotW / nG;
  const barW = Math.min(46, (groupW * 0.8) / nS);
  o.groups.forEach((g, gi) => {
    const gx = o.left + gi * groupW + (groupW - barW * nS) / 2;
    parts.push(
      `<text x="${(o.left + gi * groupW + groupW / 2).toFixed(1)}" y="${o.top + plotH + 18}" text-anchor="middle" font-size="12" fill="#1f2328">${esc(g)}</text>`,
    );
    for (let si = 0; si < o.nSeries; si++) bar(plot, gi, si, gx + si * barW, barW);
  });
  parts.push(`<line x1="${o.left}" y1="${o.top + plotH}" x2="${o.W - o.right}" y2="${o.top + plotH}" stroke="#57606a" stroke-width="1"/>`);
  return plot;
}

/** Grouped vertical bar chart with optional whiskers. */
export function barChart(spec: BarChartSpec): string {
  const W = spec.width ?? 900;
  const H = spec.height ?? 460;
  const left = 70;
  const right = 20;
  const top = spec.subtitle ? 64 : 48;
  const legendRows = Math.ceil(spec.series.reduce((a, s) => a + 42 + s.name.length * 6.6, 0) / (W - left - right));
  const bottom = 46 + legendRows * 18;
  const all = spec.series.flatMap((s) => [...s.values, ...(s.hi ?? [])]).filter((v): v is number => v !== null && Number.isFinite(v));
  const fmt = spec.format ?? fmtTick;
  const plot = groupedBars(
    {
      W,
      H,
      left,
      right,
      top,
      bottom,
      yLabel: spec.yLabel,
      maxValue: Math.max(0, ...all) * 1.25,
      groups: spec.groups,
      nSeries: spec.series.length,
    },
    ({ parts, plotH, y }, gi, si, bx, barW) => {
      const s = spec.series[si]!;
      const g = spec.groups[gi]!;
      const color = s.color ?? PALETTE[si % PALETTE.length]!;
      const v = s.values[gi];
      if (v === null || v === undefined || !Number.isFinite(v)) {
        parts.push(
          `<text x="${(bx + barW / 2).toFixed(1)}" y="${(top + plotH - 4).toFixed(1)}" text-anchor="middle" font-size="9" fill="#8c959f">n/a</text>`,
        );
        return;
      }
      parts.push(
        `<rect class="bar" data-series="${esc(s.name)}" data-group="${esc(g)}" data-value="${v}" x="${(bx + 1).toFixed(1)}" y="${y(v).toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${Math.max(0.5, top + plotH - y(v)).toFixed(1)}" fill="${color}"/>`,
      );
      const lo = s.lo?.[gi];
      const hi = s.hi?.[gi];
      if (lo != null && hi != null && Number.isFinite(lo) && Number.isFinite(hi)) {
        const cx = bx + barW / 2;
        parts.push(
          `<line x1="${cx.toFixed(1)}" y1="${y(lo).toFixed(1)}" x2="${cx.toFixed(1)}" y2="${y(hi).toFixed(1)}" stroke="#1f2328" stroke-width="1"/>`,
        );
        parts.push(
          `<line x1="${(cx - 4).toFixed(1)}" y1="${y(hi).toFixed(1)}" x2="${(cx + 4).toFixed(1)}" y2="${y(hi).toFixed(1)}" stroke="#1f2328" stroke-width="1"/>`,
        );
        parts.push(
          `<line x1="${(cx - 4).toFixed(1)}" y1="${y(lo).toFixed(1)}" x2="${(cx + 4).toFixed(1)}" y2="${y(lo).toFixed(1)}" stroke="#1f2328" stroke-width="1"/>`,
        );
      }
      const label = s.labels?.[gi] ?? fmt(v);
      const ly = Math.min(y(v), hi != null && Number.isFinite(hi) ? y(hi) : y(v)) - 4;
      const lx = bx + barW / 2;
      // narrow bars: labels run upwards from the bar top so neighbours do not overlap
      parts.push(
        label.length * 5.6 > barW
          ? `<text x="${(lx + 3).toFixed(1)}" y="${ly.toFixed(1)}" transform="rotate(-90 ${(lx + 3).toFixed(1)} ${ly.toFixed(1)})" text-anchor="start" font-size="9.5" fill="#1f2328">${esc(label)}</text>`
          : `<text x="${lx.toFixed(1)}" y="${ly.toFixed(1)}" text-anchor="middle" font-size="9.5" fill="#1f2328">${esc(label)}</text>`,
      );
    },
  );
  plot.parts.push(
    legend(
      spec.series.map((s, i) => ({ name: s.name, color: s.color ?? PALETTE[i % PALETTE.length]! })),
      left,
      H - bottom + 40,
      plot.plotW,
    ),
  );
  return frame(spec.id, W, H, spec.title, spec.subtitle, plot.parts.join('\n'));
}

export interface LineSeries {
  name: string;
  color?: string;
  dashed?: boolean;
  /** One value per x; null = no point. */
  points: Array<number | null>;
}

export interface LineChartSpec {
  id: string;
  title: string;
  subtitle?: string;
  x: number[];
  xLabel: string;
  yLabel: string;
  series: LineSeries[];
  width?: number;
  height?: number;
}

/** Line chart over a categorical numeric x axis (e.g. N = 1, 2, 4, 8). */
export function lineChart(spec: LineChartSpec): string {
  const W = spec.width ?? 560;
  const H = spec.height ?? 400;
  const left = 70;
  const right = 24;
  const top = spec.subtitle ? 64 : 48;
  const legendRows = Math.ceil(spec.series.reduce((a, s) => a + 42 + s.name.length * 6.6, 0) / (W - left - right));
  const bottom = 56 + legendRows * 18;
  const plotW = W - left - right;
  const plotH = H - top - bottom;
  const all = spec.series.flatMap((s) => s.points).filter((v): v is number => v !== null && Number.isFinite(v));
  const { max, step } = niceScale(Math.max(0, ...all) * 1.08);
  const y = (v: number): number => top + plotH - (v / max) * plotH;
  const nx = spec.x.length;
  const x = (i: number): number => left + (nx <= 1 ? plotW / 2 : (i / (nx - 1)) * plotW * 0.9 + plotW * 0.05);
  const parts: string[] = [];
  for (let t = 0; t <= max + step / 1000; t += step) {
    parts.push(`<line x1="${left}" y1="${y(t).toFixed(1)}" x2="${W - right}" y2="${y(t).toFixed(1)}" stroke="#d0d7de" stroke-width="1"/>`);
    parts.push(`<text x="${left - 8}" y="${(y(t) + 4).toFixed(1)}" text-anchor="end" font-size="11" fill="#57606a">${fmtTick(t)}</text>`);
  }
  spec.x.forEach((xv, i) => {
    parts.push(`<text x="${x(i).toFixed(1)}" y="${top + plotH + 18}" text-anchor="middle" font-size="12" fill="#1f2328">${xv}</text>`);
  });
  parts.push(
    `<text x="${left + plotW / 2}" y="${top + plotH + 36}" text-anchor="middle" font-size="12" fill="#1f2328">${esc(spec.xLabel)}</text>`,
  );
  parts.push(
    `<text transform="translate(16 ${top + plotH / 2}) rotate(-90)" text-anchor="middle" font-size="12" fill="#1f2328">${esc(spec.yLabel)}</text>`,
  );
  spec.series.forEach((s, si) => {
    const color = s.color ?? PALETTE[si % PALETTE.length]!;
    const pts = s.points.map((v, i) => (v === null || !Number.isFinite(v) ? null : ([x(i), y(v)] as const)));
    let d = '';
    let pen = false;
    for (const p of pts) {
      if (!p) {
        pen = false;
        continue;
      }
      d += `${pen ? 'L' : 'M'}${p[0].toFixed(1)} ${p[1].toFixed(1)} `;
      pen = true;
    }
    if (d)
      parts.push(
        `<path class="line" data-series="${esc(s.name)}" d="${d.trim()}" fill="none" stroke="${color}" stroke-width="2.2"${s.dashed ? ' stroke-dasharray="5 4"' : ''}/>`,
      );
    pts.forEach((p, i) => {
      if (!p || s.dashed) return;
      parts.push(
        `<circle cx="${p[0].toFixed(1)}" cy="${p[1].toFixed(1)}" r="3.5" fill="${color}" data-x="${spec.x[i]}" data-value="${s.points[i]}"/>`,
      );
    });
  });
  parts.push(`<line x1="${left}" y1="${top + plotH}" x2="${W - right}" y2="${top + plotH}" stroke="#57606a" stroke-width="1"/>`);
  parts.push(
    legend(
      spec.series.map((s, i) => ({ name: s.name, color: s.color ?? PALETTE[i % PALETTE.length]!, ...(s.dashed ? { dashed: true } : {}) })),
      left,
      H - bottom + 52,
      plotW,
    ),
  );
  return frame(spec.id, W, H, spec.title, spec.subtitle, parts.join('\n'));
}

export interface StackedBarSpec {
  id: string;
  title: string;
  subtitle?: string;
  groups: string[];
  /** One bar per series in each group; segments stacked bottom-up. */
  series: Array<{ name: string; color: string; segments: Array<Array<number | null>> /* [group][segment] */ }>;
  segmentNames: string[];
  yLabel: string;
  width?: number;
  height?: number;
}

/** Grouped stacked bars: each bar split into segments (e.g. pull / create / run), segment shade by opacity. */
export function stackedBarChart(spec: StackedBarSpec): string {
  const W = spec.width ?? 900;
  const H = spec.height ?? 460;
  const left = 70;
  const right = 20;
  const top = spec.subtitle ? 64 : 48;
  const legendRows = Math.ceil(
    (spec.series.reduce((a, s) => a + 42 + s.name.length * 6.6, 0) + spec.segmentNames.length * 90) / (W - left - right),
  );
  const bottom = 46 + legendRows * 18 + 18;
  const totals = spec.series.flatMap((s) => s.segments.map((seg) => seg.reduce<number>((a, v) => a + (v ?? 0), 0)));
  const opac = (i: number): number => [1, 0.55, 0.3, 0.15][i] ?? 0.15;
  const plot = groupedBars(
    {
      W,
      H,
      left,
      right,
      top,
      bottom,
      yLabel: spec.yLabel,
      maxValue: Math.max(0, ...totals) * 1.08,
      groups: spec.groups,
      nSeries: spec.series.length,
    },
    ({ parts, y }, gi, si, bx, barW) => {
      const s = spec.series[si]!;
      const segs = s.segments[gi] ?? [];
      if (segs.every((v) => v === null || v === undefined)) return;
      let acc = 0;
      segs.forEach((v, k) => {
        if (v === null || v === undefined || !Number.isFinite(v) || v <= 0) return;
        parts.push(
          `<rect class="bar segment" data-series="${esc(s.name)}" data-segment="${esc(spec.segmentNames[k] ?? '')}" x="${(bx + 1).toFixed(1)}" y="${y(acc + v).toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${Math.max(0.5, y(acc) - y(acc + v)).toFixed(1)}" fill="${s.color}" fill-opacity="${opac(k)}" stroke="${s.color}" stroke-width="0.6"/>`,
        );
        acc += v;
      });
      parts.push(
        `<text x="${(bx + barW / 2).toFixed(1)}" y="${(y(acc) - 4).toFixed(1)}" text-anchor="middle" font-size="9.5" fill="#1f2328">${fmtTick(acc)}</text>`,
      );
    },
  );
  plot.parts.push(
    legend(
      spec.series.map((s) => ({ name: s.name, color: s.color })),
      left,
      H - bottom + 40,
      plot.plotW,
    ),
  );
  const shades = spec.segmentNames.map(
    (n, k) =>
      `<rect x="${left + k * 110}" y="${H - 18}" width="18" height="11" fill="#57606a" fill-opacity="${opac(k)}" stroke="#57606a" stroke-width="0.6"/><text x="${left + k * 110 + 24}" y="${H - 8}" font-size="12" fill="#1f2328">${esc(n)}</text>`,
  );
  plot.parts.push(shades.join('\n'));
  return frame(spec.id, W, H, spec.title, spec.subtitle, plot.parts.join('\n'));
}
