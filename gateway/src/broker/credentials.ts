/**
 * MQTT credentials: one YAML file listing the principals allowed to connect (edge agents, and
 * devices that connect directly), each with a scrypt hash of its secret — never the secret. The
 * file is written by `npm run credentials` and read (and re-read when it changes) by the broker.
 *
 *   principals:
 *     - username: agent-chashan          # an agent id from the ledger's `agent` column, or a device id
 *       kind: agent                      # agent | device
 *       hash: scrypt$16384$8$1$<salt base64>$<key base64>
 *       brokerHash: pbkdf2-sha512$4096$<salt>$<key base64>   # optional: for an external broker
 *
 * `brokerHash` is the same secret hashed the way Mosquitto and EMQX can check it (they do not know
 * scrypt); `npm run broker-config` turns it into their password files. Files written before it
 * existed load as they are; such principals need a new secret (`add --replace`) before they can
 * connect through an external broker.
 */
import { parseBrokerHash, parseHash } from '../security/secrets.js';
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
  /** `pbkdf2-sha512$iterations$salt$keyB64`, the same secret for an external broker; absent in older files. */
  brokerHash?: string;
}

export { SCRYPT, generateSecret, hashSecret, parseHash, verifySecret, type ScryptHash } from '../security/secrets.js';
export { BROKER_PBKDF2, hashSecretForBroker, parseBrokerHash, verifyBrokerSecret, type BrokerHash } from '../security/secrets.js';

/** A bad credentials file: stops the gateway at start (exit 2, like a bad config), one line per problem. */
export class CredentialsError extends ConfigError {
  constructor(file: string, problems: string[]) {
    super(file, problems);
    this.name = 'CredentialsError';
    this.message = `invalid credentials file ${file}:\n  ${problems.join('\n  ')}`;
  }
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
    for (const key of Object.keys(entry)) if (!['username', 'kind', 'hash', 'brokerHash'].includes(key)) problems.push(`${at}.${key}: unknown key`);
    const { username, kind, hash, brokerHash } = entry;
    if (typeof username !== 'string' || !isValidId(username)) {
      problems.push(`${at}.username: must be an agent or device id (letters, digits, '_', '.', '-'; max 64)`);
    }
    if (typeof kind !== 'string' || !(PRINCIPAL_KINDS as readonly string[]).includes(kind)) problems.push(`${at}.kind: must be one of ${PRINCIPAL_KINDS.join(', ')}`);
    if (typeof hash !== 'string' || !parseHash(hash)) problems.push(`${at}.hash: must be a scrypt$N$r$p$salt$hash string (write it with \`npm run credentials\`)`);
    if (brokerHash !== undefined && (typeof brokerHash !== 'string' || !parseBrokerHash(brokerHash))) {
      problems.push(`${at}.brokerHash: must be a pbkdf2-sha512$iterations$salt$hash string (write it with \`npm run credentials\`)`);
    }
    if (problems.length > before) return;
    const name = username as string;
    const first = seen.get(name);
    if (first !== undefined) {
      problems.push(`${at}.username: "${name}" is already used by principals[${first}]`);
      return;
    }
    seen.set(name, i);
    const record: CredentialRecord = { username: name, kind: kind as PrincipalKind, hash: hash as string };
    if (typeof brokerHash === 'string') record.brokerHash = brokerHash;
    records.push(record);
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
# brokerHash (PBKDF2) is for an external broker: \`npm run broker-config\` (docs/operations.md).
`;

export function credentialsToYaml(records: readonly CredentialRecord[]): string {
  return (
    HEADER +
    stringifyYaml({
      principals: records.map(({ username, kind, hash, brokerHash }) => (brokerHash === undefined ? { username, kind, hash } : { username, kind, hash, brokerHash })),
    })
  );
}

/** Replaces the file atomically (write + rename), readable by its owner only. */
export function writeCredentialsFile(file: string, records: readonly CredentialRecord[]): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, credentialsToYaml(records), { mode: 0o600 });
  renameSync(tmp, file);
}
