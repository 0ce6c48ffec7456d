/**
 * Dashboard users, from the command line, in the operational store the config names (SQLite or
 * PostgreSQL, `gateway.store`); the gateway may be running.
 *   npm run users -- hash                          read a password on stdin, print its hash for config
 *   npm run users -- add <username> --role duty_officer [--name 值班员] [--grids G01,G02] [--config FILE]
 *   npm run users -- passwd <username> [--config FILE]
 *   npm run users -- list [--config FILE]
 * `add` and `passwd` generate a strong password and print it once; only its hash is stored.
 */
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../../../config/load.js';
import { generateSecret, hashSecret } from '../security/secrets.js';
import { isUniqueViolation } from '../store/errors.js';
import { openStore } from '../store/open.js';
import { ROLES, type OperationalStore, type Role, type User } from '../store/store.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    config: { type: 'string', default: 'config/gateway.yaml' },
    role: { type: 'string' },
    name: { type: 'string' },
    grids: { type: 'string' },
  },
});
const [command, username] = positionals;
const out = (line: string) => process.stdout.write(`${line}\n`);
const fail = (line: string): never => {
  process.stderr.write(`${line}\n`);
  process.exit(2);
};

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

function open(): OperationalStore {
  try {
    const { config, source } = loadConfig(values.config);
    if (!config.gateway) throw new ConfigError(source, ['gateway: section is required']);
    return openStore(config.gateway);
  } catch (err) {
    return fail((err as Error).message);
  }
}

if (command === 'hash') {
  const password = await readStdin();
  if (password.length < 8) fail('a password needs at least 8 characters');
  out(await hashSecret(password));
} else if (command === 'add' && username) {
  const role = values.role as Role | undefined;
  if (!role || !ROLES.includes(role)) fail(`--role must be one of ${ROLES.join(', ')}`);
  const store = open();
  const exists = () => fail(`user "${username}" exists (use passwd to change the password)`);
  if (store.findUserByName(username)) exists();
  const password = generateSecret().slice(0, 20);
  const passwordHash = await hashSecret(password);
  let user: User;
  try {
    user = store.createUser({ username, displayName: values.name ?? username, role: role!, grids: values.grids ? values.grids.split(',').map((g) => g.trim()) : [], passwordHash }, Date.now());
  } catch (err) {
    if (!isUniqueViolation(err)) throw err;
    user = exists(); // created meanwhile (the dashboard, another gateway)
  }
  store.audit({ ts: Date.now(), actor: 'cli', action: 'user.create', subject: username, detail: { role: user.role, grids: user.grids } });
  store.close();
  out(`created ${username} (${user.role}); password, shown once: ${password}`);
} else if (command === 'passwd' && username) {
  const store = open();
  const user = store.findUserByName(username) ?? fail(`no user "${username}"`);
  const password = generateSecret().slice(0, 20);
  store.updateUser(user.id, { passwordHash: await hashSecret(password) });
  store.deleteSessionsOf(user.id);
  store.audit({ ts: Date.now(), actor: 'cli', action: 'user.update', subject: username, detail: { password: 'changed' } });
  store.close();
  out(`new password for ${username}, shown once: ${password}`);
} else if (command === 'list') {
  const store = open();
  for (const u of store.listUsers()) out(`${u.username}\t${u.role}\t${u.displayName}\t${u.grids.join(',')}${u.disabled ? '\tdisabled' : ''}`);
  store.close();
} else {
  fail('usage: npm run users -- hash | add <username> --role ROLE [--name N] [--grids G1,G2] | passwd <username> | list   [--config FILE]');
}
