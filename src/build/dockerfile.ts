/**
 * @module build/dockerfile
 * The one thing Ferry reads from a Dockerfile itself: the base image of the stage being built (to
 * reuse its Nydus form). buildah interprets everything else. Handles line continuations, comments,
 * global `ARG`s and `--build-arg`s in the FROM line, `FROM … AS name`, stages built on stages, and
 * `--target`.
 */
import { FerryError } from '../core/index.js';

interface Stage {
  image: string;
  name?: string;
}

/** Logical lines: continuations joined, comments and blank lines dropped. */
function logicalLines(text: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trimEnd();
    if (cur === '' && /^\s*#/.test(line)) continue;
    if (line.endsWith('\\')) {
      cur += `${line.slice(0, -1)} `;
      continue;
    }
    cur += line;
    if (cur.trim()) out.push(cur.trim());
    cur = '';
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}

function substitute(s: string, vars: ReadonlyMap<string, string>): string {
  return s.replace(
    /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g,
    (_m, a?: string, def?: string, b?: string) => {
      const v = vars.get((a ?? b)!);
      return v !== undefined && v !== '' ? v : (def ?? '');
    },
  );
}

function parseStages(text: string, buildArgs: ReadonlyMap<string, string>): Stage[] {
  const vars = new Map<string, string>();
  const stages: Stage[] = [];
  for (const line of logicalLines(text)) {
    const [kw = '', ...rest] = line.split(/\s+/);
    const word = kw.toUpperCase();
    if (word === 'ARG' && stages.length === 0) {
      for (const decl of rest) {
        const eq = decl.indexOf('=');
        const k = eq < 0 ? decl : decl.slice(0, eq);
        const v = buildArgs.get(k) ?? (eq < 0 ? undefined : decl.slice(eq + 1).replace(/^"(.*)"$/, '$1'));
        if (v !== undefined) vars.set(k, v);
      }
    } else if (word === 'FROM') {
      const words = rest.filter((w) => !w.startsWith('--'));
      const image = words[0];
      if (!image) throw new FerryError('INVALID_ARGUMENT', `Dockerfile: FROM without an image: ${line}`);
      const as = words[1]?.toUpperCase() === 'AS' ? words[2] : undefined;
      stages.push({ image: substitute(image, vars), ...(as ? { name: as.toLowerCase() } : {}) });
    }
  }
  return stages;
}

/**
 * The base image reference of the stage `target` (default: the last stage), following stages built
 * `FROM` other stages; undefined for `FROM scratch`.
 */
export function baseImageOf(text: string, opts: { target?: string; buildArgs?: ReadonlyMap<string, string> } = {}): string | undefined {
  const stages = parseStages(text, opts.buildArgs ?? new Map());
  if (stages.length === 0) throw new FerryError('INVALID_ARGUMENT', 'Dockerfile has no FROM instruction');
  let i = stages.length - 1;
  if (opts.target !== undefined) {
    i = stages.findIndex((s) => s.name === opts.target!.toLowerCase());
    if (i < 0) throw new FerryError('INVALID_ARGUMENT', `Dockerfile has no stage named ${opts.target}`);
  }
  for (let hops = 0; hops <= stages.length; hops++) {
    const image = stages[i]!.image;
    if (image.toLowerCase() === 'scratch') return undefined;
    const j = stages.findIndex((s, k) => k < i && s.name === image.toLowerCase());
    if (j < 0) return image;
    i = j;
  }
  throw new FerryError('INVALID_ARGUMENT', 'Dockerfile stages refer to each other in a cycle');
}
