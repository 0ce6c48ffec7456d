/**
 * `npm run broker-config -- --target mosquitto|emqx --ledger <csv> --credentials <yaml> --out <dir>`:
 * writes an external broker's authentication and ACL files from the ledger and the credentials
 * (broker-config.ts has the rules). Files holding hashes are written mode 0600, every file
 * atomically. Exit codes: 0 written, 1 usage, 2 an input is invalid or missing.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError } from '../../../config/load.js';
import { LedgerError, loadLedger } from '../../../config/ledger.js';
import { BROKER_TARGETS, BrokerConfigError, generateBrokerConfig, type BrokerTarget } from './broker-config.js';
import { generateSecret, hashSecretForBroker, loadCredentialsFile } from './credentials.js';

const USAGE = `usage: npm run broker-config -- --target mosquitto|emqx --ledger <csv> --credentials <yaml> --out <dir> [options]
  --gateway-user <name>           the gateway instances' MQTT username (default gateway)
  --gateway-password-file <file>  the gateway's MQTT secret, the file gateway.mqtt.external.passwordFile names;
                                  created with a new secret if it does not exist
  --broker-dir <dir>              where the broker reads the files (default: --out, absolute)
  --port <n>                      mosquitto: agents' and devices' listener (default 1883)
  --gateway-port <n>              mosquitto: gateways' listener (default 1884)
  --bind <address>                mosquitto: address both listeners bind to (default all)`;

class Refused extends Error {}
/** An input that is missing or invalid: exit 2, like a bad config. */
class BadInput extends Error {}

function port(text: string | undefined, name: string): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Refused(`--${name} must be a port number (1-65535)`);
  return n;
}

/** Replaces a file atomically; `secret` files are readable by their owner only. */
function writeAtomically(file: string, content: string, secret: boolean): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, content, { mode: secret ? 0o600 : 0o644 });
  renameSync(tmp, file);
}

/** The gateway's secret, read from its file, or a new one written there (0600) and said so. */
async function gatewayBrokerHash(file: string): Promise<string> {
  let secret: string;
  if (existsSync(file)) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new BadInput(`${file}: cannot read the gateway password file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    // The first line, as the gateway reads gateway.mqtt.external.passwordFile.
    secret = text.split(/\r?\n/)[0] ?? '';
    if (secret.length === 0) throw new BadInput(`${file}: the gateway password file is empty`);
  } else {
    mkdirSync(dirname(file), { recursive: true });
    secret = generateSecret();
    writeAtomically(file, `${secret}\n`, true);
    process.stderr.write(`wrote a new gateway secret to ${file} (mode 0600); point gateway.mqtt.external.passwordFile at it\n`);
  }
  return hashSecretForBroker(secret);
}

async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      target: { type: 'string' },
      ledger: { type: 'string' },
      credentials: { type: 'string' },
      out: { type: 'string' },
      'gateway-user': { type: 'string', default: 'gateway' },
      'gateway-password-file': { type: 'string' },
      'broker-dir': { type: 'string' },
      port: { type: 'string' },
      'gateway-port': { type: 'string' },
      bind: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (positionals.length > 0) throw new Refused(`unexpected arguments: ${positionals.join(' ')}\n${USAGE}`);
  const missing = (['target', 'ledger', 'credentials', 'out'] as const).filter((k) => !values[k]);
  if (missing.length > 0) throw new Refused(`missing ${missing.map((k) => `--${k}`).join(', ')}\n${USAGE}`);
  const target = values.target as string;
  if (!(BROKER_TARGETS as readonly string[]).includes(target)) throw new Refused(`--target must be one of ${BROKER_TARGETS.join(', ')}`);
  const listenPort = port(values.port, 'port');
  const gatewayPort = port(values['gateway-port'], 'gateway-port');

  const ledgerFile = values.ledger as string;
  const credentialsFile = values.credentials as string;
  const devices = loadLedger(ledgerFile);
  const credentials = loadCredentialsFile(credentialsFile);
  if (!credentials) throw new BadInput(`${credentialsFile}: no such credentials file (npm run credentials -- add <agent-id> --file ${credentialsFile})`);
  const gatewayUser = values['gateway-user'] as string;
  const passwordFile = values['gateway-password-file'];
  const gatewayHash = passwordFile ? await gatewayBrokerHash(passwordFile) : undefined;

  const out = resolve(values.out as string);
  const generated = generateBrokerConfig({
    target: target as BrokerTarget,
    devices,
    credentials,
    gateway: { username: gatewayUser, ...(gatewayHash ? { brokerHash: gatewayHash } : {}) },
    brokerDir: values['broker-dir'] ?? out,
    ...(listenPort === undefined ? {} : { port: listenPort }),
    ...(gatewayPort === undefined ? {} : { gatewayPort }),
    ...(values.bind ? { bindAddress: values.bind } : {}),
    sources: { ledger: ledgerFile, credentials: credentialsFile },
  });

  mkdirSync(out, { recursive: true });
  for (const f of generated.files) writeAtomically(resolve(out, f.name), f.content, f.secret);
  const agents = generated.grants.filter((g) => g.role === 'agent').length;
  const deviceCount = generated.grants.filter((g) => g.role === 'device').length;
  process.stderr.write(
    `wrote ${generated.files.map((f) => f.name).join(', ')} to ${out}\n` +
      `  ${agents} agent(s), ${deviceCount} device principal(s), gateway user "${gatewayUser}"; ledger: ${devices.length} devices\n`,
  );
  for (const w of generated.warnings) process.stderr.write(`warning: ${w}\n`);
  const without = generated.withoutBrokerHash;
  if (without.length > 0) {
    const clients = without.filter((u) => u !== gatewayUser);
    if (clients.length > 0) {
      process.stderr.write(
        `${clients.length} principal(s) have no broker hash (credentials written before broker support) and cannot log in to the broker:\n` +
          clients.map((u) => `  ${u}`).join('\n') +
          `\nissue each a new secret, then run this again:  npm run credentials -- add <username> --replace --file ${credentialsFile}\n`,
      );
    }
    if (without.includes(gatewayUser)) process.stderr.write(`the gateway user "${gatewayUser}" has no password entry: give --gateway-password-file <file>\n`);
  }
}

try {
  await main(process.argv.slice(2));
} catch (err) {
  if (err instanceof ConfigError || err instanceof LedgerError || err instanceof BrokerConfigError || err instanceof BadInput) {
    process.stderr.write(`${err.message}\n`);
    process.exit(2);
  }
  if (err instanceof Refused || (err as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(1);
  }
  throw err;
}
