/**
 * @module snapshotter/filters
 * containerd's filter expressions (the `filters` of List), the subset containerd and ctr send:
 * comma-separated conditions combined with AND, each `fieldpath [op value]` where op is `==`,
 * `!=` or `~=` (regular expression), a field path is dot-separated and may quote parts
 * (`labels."containerd.io/snapshot.ref"`), and values are bare or double-quoted with Go escapes.
 * A condition without an operator tests that the field is present and non-empty.
 * Several filter strings are OR-ed (done by the caller with `matchesAny`).
 */
import { FerryError } from '../core/index.js';

export type Op = '==' | '!=' | '~=' | 'present';
export interface Condition {
  path: string[];
  op: Op;
  value: string;
  re?: RegExp;
}
export type Filter = Condition[];

/** Looks a field path up on the object being filtered; undefined when absent. */
export type FieldAdaptor = (path: string[]) => string | undefined;

function bad(expr: string, why: string): never {
  throw new FerryError('INVALID_ARGUMENT', `invalid filter ${JSON.stringify(expr)}: ${why}`);
}

const ESCAPES: Record<string, string> = { n: '\n', t: '\t', r: '\r', '"': '"', '\\': '\\', '/': '/', a: '\x07', b: '\b', f: '\f', v: '\v' };

/** Parses one filter string into its AND-ed conditions. */
export function parseFilter(expr: string): Filter {
  let i = 0;
  const n = expr.length;
  const skipWs = (): void => {
    while (i < n && /\s/.test(expr[i]!)) i++;
  };

  const quoted = (): string => {
    const q = expr[i]!;
    i++;
    let out = '';
    while (i < n && expr[i] !== q) {
      let c = expr[i]!;
      if (c === '\\' && q === '"') {
        i++;
        if (i >= n) bad(expr, 'unterminated escape');
        c = expr[i]!;
        if (c === 'x' || c === 'u') {
          const len = c === 'x' ? 2 : 4;
          const hex = expr.slice(i + 1, i + 1 + len);
          if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length !== len) bad(expr, 'bad escape');
          out += String.fromCharCode(parseInt(hex, 16));
          i += len;
        } else {
          const e = ESCAPES[c];
          if (e === undefined) bad(expr, `unknown escape \\${c}`);
          out += e;
        }
      } else {
        out += c;
      }
      i++;
    }
    if (i >= n) bad(expr, 'unterminated quoted string');
    i++; // closing quote
    return out;
  };

  const field = (): string => {
    skipWs();
    if (expr[i] === '"' || expr[i] === '`') return quoted();
    const start = i;
    while (i < n && /[A-Za-z0-9_\-/]/.test(expr[i]!)) i++;
    if (i === start) bad(expr, `expected a field name at offset ${i}`);
    return expr.slice(start, i);
  };

  const value = (): string => {
    skipWs();
    if (expr[i] === '"' || expr[i] === '`') return quoted();
    const start = i;
    while (i < n && expr[i] !== ',') i++;
    return expr.slice(start, i).trim();
  };

  const out: Filter = [];
  skipWs();
  if (i >= n) return out;
  for (;;) {
    const path = [field()];
    while (i < n && expr[i] === '.') {
      i++;
      path.push(field());
    }
    skipWs();
    let op: Op = 'present';
    const two = expr.slice(i, i + 2);
    if (two === '==' || two === '!=' || two === '~=') {
      op = two;
      i += 2;
    }
    const cond: Condition = { path, op, value: '' };
    if (op !== 'present') {
      cond.value = value();
      if (op === '~=') {
        try {
          cond.re = new RegExp(cond.value);
        } catch (err) {
          bad(expr, `bad regular expression: ${(err as Error).message}`);
        }
      }
    }
    out.push(cond);
    skipWs();
    if (i >= n) break;
    if (expr[i] !== ',') bad(expr, `unexpected ${JSON.stringify(expr[i])} at offset ${i}`);
    i++;
    skipWs();
  }
  return out;
}

export function matches(filter: Filter, adapt: FieldAdaptor): boolean {
  return filter.every((c) => {
    const v = adapt(c.path);
    switch (c.op) {
      case 'present':
        return v !== undefined && v !== '';
      case '==':
        return v === c.value;
      case '!=':
        return v !== c.value;
      case '~=':
        return v !== undefined && c.re!.test(v);
      default:
        return false;
    }
  });
}

/** OR over the filters; no filters (or only empty strings) matches everything. */
export function matchesAny(filters: Filter[], adapt: FieldAdaptor): boolean {
  const nonEmpty = filters.filter((f) => f.length > 0);
  if (nonEmpty.length === 0) return true;
  return nonEmpty.some((f) => matches(f, adapt));
}
