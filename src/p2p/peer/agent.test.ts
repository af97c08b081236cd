import { test } from 'node:test';
import assert from 'node:assert/strict';
import { alignRange } from './agent.js';

const MiB = 1024 * 1024;

test('range tasks: a range widens to whole grid cells, so differently split reads share tasks', () => {
  const total = 10 * MiB + 500;
  const table: Array<[name: string, r: { start: number; end: number }, grid: number, want: { start: number; end: number }]> = [
    ['inside one cell', { start: 100, end: 200 }, MiB, { start: 0, end: MiB - 1 }],
    ['a whole cell', { start: MiB, end: 2 * MiB - 1 }, MiB, { start: MiB, end: 2 * MiB - 1 }],
    ['across a boundary: both cells', { start: MiB - 1, end: MiB }, MiB, { start: 0, end: 2 * MiB - 1 }],
    ['the last cell ends at the object end', { start: 10 * MiB + 3, end: 10 * MiB + 9 }, MiB, { start: 10 * MiB, end: total - 1 }],
    ['grid 0: the exact range', { start: 100, end: 200 }, 0, { start: 100, end: 200 }],
  ];
  for (const [name, r, grid, want] of table) assert.deepEqual(alignRange(r, total, grid), want, name);
  // two nodes splitting the same cell's reads differently key the same task
  assert.deepEqual(alignRange({ start: 0, end: 32767 }, total, MiB), alignRange({ start: 65536, end: 1000000 }, total, MiB));
});
