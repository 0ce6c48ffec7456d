/**
 * Camera credentials stay in the gateway. The ledger's `onvif_url` / `rtsp_url` may carry
 * `user:password@`; anything that leaves the gateway (API bodies, WebSocket messages, logs) goes
 * through these helpers first.
 */

export interface CameraCredentials {
  username: string;
  password: string;
}

/** Query parameters some cameras take credentials in (`?user=admin&password=…`, tokens). */
const SECRET_PARAM = /^(user(name)?|pass(word)?|pwd|passwd|auth|authbasic|token|key|secret|signature|sig)$/i;

/** The URL without userinfo and without credential-like query parameters; unparsable: '(hidden)'. */
export function redactUrl(raw: string): string {
  try {
    const u = new URL(raw);
    u.username = '';
    u.password = '';
    for (const k of [...u.searchParams.keys()]) if (SECRET_PARAM.test(k)) u.searchParams.set(k, '***');
    return u.toString();
  } catch {
    return '(hidden)';
  }
}

/** A device's ledger settings for an API response: every `…Url` setting redacted. */
export function redactSettings<T extends object>(settings: T): T {
  const out = { ...settings } as Record<string, unknown>;
  for (const [k, v] of Object.entries(out)) if (/Url$/.test(k) && typeof v === 'string') out[k] = redactUrl(v);
  return out as T;
}

/** user:password carried in a URL, if any. */
export function credentialsIn(raw: string): CameraCredentials | undefined {
  try {
    const u = new URL(raw);
    if (!u.username && !u.password) return undefined;
    return { username: decodeURIComponent(u.username), password: decodeURIComponent(u.password) };
  } catch {
    return undefined;
  }
}

/** The URL with these credentials unless it carries its own. */
export function withCredentials(raw: string, creds: CameraCredentials | undefined): string {
  if (!creds) return raw;
  const u = new URL(raw);
  if (u.username || u.password) return raw;
  u.username = encodeURIComponent(creds.username);
  u.password = encodeURIComponent(creds.password);
  return u.toString();
}

/** The URL without userinfo (Node's fetch and http refuse or log it). */
export function withoutCredentials(raw: string): string {
  const u = new URL(raw);
  u.username = '';
  u.password = '';
  return u.toString();
}

/**
 * Free text (an ffmpeg or ONVIF error) safe to show: URLs lose their userinfo and every known
 * secret is masked wherever it appears.
 */
export function scrub(text: string, secrets: ReadonlyArray<string | undefined> = []): string {
  let out = text.replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^/\s@]*@/gi, '$1');
  for (const s of secrets) if (s && s.length >= 3) out = out.split(s).join('***');
  return out;
}
