/**
 * Secrets at rest: scrypt hashes (`scrypt$N$r$p$salt$key`, base64), verified on the thread pool
 * and compared in constant time. Used for MQTT credentials and for dashboard user passwords.
 */
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';

/** Parameters for new hashes: scrypt's interactive-login strength (~16 MiB, tens of ms). */
export const SCRYPT = { N: 16384, r: 8, p: 1, saltBytes: 16, keyBytes: 32 } as const;

export interface ScryptHash {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  key: Buffer;
}

/** A strong random secret (256 bits), URL- and YAML-safe. */
export function generateSecret(): string {
  return randomBytes(32).toString('base64url');
}

function scryptAsync(secret: Uint8Array, salt: Buffer, keyLen: number, N: number, r: number, p: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    // maxmem must cover 128·N·r (plus a little); parseHash bounds N and r so this stays sane.
    scrypt(secret, salt, keyLen, { N, r, p, maxmem: 256 * N * r + 1024 * 1024 }, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

export async function hashSecret(secret: string | Uint8Array): Promise<string> {
  const bytes = typeof secret === 'string' ? Buffer.from(secret, 'utf8') : secret;
  const salt = randomBytes(SCRYPT.saltBytes);
  const key = await scryptAsync(bytes, salt, SCRYPT.keyBytes, SCRYPT.N, SCRYPT.r, SCRYPT.p);
  return `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

const B64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** Parses and bounds a hash string; undefined if it is not one we accept. */
export function parseHash(text: string): ScryptHash | undefined {
  const parts = text.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return undefined;
  const [, nText, rText, pText, saltText, keyText] = parts as [string, string, string, string, string, string];
  const N = Number(nText);
  const r = Number(rText);
  const p = Number(pText);
  // Bounds keep a hand-edited file from making every CONNECT cost gigabytes or seconds.
  if (!Number.isInteger(N) || N < 1024 || N > 1 << 20 || (N & (N - 1)) !== 0) return undefined;
  if (!Number.isInteger(r) || r < 1 || r > 32 || 128 * N * r > 256 * 1024 * 1024) return undefined;
  if (!Number.isInteger(p) || p < 1 || p > 16) return undefined;
  if (!B64.test(saltText) || !B64.test(keyText)) return undefined;
  const salt = Buffer.from(saltText, 'base64');
  const key = Buffer.from(keyText, 'base64');
  if (salt.length < 8 || key.length < 16 || key.length > 64) return undefined;
  return { N, r, p, salt, key };
}

/** Runs scrypt on the thread pool and compares in constant time. */
export async function verifySecret(secret: Uint8Array, hash: string): Promise<boolean> {
  const parsed = parseHash(hash);
  if (!parsed) return false;
  const key = await scryptAsync(secret, parsed.salt, parsed.key.length, parsed.N, parsed.r, parsed.p);
  return timingSafeEqual(key, parsed.key);
}

