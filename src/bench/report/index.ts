/**
 * @module bench/report
 * Writes a benchmark's report directory: results.json, summary.md, report.html, charts/*.svg and
 * (with Chromium) charts/*.png plus report.png.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BenchResults } from '../types.js';
import { buildCharts, renderHtml, renderMarkdown, type Chart } from './render.js';
import { chromiumBinary, screenshot } from './chromium.js';

export { buildCharts, renderHtml, renderMarkdown, MODE_COLORS, type Chart } from './render.js';
export { barChart, lineChart, niceScale, type BarChartSpec, type LineChartSpec } from './charts.js';
export { screenshot, dumpDom, chromiumBinary } from './chromium.js';

export interface WrittenReport {
  dir: string;
  resultsJson: string;
  markdown: string;
  html: string;
  svgs: string[];
  pngs: string[];
  /** Why PNGs are missing, when they are. */
  pngError?: string;
}

function svgSize(svg: string): { width: number; height: number } {
  const w = /width="(\d+)"/.exec(svg)?.[1];
  const h = /height="(\d+)"/.exec(svg)?.[1];
  return { width: Number(w ?? 900), height: Number(h ?? 460) };
}

/** Writes every report file into `dir`; PNGs need Chromium (`png: false` skips them). */
export async function writeReport(r: BenchResults, dir: string, opts: { png?: boolean } = {}): Promise<WrittenReport> {
  await mkdir(join(dir, 'charts'), { recursive: true });
  const charts: Chart[] = buildCharts(r);
  const out: WrittenReport = {
    dir,
    resultsJson: join(dir, 'results.json'),
    markdown: join(dir, 'summary.md'),
    html: join(dir, 'report.html'),
    svgs: [],
    pngs: [],
  };
  await writeFile(out.resultsJson, `${JSON.stringify(r, null, 2)}\n`);
  for (const c of charts) {
    const p = join(dir, 'charts', `${c.id}.svg`);
    await writeFile(p, c.svg);
    out.svgs.push(p);
  }
  await writeFile(out.html, renderHtml(r, charts));
  if (opts.png ?? true) {
    if (!chromiumBinary()) out.pngError = 'chromium not installed';
    else {
      try {
        for (const c of charts) {
          const p = join(dir, 'charts', `${c.id}.png`);
          await screenshot(join(dir, 'charts', `${c.id}.svg`), p, svgSize(c.svg));
          out.pngs.push(p);
        }
        const p = join(dir, 'report.png');
        await screenshot(out.html, p, { width: 1280, height: 2000 });
        out.pngs.push(p);
      } catch (err) {
        out.pngError = (err as Error).message;
      }
    }
  }
  await writeFile(
    out.markdown,
    renderMarkdown(
      r,
      charts.map((c) => `charts/${c.id}.${out.pngs.length ? 'png' : 'svg'}`),
    ),
  );
  return out;
}
export { decodePng, nonBackgroundShare, countColor, type Image } from './png.js';
