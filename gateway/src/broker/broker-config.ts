/**
 * Configuration for an external MQTT broker (Mosquitto 2, EMQX 5), generated from the ledger and
 * the credentials file, so that the broker enforces what the embedded broker enforces in acl.ts
 * when the gateway runs as its client (`gateway.mqtt.mode: external`):
 *
 *   agent A    publish   gs/v1/devices/{id}/(telemetry|event|state|ack)  ledger devices whose agent is A
 *                        gs/v1/agents/A/state
 *              subscribe gs/v1/devices/{id}/cmd                          same devices, exact topics only
 *   device D   publish   gs/v1/devices/D/(telemetry|event|state|ack)
 *              subscribe gs/v1/devices/D/cmd
 *   gateway    subscribe gs/v1/#   (as `$share/<group>/gs/v1/...`; the brokers check the filter after the prefix)
 *              publish   gs/v1/devices/+/cmd, gs/v1/cluster/#   (cluster: fan-out between gateway instances)
 *   anyone else, and agents/devices on anything not listed (gs/v1/cluster/# included): refused
 *
 * Agents and devices get exact topics, never wildcards, as in acl.ts. Pure: no files, no clock;
 * `broker-config-cli.ts` reads the inputs and writes the files. Hashes are the credentials'
 * `brokerHash` (PBKDF2-SHA512, see security/secrets.ts); principals without one are listed.
 */
import { TOPIC_ROOT, isValidId, topics } from '../../../protocol/topics.js';
import { parseBrokerHash, BROKER_PBKDF2 } from '../security/secrets.js';
import type { CredentialRecord, PrincipalKind } from './credentials.js';

export const BROKER_TARGETS = ['mosquitto', 'emqx'] as const;
export type BrokerTarget = (typeof BROKER_TARGETS)[number];

/** Internal topics between gateway instances (cross-instance fan-out); never open to agents or devices. */
export const CLUSTER_TOPIC_FILTER = `${TOPIC_ROOT}/cluster/#`;
/** What the gateway principal may subscribe to (shared or not). */
export const GATEWAY_SUBSCRIBE_FILTER = `${TOPIC_ROOT}/#`;
export const GATEWAY_PUBLISH_FILTERS = [topics.cmd('+'), CLUSTER_TOPIC_FILTER] as const;

/** Upstream channels an agent or device publishes on. */
const UPSTREAM = ['telemetry', 'event', 'state', 'ack'] as const;

export interface BrokerGrant {
  username: string;
  role: PrincipalKind | 'gateway';
  /** Agents and devices: exact topics. The gateway: topic filters. */
  publish: string[];
  subscribe: string[];
  /** PBKDF2 hash for the broker's password store; undefined: this principal cannot log in yet. */
  brokerHash?: string;
  /** Agents: how many ledger devices they speak for (for comments in the files). */
  devices?: number;
}

export interface BrokerConfigInput {
  target: BrokerTarget;
  /** The ledger: which agent speaks for each device. */
  devices: ReadonlyArray<{ readonly id: string; readonly agent: string }>;
  credentials: readonly CredentialRecord[];
  gateway: { username: string; brokerHash?: string };
  /** Directory in which the broker will find the generated files (its own view: a container path, say). */
  brokerDir: string;
  /** Mosquitto: the agents' and devices' listener (default 1883) and the gateways' one (default 1884). */
  port?: number;
  gatewayPort?: number;
  /** Mosquitto: address to bind both listeners to (default: all). */
  bindAddress?: string;
  /** Where the inputs came from, named in the files' headers. */
  sources?: { ledger: string; credentials: string };
}

export interface BrokerConfigFile {
  name: string;
  content: string;
  /** Holds password hashes: write it readable by the broker alone. */
  secret: boolean;
}

export interface BrokerConfig {
  files: BrokerConfigFile[];
  grants: BrokerGrant[];
  /** Principals that cannot log in to the external broker until re-issued (`npm run credentials -- add <name> --replace`). */
  withoutBrokerHash: string[];
  /** Things worth a look that do not stop generation (unknown principals, agents without credentials). */
  warnings: string[];
}

/** Inputs that cannot give a working configuration; one line per problem. */
export class BrokerConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`cannot generate the broker configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'BrokerConfigError';
    this.problems = problems;
  }
}

/** The rules of the table above, per principal: the single source both renderers use. */
export function brokerGrants(input: Pick<BrokerConfigInput, 'devices' | 'credentials' | 'gateway'>): { grants: BrokerGrant[]; warnings: string[]; problems: string[] } {
  const warnings: string[] = [];
  const problems: string[] = [];
  const byAgent = new Map<string, string[]>();
  const deviceIds = new Set<string>();
  for (const d of input.devices) {
    deviceIds.add(d.id);
    const list = byAgent.get(d.agent);
    if (list) list.push(d.id);
    else byAgent.set(d.agent, [d.id]);
  }
  const { username: gatewayUser, brokerHash: gatewayHash } = input.gateway;
  if (!isValidId(gatewayUser)) problems.push(`gateway user "${gatewayUser}": must be an id (letters, digits, '_', '.', '-'; max 64)`);
  if (input.credentials.some((r) => r.username === gatewayUser)) {
    problems.push(`gateway user "${gatewayUser}" is also a principal in the credentials file: pick another --gateway-user`);
  }
  if (byAgent.has(gatewayUser) || deviceIds.has(gatewayUser)) problems.push(`gateway user "${gatewayUser}" is an agent or device id in the ledger: pick another --gateway-user`);

  const grants: BrokerGrant[] = [];
  for (const r of input.credentials) {
    const base = r.brokerHash === undefined ? {} : { brokerHash: r.brokerHash };
    if (r.kind === 'agent') {
      const own = byAgent.get(r.username) ?? [];
      if (own.length === 0) warnings.push(`agent "${r.username}" speaks for no device in the ledger: it may only publish its own state`);
      grants.push({
        username: r.username,
        role: 'agent',
        publish: [topics.agentState(r.username), ...own.flatMap((id) => UPSTREAM.map((channel) => topics[channel](id)))],
        subscribe: own.map((id) => topics.cmd(id)),
        devices: own.length,
        ...base,
      });
    } else {
      if (!deviceIds.has(r.username)) warnings.push(`device "${r.username}" is not in the ledger: it can connect, but the gateway drops what it sends`);
      grants.push({
        username: r.username,
        role: 'device',
        publish: UPSTREAM.map((channel) => topics[channel](r.username)),
        subscribe: [topics.cmd(r.username)],
        ...base,
      });
    }
  }
  const principals = new Set(input.credentials.map((r) => r.username));
  for (const [agent, ids] of byAgent) {
    const viaDevices = ids.every((id) => principals.has(id));
    if (!principals.has(agent) && !viaDevices) warnings.push(`agent "${agent}" speaks for ${ids.length} ledger device(s) but has no credentials: npm run credentials -- add ${agent}`);
  }
  grants.push({
    username: gatewayUser,
    role: 'gateway',
    publish: [...GATEWAY_PUBLISH_FILTERS],
    subscribe: [GATEWAY_SUBSCRIBE_FILTER],
    ...(gatewayHash === undefined ? {} : { brokerHash: gatewayHash }),
  });
  return { grants, warnings, problems };
}

export function generateBrokerConfig(input: BrokerConfigInput): BrokerConfig {
  const { grants, warnings, problems } = brokerGrants(input);
  for (const g of grants) {
    if (g.brokerHash !== undefined && !parseBrokerHash(g.brokerHash)) problems.push(`${g.username}: brokerHash is not a pbkdf2-sha512 hash`);
  }
  const withHash = grants.filter((g) => g.brokerHash !== undefined);
  const iterations = new Set(withHash.map((g) => parseBrokerHash(g.brokerHash!)!.iterations));
  if (input.target === 'emqx' && iterations.size > 1) {
    // EMQX checks every password of an authenticator with one iteration count.
    problems.push(`EMQX needs one PBKDF2 iteration count for all principals; found ${[...iterations].sort((a, b) => a - b).join(', ')}: re-issue the odd ones with --replace`);
  }
  if (problems.length > 0) throw new BrokerConfigError(problems);
  const withoutBrokerHash = grants.filter((g) => g.brokerHash === undefined).map((g) => g.username);
  const header = headerLines(input);
  const files =
    input.target === 'mosquitto'
      ? mosquittoFiles(input, grants, header)
      : emqxFiles(input, grants, header, iterations.values().next().value ?? BROKER_PBKDF2.iterations);
  return { files, grants, withoutBrokerHash, warnings };
}

function headerLines(input: BrokerConfigInput): string[] {
  const from = input.sources ? ` from ${input.sources.ledger} and ${input.sources.credentials}` : '';
  return [`Generated by \`npm run broker-config -- --target ${input.target}\`${from}.`, 'Do not edit: re-run it after changing the ledger or the credentials (docs/operations.md).'];
}

function joinPath(dir: string, name: string): string {
  return `${dir.replace(/\/+$/, '')}/${name}`;
}

function principalComment(g: BrokerGrant): string {
  if (g.role === 'agent') return `agent ${g.username}: ${g.devices ?? 0} device(s)`;
  if (g.role === 'device') return `device ${g.username}`;
  return `gateway instances (${g.username})`;
}

// ---------------------------------------------------------------------------------------------
// Mosquitto 2: password_file ($7$ = PBKDF2-SHA512), acl_file, and the listeners.

/** `$7$<iterations>$<salt base64>$<key base64>`, mosquitto_passwd's format since 2.0. */
export function mosquittoPasswordHash(brokerHash: string): string {
  const h = parseBrokerHash(brokerHash);
  if (!h) throw new Error('not a pbkdf2-sha512 broker hash');
  return `$7$${h.iterations}$${Buffer.from(h.salt, 'ascii').toString('base64')}$${h.key.toString('base64')}`;
}

function mosquittoFiles(input: BrokerConfigInput, grants: BrokerGrant[], header: string[]): BrokerConfigFile[] {
  const comment = (lines: string[]) => lines.map((l) => `# ${l}`.trimEnd()).join('\n');
  const passwordLine = (g: BrokerGrant) => `${g.username}:${mosquittoPasswordHash(g.brokerHash!)}`;
  const clients = grants.filter((g) => g.role !== 'gateway' && g.brokerHash !== undefined);
  const gateways = grants.filter((g) => g.role === 'gateway' && g.brokerHash !== undefined);
  // Mosquitto's password file takes no comments; an empty file is valid (nobody logs in).
  const passwords = clients.map(passwordLine).join('\n') + (clients.length ? '\n' : '');
  const gatewayPasswords = gateways.map(passwordLine).join('\n') + (gateways.length ? '\n' : '');

  const acl: string[] = [comment([...header, 'Anything not granted below is refused; $SYS and gs/v1/cluster/# are granted to no agent or device.'])];
  for (const g of grants) {
    acl.push('', `# ${principalComment(g)}`, `user ${g.username}`);
    if (g.role === 'gateway') {
      // Mosquitto checks reads when it delivers, on the message's topic: a `$share/...` subscription
      // is covered by a read rule on the topic itself.
      for (const f of g.subscribe) acl.push(`topic read ${f}`);
      for (const f of g.publish) acl.push(`topic write ${f}`);
    } else {
      for (const t of g.publish) acl.push(`topic write ${t}`);
      for (const t of g.subscribe) acl.push(`topic read ${t}`);
    }
  }

  const dir = input.brokerDir;
  const bind = input.bindAddress ? ` ${input.bindAddress}` : '';
  const conf = [
    comment(header),
    comment([
      'Use as the broker\'s config (mosquitto -c) or merge into yours: per_listener_settings must come before any listener.',
      'Shared subscriptions ($share/...) are on by default. SIGHUP reloads the password and ACL files; connected clients stay.',
    ]),
    'per_listener_settings true',
    '',
    comment([
      'Small PUBLISHes go out at once: without TCP_NODELAY, Nagle holds them back while a gateway',
      'waits for them (up to 40 ms at a time with its delayed ACK), which caps a gateway far below its CPU.',
    ]),
    'set_tcp_nodelay true',
    comment([
      'A gateway instance that is away keeps its share of QoS1 messages queued until it returns or its',
      'session expires (gateway.mqtt.external.sessionExpirySec); Mosquitto\'s default cap (1000) would',
      'drop the rest. 1,000,000 is ~300 MB per absent instance; size it as share rate x longest outage.',
      '(0, "no cap", made Mosquitto 2.0.11 stop answering refused QoS1 publishes in our tests.)',
    ]),
    'max_queued_messages 1000000',
    '',
    comment([
      'Edge agents and devices. use_username_as_clientid: the client id becomes the username, so no',
      'principal can take over another one\'s session (the acl_file cannot bind client ids otherwise).',
      'For TLS, add certfile/keyfile here (and move the listener to 8883):',
      '  certfile /etc/mosquitto/certs/broker.crt',
      '  keyfile  /etc/mosquitto/certs/broker.key',
    ]),
    `listener ${input.port ?? 1883}${bind}`,
    'allow_anonymous false',
    'use_username_as_clientid true',
    `password_file ${joinPath(dir, 'passwords')}`,
    `acl_file ${joinPath(dir, 'acl')}`,
    '',
    comment([
      'GreenShield gateway instances only (their own password file): keep this port on the internal network.',
      'Each instance connects with its own client id (gateway.mqtt.external.clientId).',
    ]),
    `listener ${input.gatewayPort ?? 1884}${bind}`,
    'allow_anonymous false',
    `password_file ${joinPath(dir, 'gateway-passwords')}`,
    `acl_file ${joinPath(dir, 'acl')}`,
    '',
  ].join('\n');
  return [
    { name: 'mosquitto.conf', content: conf, secret: false },
    { name: 'passwords', content: passwords, secret: true },
    { name: 'gateway-passwords', content: gatewayPasswords, secret: true },
    { name: 'acl', content: `${acl.join('\n')}\n`, secret: false },
  ];
}

// ---------------------------------------------------------------------------------------------
// EMQX 5: built-in database authentication (bootstrap file, hashes) and file authorization.

export const EMQX_BOOTSTRAP_FILE = 'auth-built-in-db-bootstrap.csv';
export const EMQX_ACL_FILE = 'acl.conf';

/** An Erlang string literal (acl.conf is read with file:consult). */
function erlangString(text: string): string {
  return `"${text.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/** A client id is the username or `username:<anything>`, as in acl.ts's clientIdMatches. */
export function clientIdPattern(username: string): string {
  return `^${username.replace(/[.\\^$|?*+()[\]{}]/g, '\\$&')}(:.*)?$`;
}

function emqxWho(g: BrokerGrant): string {
  if (g.role === 'gateway') return `{username, ${erlangString(g.username)}}`;
  return `{'and', [{username, ${erlangString(g.username)}}, {clientid, {re, ${erlangString(clientIdPattern(g.username))}}}]}`;
}

function emqxTopics(g: BrokerGrant, list: string[]): string {
  // {eq, T}: the topic itself, never read as a filter; the gateway's entries are filters on purpose.
  const items = list.map((t) => (g.role === 'gateway' ? erlangString(t) : `{eq, ${erlangString(t)}}`));
  return `[${items.join(', ')}]`;
}

/** The authentication and authorization settings, as EMQX_* environment variables (containers). */
export function emqxEnvironment(brokerDir: string, iterations: number = BROKER_PBKDF2.iterations): Array<[string, string]> {
  return [
    ['EMQX_AUTHENTICATION__1__MECHANISM', 'password_based'],
    ['EMQX_AUTHENTICATION__1__BACKEND', 'built_in_database'],
    ['EMQX_AUTHENTICATION__1__USER_ID_TYPE', 'username'],
    ['EMQX_AUTHENTICATION__1__PASSWORD_HASH_ALGORITHM__NAME', 'pbkdf2'],
    ['EMQX_AUTHENTICATION__1__PASSWORD_HASH_ALGORITHM__MAC_FUN', 'sha512'],
    ['EMQX_AUTHENTICATION__1__PASSWORD_HASH_ALGORITHM__ITERATIONS', String(iterations)],
    ['EMQX_AUTHENTICATION__1__PASSWORD_HASH_ALGORITHM__DK_LENGTH', String(BROKER_PBKDF2.keyBytes)],
    ['EMQX_AUTHENTICATION__1__BOOTSTRAP_FILE', joinPath(brokerDir, EMQX_BOOTSTRAP_FILE)],
    ['EMQX_AUTHENTICATION__1__BOOTSTRAP_TYPE', 'hash'],
    ['EMQX_AUTHORIZATION__NO_MATCH', 'deny'],
    ['EMQX_AUTHORIZATION__DENY_ACTION', 'ignore'],
    ['EMQX_AUTHORIZATION__SOURCES__1__TYPE', 'file'],
    ['EMQX_AUTHORIZATION__SOURCES__1__ENABLE', 'true'],
    ['EMQX_AUTHORIZATION__SOURCES__1__PATH', joinPath(brokerDir, EMQX_ACL_FILE)],
  ];
}

function emqxFiles(input: BrokerConfigInput, grants: BrokerGrant[], header: string[], iterations: number): BrokerConfigFile[] {
  const rows = ['user_id,password_hash,salt,is_superuser'];
  for (const g of grants) {
    if (g.brokerHash === undefined) continue;
    const h = parseBrokerHash(g.brokerHash)!;
    // EMQX compares lowercase hex of PBKDF2(password, salt characters, iterations).
    rows.push(`${g.username},${h.key.toString('hex')},${h.salt},false`);
  }

  const acl: string[] = [...header.map((l) => `%% ${l}`), '%% Erlang terms, read by EMQX with file:consult; first match wins, then authorization.no_match.'];
  for (const g of grants) {
    acl.push('', `%% ${principalComment(g)}`);
    if (g.publish.length > 0) acl.push(`{allow, ${emqxWho(g)}, publish, ${emqxTopics(g, g.publish)}}.`);
    if (g.subscribe.length > 0) acl.push(`{allow, ${emqxWho(g)}, subscribe, ${emqxTopics(g, g.subscribe)}}.`);
  }
  acl.push('', '%% Everything else, gs/v1/cluster/# and $SYS/# for agents and devices included.', '{deny, all}.', '');

  const dir = input.brokerDir;
  const conf = [
    ...header.map((l) => `# ${l}`),
    '# Append to emqx.conf (or use emqx.env in a container). The bootstrap file is imported when the',
    '# authenticator starts and never overwrites an existing user: see docs/operations.md for re-issued secrets.',
    'authentication = [',
    '  {',
    '    mechanism = password_based',
    '    backend = built_in_database',
    '    user_id_type = username',
    `    password_hash_algorithm { name = pbkdf2, mac_fun = sha512, iterations = ${iterations}, dk_length = ${BROKER_PBKDF2.keyBytes} }`,
    `    bootstrap_file = ${JSON.stringify(joinPath(dir, EMQX_BOOTSTRAP_FILE))}`,
    '    bootstrap_type = hash',
    '  }',
    ']',
    'authorization {',
    '  no_match = deny',
    '  # ignore: a refused QoS1 publish gets PUBACK "not authorized" (0x87), a refused subscription SUBACK 0x87.',
    '  deny_action = ignore',
    '  sources = [',
    `    { type = file, enable = true, path = ${JSON.stringify(joinPath(dir, EMQX_ACL_FILE))} }`,
    '  ]',
    '}',
    '',
  ].join('\n');
  const env = [...header.map((l) => `# ${l}`), ...emqxEnvironment(dir, iterations).map(([k, v]) => `${k}=${v}`), ''].join('\n');
  return [
    { name: 'emqx.conf', content: conf, secret: false },
    { name: 'emqx.env', content: env, secret: false },
    { name: EMQX_BOOTSTRAP_FILE, content: `${rows.join('\n')}\n`, secret: true },
    { name: EMQX_ACL_FILE, content: acl.join('\n'), secret: false },
  ];
}
