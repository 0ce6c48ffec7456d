/**
 * Secrets at rest: scrypt hashes (`scrypt$N$r$p$salt$key`, base64), verified on the thread pool
 * and compared in constant time. Used for MQTT credentials and for dashboard user passwords.
 */
import { pbkdf2, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';

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


/**
 * Broker-compatible hashes for the same secrets, for an external MQTT broker (Mosquitto 2, EMQX 5)
 * that cannot read scrypt: PBKDF2-HMAC-SHA512, stored as `pbkdf2-sha512$<iterations>$<salt>$<key base64>`.
 * The salt is 12 ASCII characters used as bytes as they stand: Mosquitto's `$7$` format insists on
 * a 12-byte salt (base64 in its file) and EMQX uses its `salt` column's characters as the salt, so
 * one hash serves both. The secrets are 256-bit random, so the iteration count guards nothing a
 * brute force could reach; 4096 (EMQX's default) keeps a broker's CONNECT cheap.
 */
export const BROKER_PBKDF2 = { iterations: 4096, saltChars: 12, keyBytes: 64, digest: 'sha512' } as const;

export interface BrokerHash {
  iterations: number;
  /** The salt as stored: 12 characters of [A-Za-z0-9_-], used as ASCII bytes. */
  salt: string;
  key: Buffer;
}

function pbkdf2Async(secret: Uint8Array, salt: string, iterations: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    pbkdf2(secret, Buffer.from(salt, 'ascii'), iterations, BROKER_PBKDF2.keyBytes, BROKER_PBKDF2.digest, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

export async function hashSecretForBroker(secret: string | Uint8Array, iterations: number = BROKER_PBKDF2.iterations): Promise<string> {
  const bytes = typeof secret === 'string' ? Buffer.from(secret, 'utf8') : secret;
  // 9 random bytes are exactly 12 base64url characters (72 bits of salt).
  const salt = randomBytes(9).toString('base64url');
  const key = await pbkdf2Async(bytes, salt, iterations);
  return `pbkdf2-sha512$${iterations}$${salt}$${key.toString('base64')}`;
}

const BROKER_SALT = /^[A-Za-z0-9_-]{12}$/;

/** Parses and bounds a broker hash string; undefined if it is not one we accept. */
export function parseBrokerHash(text: string): BrokerHash | undefined {
  const parts = text.split('$');
  if (parts.length !== 4 || parts[0] !== 'pbkdf2-sha512') return undefined;
  const [, iterText, salt, keyText] = parts as [string, string, string, string];
  const iterations = Number(iterText);
  // Every broker CONNECT pays the iterations; the bound keeps a hand edit from stalling the broker.
  if (!/^[0-9]+$/.test(iterText) || !Number.isInteger(iterations) || iterations < 1000 || iterations > 1_000_000) return undefined;
  if (!BROKER_SALT.test(salt) || !B64.test(keyText)) return undefined;
  const key = Buffer.from(keyText, 'base64');
  if (key.length !== BROKER_PBKDF2.keyBytes) return undefined;
  return { iterations, salt, key };
}

/** Checks a secret against a broker hash (what the broker itself will compute), in constant time. */
export async function verifyBrokerSecret(secret: Uint8Array, hash: string): Promise<boolean> {
  const parsed = parseBrokerHash(hash);
  if (!parsed) return false;
  const key = await pbkdf2Async(secret, parsed.salt, parsed.iterations);
  return timingSafeEqual(key, parsed.key);
}
