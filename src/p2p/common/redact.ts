/**
 * @module p2p/common/redact
 * Keeping secrets out of API answers and logs: header values (registry Authorization, cookies,
 * API keys under any name), URL passwords and signature/token query parameters.
 */

export const REDACTED = '<redacted>';

const SECRET_PARAM = /sig|signature|token|credential|secret|passw|auth|key/i;

/** The URL with its password and secret-looking query values replaced (unparsable → as is). */
export function redactUrl(raw: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return raw;
  }
  let changed = false;
  if (u.password) {
    u.password = 'redacted';
    changed = true;
  }
  for (const k of [...u.searchParams.keys()]) {
    if (SECRET_PARAM.test(k)) {
      u.searchParams.set(k, 'redacted');
      changed = true;
    }
  }
  return changed ? u.toString() : raw;
}

/** Header names kept, every value redacted (which header carries a secret is not knowable). */
export function redactHeaders(h: Record<string, string> | undefined): Record<string, string> | undefined {
  if (!h) return h;
  return Object.fromEntries(Object.keys(h).map((k) => [k, REDACTED]));
}
