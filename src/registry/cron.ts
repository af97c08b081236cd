/**
 * @module registry/cron
 * Harbor's schedule strings: six cron fields (second minute hour day-of-month month day-of-week),
 * each `*`, a number, a range `a-b`, a list `a,b`, a step `*\/n` or `a-b/n`; the seconds field must
 * be `0` (as Harbor's ValidateCronString demands). Times are UTC. `nextCronTime` finds the first
 * matching second after a time; day-of-month and day-of-week combine as in robfig/cron (both
 * restricted: either matches).
 */
import { FerryError } from '../core/index.js';

interface Field {
  min: number;
  max: number;
}

const FIELDS: Field[] = [
  { min: 0, max: 59 },
  { min: 0, max: 59 },
  { min: 0, max: 23 },
  { min: 1, max: 31 },
  { min: 1, max: 12 },
  { min: 0, max: 6 },
];

/** A parsed schedule: the allowed values of each field, and whether day fields were restricted. */
export interface Cron {
  sets: Array<Set<number>>;
  domStar: boolean;
  dowStar: boolean;
}

function parseField(text: string, f: Field, name: string): Set<number> {
  const out = new Set<number>();
  for (const part of text.split(',')) {
    const m = /^(\*|\d+(?:-\d+)?)(?:\/(\d+))?$/.exec(part);
    if (!m) throw new FerryError('INVALID_ARGUMENT', `invalid cron field ${name}: ${JSON.stringify(text)}`);
    let lo = f.min;
    let hi = f.max;
    if (m[1] !== '*') {
      const [a, b] = m[1]!.split('-');
      lo = Number(a);
      hi = b === undefined ? (m[2] ? f.max : lo) : Number(b);
    }
    const step = m[2] ? Number(m[2]) : 1;
    // day-of-week 7 is Sunday too
    if (f.max === 6 && hi === 7) hi = 6;
    if (lo < f.min || hi > f.max || lo > hi || step < 1) {
      throw new FerryError('INVALID_ARGUMENT', `cron field ${name} out of range: ${JSON.stringify(text)}`);
    }
    for (let v = lo; v <= hi; v += step) out.add(v);
  }
  return out;
}

const NAMES = ['second', 'minute', 'hour', 'day of month', 'month', 'day of week'];

/** Parses a six-field cron; INVALID_ARGUMENT naming the problem. */
export function parseCron(text: string): Cron {
  const parts = text.trim().split(/\s+/);
  if (parts.length !== 6)
    throw new FerryError('INVALID_ARGUMENT', `a cron needs 6 fields (second minute hour day month weekday), got ${JSON.stringify(text)}`);
  if (parts[0] !== '0')
    throw new FerryError('INVALID_ARGUMENT', 'the 1st field (indicating Seconds of time) of the cron setting must be 0');
  return {
    sets: parts.map((p, i) => parseField(p, FIELDS[i]!, NAMES[i]!)),
    domStar: parts[3] === '*' || parts[3] === '?',
    dowStar: parts[5] === '*' || parts[5] === '?',
  };
}

/** The first time (ms, a whole second) strictly after `after` that `cron` matches; searches up to 5 years. */
export function nextCronTime(cron: Cron, after: number): number {
  let t = Math.floor(after / 1000) * 1000 + 1000;
  const limit = after + 5 * 366 * 86_400_000;
  const [sec, min, hour, dom, mon, dow] = cron.sets as [Set<number>, Set<number>, Set<number>, Set<number>, Set<number>, Set<number>];
  while (t <= limit) {
    const d = new Date(t);
    if (!mon.has(d.getUTCMonth() + 1)) {
      t = Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
      continue;
    }
    const domOk = dom.has(d.getUTCDate());
    const dowOk = dow.has(d.getUTCDay());
    const dayOk = cron.domStar && cron.dowStar ? true : cron.domStar ? dowOk : cron.dowStar ? domOk : domOk || dowOk;
    if (!dayOk) {
      t = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1);
      continue;
    }
    if (!hour.has(d.getUTCHours())) {
      t = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate(), d.getUTCHours() + 1);
      continue;
    }
    if (!min.has(d.getUTCMinutes())) {
      t = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes() + 1);
      continue;
    }
    if (!sec.has(d.getUTCSeconds())) {
      t += 1000;
      continue;
    }
    return t;
  }
  throw new FerryError('INVALID_ARGUMENT', 'the cron never matches within 5 years');
}
