/**
 * `npm run credentials -- <command>`: manages the broker's credentials file. Secrets are
 * generated here, printed once (stdout, so they can be captured) and stored only as hashes: scrypt
 * for the embedded broker, and PBKDF2-SHA512 of the same secret for an external broker (Mosquitto,
 * EMQX; `npm run broker-config`). The secret itself exists only in this process and on stdout.
 *
 *   add <username> [--kind agent|device] [--replace]   new principal (or, with --replace, a new secret)
 *   remove <username>                                  the gateway closes its connections within seconds
 *   list
 *
 * Options: --file <path> (default config/credentials.yaml), or --config <gateway.yaml> to use
 * that config's gateway.mqtt.credentialsFile. Exit codes: 0 done, 1 refused (usage, exists, not
 * found), 2 the credentials or config file is invalid.
 */
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../../../config/load.js';
import { isValidId } from '../../../protocol/topics.js';
import {
  generateSecret,
  hashSecret,
  hashSecretForBroker,
  loadCredentialsFile,
  PRINCIPAL_KINDS,
  writeCredentialsFile,
  type CredentialRecord,
  type PrincipalKind,
} from './credentials.js';

const DEFAULT_FILE = fileURLToPath(new URL('../../../config/credentials.yaml', import.meta.url));

const USAGE = `usage: npm run credentials -- <command> [options]
  add <username> [--kind agent|device] [--replace]   create a principal and print its secret once
  remove <username>                                  delete a principal
  list                                               show principals (never secrets)
options:
  --file <path>      credentials file (default ${DEFAULT_FILE})
  --config <path>    use gateway.mqtt.credentialsFile from this gateway config instead`;

class Refused extends Error {}

function credentialsPath(values: { file?: string; config?: string }): string {
  if (values.file && values.config) throw new Refused('give --file or --config, not both');
  if (values.file) return values.file;
  if (values.config) {
    const { config, source } = loadConfig(values.config);
    if (!config.gateway) throw new ConfigError(source, ['gateway: section is required to find gateway.mqtt.credentialsFile']);
    return config.gateway.mqtt.credentialsFile;
  }
  return DEFAULT_FILE;
}

async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      kind: { type: 'string', default: 'agent' },
      file: { type: 'string' },
      config: { type: 'string' },
      replace: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const [command, username, ...extra] = positionals;
  if (values.help || !command) {
    process.stdout.write(`${USAGE}\n`);
    if (!command && !values.help) process.exitCode = 1;
    return;
  }
  if (extra.length > 0) throw new Refused(`unexpected arguments: ${extra.join(' ')}`);
  const file = credentialsPath(values);
  const records: CredentialRecord[] = loadCredentialsFile(file) ?? [];

  switch (command) {
    case 'add': {
      if (!username) throw new Refused('add needs a username (an agent id from the ledger, or a device id)');
      if (!isValidId(username)) throw new Refused(`"${username}" is not a valid id (letters, digits, '_', '.', '-'; max 64)`);
      const kind = values.kind as string;
      if (!(PRINCIPAL_KINDS as readonly string[]).includes(kind)) throw new Refused(`--kind must be one of ${PRINCIPAL_KINDS.join(', ')}`);
      const existing = records.findIndex((r) => r.username === username);
      if (existing >= 0 && !values.replace) throw new Refused(`"${username}" already exists in ${file}; pass --replace to issue a new secret (the old one stops working)`);
      const secret = generateSecret();
      const [hash, brokerHash] = await Promise.all([hashSecret(secret), hashSecretForBroker(secret)]);
      const record: CredentialRecord = { username, kind: kind as PrincipalKind, hash, brokerHash };
      if (existing >= 0) records[existing] = record;
      else records.push(record);
      writeCredentialsFile(file, records);
      process.stderr.write(
        `${existing >= 0 ? 'replaced the secret of' : 'added'} ${kind} "${username}" in ${file}\n` +
          `Its secret follows, shown this once only; it is not stored anywhere. Connect with\n` +
          `username "${username}", client id "${username}" (or "${username}:<suffix>") and this password` +
          (kind === 'agent' ? ` (agent config: agent.username / agent.password):\n` : `:\n`),
      );
      process.stdout.write(`${secret}\n`);
      return;
    }
    case 'remove': {
      if (!username) throw new Refused('remove needs a username');
      const index = records.findIndex((r) => r.username === username);
      if (index < 0) throw new Refused(`"${username}" is not in ${file}`);
      records.splice(index, 1);
      writeCredentialsFile(file, records);
      process.stderr.write(`removed "${username}" from ${file}; a running gateway drops its connections within seconds\n`);
      return;
    }
    case 'list': {
      if (username) throw new Refused('list takes no username');
      if (records.length === 0) {
        process.stderr.write(`no principals in ${file}\n`);
        return;
      }
      const width = Math.max(8, ...records.map((r) => r.username.length));
      process.stdout.write(`${'username'.padEnd(width)}  kind\n`);
      for (const r of records) process.stdout.write(`${r.username.padEnd(width)}  ${r.kind}\n`);
      return;
    }
    default:
      throw new Refused(`unknown command "${command}"\n${USAGE}`);
  }
}

try {
  await main(process.argv.slice(2));
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`${err.message}\n`);
    process.exit(2);
  }
  if (err instanceof Refused || (err as NodeJS.ErrnoException).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(1);
  }
  throw err;
}
