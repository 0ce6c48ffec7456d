/**
 * Camera authentication, the three ways real ONVIF cameras accept:
 * - WS-Security UsernameToken in the SOAP header (ONVIF core §5.9.4), PasswordDigest =
 *   Base64(SHA-1(nonce + created + password)), created within ±5 min of the camera's clock and
 *   each nonce used once (replay protection, as Axis and recent Hikvision firmware enforce);
 * - HTTP Digest (RFC 7616, MD5 or SHA-256, qop=auth) — the alternative ONVIF allows, and what the
 *   snapshot URL uses on most cameras;
 * - HTTP Basic, accepted on the snapshot URL only.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { child, type XmlElement } from './xml.js';

export interface Credentials {
  username: string;
  password: string;
}

export type AuthFailure =
  | 'missing'
  | 'unknown-user'
  | 'bad-password'
  | 'clock-skew'
  | 'replayed-nonce'
  | 'malformed'
  | 'stale-nonce';

export type AuthOutcome = { ok: true; username: string } | { ok: false; failure: AuthFailure };

/** Compares secrets without an early exit on the first differing byte. */
function sameSecret(a: string | Buffer, b: string | Buffer): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

/**
 * Nonces seen recently, per camera. Bounded: when full, the oldest entries go first (a real
 * camera's replay cache is bounded too), so memory stays flat however many requests arrive.
 */
export class NonceCache {
  readonly #seen = new Map<string, number>();
  constructor(
    private readonly capacity = 100_000,
    private readonly ttlMs = 10 * 60_000,
  ) {}
  /** True if the nonce is new (and remembers it); false if it was used before. */
  remember(key: string, nowMs: number): boolean {
    const at = this.#seen.get(key);
    if (at !== undefined && nowMs - at < this.ttlMs) return false;
    this.#seen.delete(key);
    this.#seen.set(key, nowMs);
    if (this.#seen.size > this.capacity) {
      const oldest = this.#seen.keys().next().value;
      if (oldest !== undefined) this.#seen.delete(oldest);
    }
    return true;
  }
  get size(): number {
    return this.#seen.size;
  }
}

export const PASSWORD_DIGEST = 'http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest';

/** Base64(SHA-1(nonce bytes + created + password)), the UsernameToken PasswordDigest. */
export function passwordDigest(nonce: Buffer, created: string, password: string): string {
  return createHash('sha1')
    .update(Buffer.concat([nonce, Buffer.from(created, 'utf8'), Buffer.from(password, 'utf8')]))
    .digest('base64');
}

export interface UsernameTokenPolicy {
  /** the camera's clock, ms */
  nowMs: number;
  /** how far `Created` may be from the camera's clock; default 5 min */
  maxSkewMs?: number;
  replay?: { cache: NonceCache; scope: string };
}

/**
 * Verifies the wsse:Security header of a request. `security` is the Security element (or
 * undefined when the request has none). PasswordText is accepted too (some NVRs send it; the
 * ONVIF spec allows it over TLS), but without a Created and Nonce it cannot be checked for replay.
 */
export function verifyUsernameToken(
  security: XmlElement | undefined,
  accounts: readonly Credentials[],
  policy: UsernameTokenPolicy,
): AuthOutcome {
  const token = child(security, 'UsernameToken');
  if (!token) return { ok: false, failure: 'missing' };
  const username = child(token, 'Username')?.text;
  const passwordEl = child(token, 'Password');
  if (!username || !passwordEl) return { ok: false, failure: 'malformed' };
  const account = accounts.find((a) => a.username === username);
  const nonceText = child(token, 'Nonce')?.text;
  const created = child(token, 'Created')?.text;
  const type = passwordEl.attrs['Type'] ?? '';
  const isDigest = type.endsWith('#PasswordDigest');
  if (isDigest && (!nonceText || !created)) return { ok: false, failure: 'malformed' };
  if (!account) return { ok: false, failure: 'unknown-user' };
  if (isDigest) {
    const nonce = Buffer.from(nonceText!, 'base64');
    if (!sameSecret(passwordDigest(nonce, created!, account.password), passwordEl.text)) {
      return { ok: false, failure: 'bad-password' };
    }
  } else if (!sameSecret(account.password, passwordEl.text)) {
    return { ok: false, failure: 'bad-password' };
  }
  if (created !== undefined) {
    const createdMs = Date.parse(created);
    if (!Number.isFinite(createdMs)) return { ok: false, failure: 'malformed' };
    if (Math.abs(createdMs - policy.nowMs) > (policy.maxSkewMs ?? 5 * 60_000)) return { ok: false, failure: 'clock-skew' };
  }
  if (nonceText && policy.replay && !policy.replay.cache.remember(`${policy.replay.scope}|${nonceText}`, policy.nowMs)) {
    return { ok: false, failure: 'replayed-nonce' };
  }
  return { ok: true, username };
}

/** Parses `Digest a="b", c=d` into a map. */
export function parseAuthParams(header: string): Record<string, string> {
  const out: Record<string, string> = {};
  const re = /([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))/g;
  for (let m = re.exec(header); m; m = re.exec(header)) {
    out[m[1]!.toLowerCase()] = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : (m[3] ?? '');
  }
  return out;
}

/**
 * HTTP Digest with stateless nonces: a nonce is its issue time plus an HMAC of it, so any number
 * of cameras and clients need no per-nonce memory. Nonces older than `nonceTtlMs` are answered
 * with `stale=true` (the client retries without asking the user again). nc is not tracked.
 */
export class DigestAuthority {
  readonly #secret = randomBytes(32);
  constructor(
    readonly realm: string,
    private readonly nonceTtlMs = 5 * 60_000,
  ) {}

  #nonce(issuedMs: number): string {
    const ts = Math.floor(issuedMs).toString(16);
    return `${ts}-` + createHmac('sha256', this.#secret).update(`${ts}:${this.realm}`).digest('hex').slice(0, 32);
  }

  /** WWW-Authenticate header values to send with a 401. */
  challenges(nowMs: number, opts: { stale?: boolean; basic?: boolean } = {}): string[] {
    const nonce = this.#nonce(nowMs);
    const stale = opts.stale ? ', stale=TRUE' : '';
    const out = [`Digest realm="${this.realm}", qop="auth", nonce="${nonce}", algorithm=MD5${stale}`];
    if (opts.basic) out.push(`Basic realm="${this.realm}"`);
    return out;
  }

  /** `requestUri` is the request-target as received; the digest must be for exactly that URI. */
  verify(
    authorization: string | undefined,
    method: string,
    requestUri: string,
    accounts: readonly Credentials[],
    nowMs: number,
  ): AuthOutcome {
    if (!authorization) return { ok: false, failure: 'missing' };
    const space = authorization.indexOf(' ');
    const scheme = (space < 0 ? authorization : authorization.slice(0, space)).toLowerCase();
    if (scheme !== 'digest') return { ok: false, failure: 'missing' };
    const p = parseAuthParams(authorization.slice(space + 1));
    const { username, nonce, uri, response, realm } = p;
    if (!username || !nonce || !uri || !response || realm !== this.realm || uri !== requestUri) {
      return { ok: false, failure: 'malformed' };
    }
    const tsHex = /^([0-9a-f]{1,13})-/.exec(nonce)?.[1] ?? '';
    if (!tsHex || !sameSecret(this.#nonce(parseInt(tsHex, 16)), nonce)) return { ok: false, failure: 'malformed' };
    const account = accounts.find((a) => a.username === username);
    if (!account) return { ok: false, failure: 'unknown-user' };
    const algorithm = (p['algorithm'] ?? 'MD5').toUpperCase().replace(/-/g, '');
    if (algorithm !== 'MD5' && algorithm !== 'SHA256') return { ok: false, failure: 'malformed' };
    const h = (s: string) => createHash(algorithm === 'MD5' ? 'md5' : 'sha256').update(s).digest('hex');
    const ha1 = h(`${username}:${this.realm}:${account.password}`);
    const ha2 = h(`${method}:${uri}`);
    const qop = p['qop'];
    const expected = qop ? h(`${ha1}:${nonce}:${p['nc'] ?? ''}:${p['cnonce'] ?? ''}:${qop}:${ha2}`) : h(`${ha1}:${nonce}:${ha2}`);
    if (!sameSecret(expected, response.toLowerCase())) return { ok: false, failure: 'bad-password' };
    if (nowMs - parseInt(tsHex, 16) > this.nonceTtlMs) return { ok: false, failure: 'stale-nonce' };
    return { ok: true, username };
  }
}

/** HTTP Basic against the accounts. */
export function verifyBasic(authorization: string | undefined, accounts: readonly Credentials[]): AuthOutcome {
  if (!authorization || !/^basic /i.test(authorization)) return { ok: false, failure: 'missing' };
  const decoded = Buffer.from(authorization.slice(6).trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return { ok: false, failure: 'malformed' };
  const username = decoded.slice(0, colon);
  const account = accounts.find((a) => a.username === username);
  if (!account) return { ok: false, failure: 'unknown-user' };
  return sameSecret(account.password, decoded.slice(colon + 1)) ? { ok: true, username } : { ok: false, failure: 'bad-password' };
}
