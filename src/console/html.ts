/**
 * @module console/html
 * HTML templates with escaping by default: `html\`…${value}…\`` escapes every interpolated value
 * (text and attribute values alike) unless it is already `Html` (a nested template or `raw()`);
 * arrays are joined, `undefined`/`null`/`false` render as nothing.
 */

/** Markup that is already safe (built by `html` or `raw`). */
export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;', '`': '&#96;' };

/** Text safe in element content and in quoted attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"'`]/g, (c) => ENTITIES[c]!);
}

/** Marks trusted markup (constants of this module only — never user data). */
export function raw(s: string): Html {
  return new Html(s);
}

function render(v: unknown): string {
  if (v instanceof Html) return v.text;
  if (Array.isArray(v)) return v.map(render).join('');
  if (v === undefined || v === null || v === false) return '';
  return escapeHtml(String(v));
}

/** A template whose interpolations are escaped. */
export function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) out += render(values[i]) + strings[i + 1]!;
  return new Html(out);
}
