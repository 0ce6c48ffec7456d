/**
 * MQTT credentials: one YAML file listing the principals allowed to connect (edge agents, and
 * devices that connect directly), each with a scrypt hash of its secret — never the secret. The
 * file is written by `npm run credentials` and read (and re-read when it changes) by the broker.
 *
 *   principals:
 *     - username: agent-chashan          # an agent id from the ledger's `agent` column, or a device id
 *       kind: agent                      # agent | device
 *       hash: scrypt$16384$8$1$<salt base64>$<key base64>
 */
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { ConfigError } from '../../../config/load.js';
import { isValidId } from '../../../protocol/topics.js';

export const PRINCIPAL_KINDS = ['agent', 'device'] as const;
export type PrincipalKind = (typeof PRINCIPAL_KINDS)[number];

export interface CredentialRecord {
  username: string;
  kind: PrincipalKind;
  /** `scrypt$N$r$p$saltB64$hashB64` */
  hash: string;
}

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

/** A bad credentials file: stops the gateway at start (exit 2, like a bad config), one line per problem. */
export class CredentialsError extends ConfigError {
  constructor(file: string, problems: string[]) {
    super(file, problems);
    this.name = 'CredentialsError';
    this.message = `invalid credentials file ${file}:\n  ${problems.join('\n  ')}`;
  }
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

/** Checks a parsed YAML document; one problem line per fault, with its place in the file. */
export function parseCredentials(doc: unknown): { records: CredentialRecord[]; problems: string[] } {
  const problems: string[] = [];
  const records: CredentialRecord[] = [];
  if (doc === null || doc === undefined) return { records, problems };
  if (typeof doc !== 'object' || Array.isArray(doc)) return { records, problems: ['(root): must be a mapping with a `principals` list'] };
  for (const key of Object.keys(doc)) if (key !== 'principals') problems.push(`${key}: unknown key`);
  const list = (doc as { principals?: unknown }).principals;
  if (list === null || list === undefined) return { records, problems };
  if (!Array.isArray(list)) return { records, problems: [...problems, 'principals: must be a list'] };
  const seen = new Map<string, number>();
  list.forEach((item: unknown, i) => {
    const at = `principals[${i}]`;
    if (typeof item !== 'object' || item === null || Array.isArray(item)) {
      problems.push(`${at}: must be a mapping with username, kind and hash`);
      return;
    }
    const entry = item as Record<string, unknown>;
    const before = problems.length;
    for (const key of Object.keys(entry)) if (!['username', 'kind', 'hash'].includes(key)) problems.push(`${at}.${key}: unknown key`);
    const { username, kind, hash } = entry;
    if (typeof username !== 'string' || !isValidId(username)) {
      problems.push(`${at}.username: must be an agent or device id (letters, digits, '_', '.', '-'; max 64)`);
    }
    if (typeof kind !== 'string' || !(PRINCIPAL_KINDS as readonly string[]).includes(kind)) problems.push(`${at}.kind: must be one of ${PRINCIPAL_KINDS.join(', ')}`);
    if (typeof hash !== 'string' || !parseHash(hash)) problems.push(`${at}.hash: must be a scrypt$N$r$p$salt$hash string (write it with \`npm run credentials\`)`);
    if (problems.length > before) return;
    const name = username as string;
    const first = seen.get(name);
    if (first !== undefined) {
      problems.push(`${at}.username: "${name}" is already used by principals[${first}]`);
      return;
    }
    seen.set(name, i);
    records.push({ username: name, kind: kind as PrincipalKind, hash: hash as string });
  });
  return { records, problems };
}

/**
 * Reads the credentials file. A missing file means "no credentials" (undefined); a malformed one
 * is a CredentialsError naming the file and every problem.
 */
export function loadCredentialsFile(file: string): CredentialRecord[] | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CredentialsError(file, [`(file): cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`]);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new CredentialsError(file, [`(file): not valid YAML: ${(err as Error).message.split('\n')[0]}`]);
  }
  const { records, problems } = parseCredentials(doc);
  if (problems.length > 0) throw new CredentialsError(file, problems);
  return records;
}

const HEADER = `# GreenShield MQTT credentials. Written by \`npm run credentials\`; holds scrypt hashes only,
# never secrets. Keep it readable by the gateway alone (mode 0600). See docs/security.md.
`;

export function credentialsToYaml(records: readonly CredentialRecord[]): string {
  return HEADER + stringifyYaml({ principals: records.map(({ username, kind, hash }) => ({ username, kind, hash })) });
}

/** Replaces the file atomically (write + rename), readable by its owner only. */
export function writeCredentialsFile(file: string, records: readonly CredentialRecord[]): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, credentialsToYaml(records), { mode: 0o600 });
  renameSync(tmp, file);
}
