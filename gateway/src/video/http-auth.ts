/**
 * GET a camera URL (the ONVIF snapshot URI) with the authentication cameras use there: HTTP
 * Digest (RFC 7616: MD5, SHA-256 and their -sess forms, qop=auth), or Basic when the camera offers
 * only that. Credentials are sent only after a 401 says how, never up front: Basic over plain HTTP
 * would hand the password to anyone on the path.
 */
import { createHash, randomBytes } from 'node:crypto';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { CameraCredentials } from './credentials.js';

export interface FetchedBody {
  status: number;
  contentType: string;
  body: Buffer;
}

export class CameraHttpError extends Error {}

function parseParams(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  const re = /([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))/g;
  for (let m = re.exec(text); m; m = re.exec(text)) out[m[1]!.toLowerCase()] = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : (m[3] ?? '');
  return out;
}

/** The challenges of a 401, one per WWW-Authenticate header (raw headers keep them apart). */
function challengesOf(res: IncomingMessage): Array<{ scheme: string; params: Record<string, string> }> {
  const out: Array<{ scheme: string; params: Record<string, string> }> = [];
  for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) {
    if (res.rawHeaders[i]!.toLowerCase() !== 'www-authenticate') continue;
    const value = res.rawHeaders[i + 1]!.trim();
    const space = value.indexOf(' ');
    const scheme = (space < 0 ? value : value.slice(0, space)).toLowerCase();
    out.push({ scheme, params: space < 0 ? {} : parseParams(value.slice(space + 1)) });
  }
  return out;
}

export function digestAuthorization(
  creds: CameraCredentials,
  challenge: Record<string, string>,
  method: string,
  uri: string,
  cnonce = randomBytes(8).toString('hex'),
): string | undefined {
  const algorithm = (challenge['algorithm'] ?? 'MD5').toUpperCase();
  const base = algorithm.replace(/-SESS$/, '');
  const hashName = base === 'MD5' ? 'md5' : base === 'SHA-256' ? 'sha256' : undefined;
  if (!hashName) return undefined;
  const h = (s: string) => createHash(hashName).update(s).digest('hex');
  const realm = challenge['realm'] ?? '';
  const nonce = challenge['nonce'] ?? '';
  const qops = (challenge['qop'] ?? '').split(',').map((q) => q.trim());
  const qop = qops.includes('auth') ? 'auth' : undefined;
  if (challenge['qop'] !== undefined && !qop) return undefined; // auth-int only
  const nc = '00000001';
  let ha1 = h(`${creds.username}:${realm}:${creds.password}`);
  if (algorithm.endsWith('-SESS')) ha1 = h(`${ha1}:${nonce}:${cnonce}`);
  const ha2 = h(`${method}:${uri}`);
  const response = qop ? h(`${ha1}:${nonce}:${nc}:${cnonce}:${qop}:${ha2}`) : h(`${ha1}:${nonce}:${ha2}`);
  const q = (s: string) => `"${s.replace(/["\\]/g, '\\$&')}"`;
  const parts = [`username=${q(creds.username)}`, `realm=${q(realm)}`, `nonce=${q(nonce)}`, `uri=${q(uri)}`, `algorithm=${algorithm}`, `response=${q(response)}`];
  if (qop) parts.push(`qop=${qop}`, `nc=${nc}`, `cnonce=${q(cnonce)}`);
  if (challenge['opaque'] !== undefined) parts.push(`opaque=${q(challenge['opaque'])}`);
  return `Digest ${parts.join(', ')}`;
}

function get(url: URL, headers: Record<string, string>, timeoutMs: number, maxBytes: number): Promise<{ res: IncomingMessage; body: Buffer }> {
  const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'GET', headers, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > maxBytes) {
          req.destroy(new CameraHttpError(`the answer is larger than ${maxBytes} bytes`));
          return;
        }
        chunks.push(c);
      });
      res.on('end', () => resolve({ res, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new CameraHttpError(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** GET `url` (no userinfo in it), answering a Digest or Basic challenge with `creds`. */
export async function fetchWithCameraAuth(
  url: string,
  creds: CameraCredentials | undefined,
  opts: { timeoutMs: number; maxBytes: number },
): Promise<FetchedBody> {
  const u = new URL(url);
  const deadline = Date.now() + opts.timeoutMs;
  const left = () => Math.max(1, deadline - Date.now());
  let { res, body } = await get(u, {}, left(), opts.maxBytes);
  for (let attempt = 0; res.statusCode === 401 && creds && attempt < 2; attempt++) {
    const challenges = challengesOf(res);
    const digest = challenges.find((c) => c.scheme === 'digest');
    let authorization: string | undefined;
    if (digest) authorization = digestAuthorization(creds, digest.params, 'GET', `${u.pathname}${u.search}`);
    else if (challenges.some((c) => c.scheme === 'basic')) authorization = `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
    if (!authorization) break;
    ({ res, body } = await get(u, { authorization }, left(), opts.maxBytes));
    // A stale nonce (RFC 7616 3.3) is worth one more try with the new one; anything else is final.
    if (!(res.statusCode === 401 && challengesOf(res).some((c) => c.scheme === 'digest' && /^true$/i.test(c.params['stale'] ?? '')))) break;
  }
  return { status: res.statusCode ?? 0, contentType: String(res.headers['content-type'] ?? ''), body };
}
