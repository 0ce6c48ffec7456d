/**
 * External broker configuration as pure generation: the grants are acl.ts's rules (checked topic
 * by topic against mayPublish / maySubscribe), the hashes are what Mosquitto and EMQX compute, and
 * older credentials files still load. (On a real Mosquitto: test/integration/mosquitto-acl.test.ts;
 * EMQX's acl.conf through Erlang's parser: test/integration/deploy-config.test.ts.)
 */
import { pbkdf2Sync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { mayPublish, maySubscribe, type DeviceDirectory, type Principal } from '../../gateway/src/broker/acl.js';
import {
  BrokerConfigError,
  brokerGrants,
  clientIdPattern,
  generateBrokerConfig,
  mosquittoPasswordHash,
  type BrokerConfigInput,
} from '../../gateway/src/broker/broker-config.js';
import { parseCredentials, type CredentialRecord } from '../../gateway/src/broker/credentials.js';
import { hashSecretForBroker, parseBrokerHash, verifyBrokerSecret } from '../../gateway/src/security/secrets.js';
import { DEVICE_CHANNELS, topics } from '../../protocol/topics.js';

const DEVICES = [
  { id: 'tank-a1', agent: 'agent-a' },
  { id: 'cam-a2', agent: 'agent-a' },
  { id: 'tank-b1', agent: 'agent-b' },
  { id: 'pole.b2', agent: 'agent-b' },
];
const directory: DeviceDirectory = { get: (id) => DEVICES.find((d) => d.id === id), views: () => DEVICES };
const SECRET = 'correct-horse-battery-staple';
const brokerHash = await hashSecretForBroker(SECRET);
const principal = (username: string, kind: 'agent' | 'device', withBrokerHash = true): CredentialRecord => ({
  username,
  kind,
  hash: 'scrypt$16384$8$1$c2FsdHNhbHRzYWx0c2FsdA==$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U=',
  ...(withBrokerHash ? { brokerHash } : {}),
});
const CREDENTIALS = [principal('agent-a', 'agent'), principal('agent-b', 'agent'), principal('tank-b1', 'device'), principal('agent-old', 'agent', false)];
const input = (over: Partial<BrokerConfigInput> = {}): BrokerConfigInput => ({
  target: 'mosquitto',
  devices: DEVICES,
  credentials: CREDENTIALS,
  gateway: { username: 'gateway', brokerHash },
  brokerDir: '/etc/mosquitto/greenshield',
  ...over,
});
const file = (config: ReturnType<typeof generateBrokerConfig>, name: string) => config.files.find((f) => f.name === name)?.content ?? '';

describe('grants', () => {
  it('are exactly what acl.ts allows an agent or device, topic by topic', () => {
    const { grants } = brokerGrants(input());
    const ids = [...DEVICES.map((d) => d.id), 'not-in-ledger', 'agent-a'];
    const universe = [
      ...ids.flatMap((id) => DEVICE_CHANNELS.map((c) => topics[c](id))),
      ...['agent-a', 'agent-b', 'tank-b1'].map((id) => topics.agentState(id)),
      'gs/v1/cluster/x/devices',
      '$SYS/broker/uptime',
      'gs/v1/devices/+/telemetry',
      'gs/v1/#',
    ];
    for (const g of grants.filter((x) => x.role !== 'gateway')) {
      const p: Principal = { kind: g.role as 'agent' | 'device', username: g.username, hash: 'h' };
      for (const t of universe) {
        expect(g.publish.includes(t), `${g.username} publish ${t}`).toBe(mayPublish(p, t, directory));
        expect(g.subscribe.includes(t), `${g.username} subscribe ${t}`).toBe(maySubscribe(p, t, directory));
      }
      for (const t of [...g.publish, ...g.subscribe]) expect(t, 'no wildcards for agents and devices').not.toMatch(/[+#]/);
    }
    const gateway = grants.find((g) => g.role === 'gateway');
    expect(gateway).toMatchObject({ username: 'gateway', subscribe: ['gs/v1/#'], publish: ['gs/v1/devices/+/cmd', 'gs/v1/cluster/#'] });
  });

  it('names what needs a look: unknown devices, agents without devices or credentials', () => {
    const { warnings } = brokerGrants(input({ credentials: [principal('agent-a', 'agent'), principal('agent-x', 'agent'), principal('tank-zz', 'device')] }));
    expect(warnings).toEqual([
      'agent "agent-x" speaks for no device in the ledger: it may only publish its own state',
      'device "tank-zz" is not in the ledger: it can connect, but the gateway drops what it sends',
      'agent "agent-b" speaks for 2 ledger device(s) but has no credentials: npm run credentials -- add agent-b',
    ]);
  });

  it('refuses a gateway user that is also an agent, a device or a principal', () => {
    for (const username of ['agent-a', 'tank-a1', 'agent-old']) {
      expect(() => generateBrokerConfig(input({ gateway: { username } })), username).toThrow(BrokerConfigError);
    }
    expect(() => generateBrokerConfig(input({ gateway: { username: 'bad/user' } }))).toThrow(/gateway user "bad\/user": must be an id/);
  });
});

describe('broker hashes', () => {
  it('are PBKDF2-SHA512 of the secret with a 12-character salt, bounded when parsed', async () => {
    const h = parseBrokerHash(brokerHash);
    expect(h).toMatchObject({ iterations: 4096 });
    expect(h?.salt).toMatch(/^[A-Za-z0-9_-]{12}$/);
    expect(h?.key).toEqual(pbkdf2Sync(SECRET, Buffer.from(h!.salt, 'ascii'), 4096, 64, 'sha512'));
    expect(await verifyBrokerSecret(Buffer.from(SECRET), brokerHash)).toBe(true);
    expect(await verifyBrokerSecret(Buffer.from(`${SECRET}x`), brokerHash)).toBe(false);
    expect(await hashSecretForBroker(SECRET)).not.toBe(brokerHash);
    const [, , salt, key] = brokerHash.split('$');
    for (const bad of [`pbkdf2-sha512$999$${salt}$${key}`, `pbkdf2-sha512$2000000$${salt}$${key}`, `pbkdf2-sha512$4096$short$${key}`, `pbkdf2-sha512$4096$${salt}$AAAA`, `pbkdf2-sha256$4096$${salt}$${key}`, 'scrypt$16384$8$1$a$b']) {
      expect(parseBrokerHash(bad), bad).toBeUndefined();
    }
  });

  it('keep older credentials files loading, and reject a malformed brokerHash', () => {
    const old = parseCredentials({ principals: [{ username: 'agent-a', kind: 'agent', hash: principal('x', 'agent').hash }] });
    expect(old.problems).toEqual([]);
    expect(old.records[0]).not.toHaveProperty('brokerHash');
    const bad = parseCredentials({ principals: [{ ...principal('agent-a', 'agent'), brokerHash: '$7$101$abc$def' }] });
    expect(bad.problems).toEqual(['principals[0].brokerHash: must be a pbkdf2-sha512$iterations$salt$hash string (write it with `npm run credentials`)']);
  });
});

describe('mosquitto files', () => {
  const config = generateBrokerConfig(input({ port: 11883, gatewayPort: 11884, bindAddress: '127.0.0.1' }));

  it("write mosquitto_passwd's $7$ lines that check the same secret", () => {
    const line = file(config, 'passwords').split('\n')[0]!;
    // mosquitto_passwd 2.0 writes $7$<iterations>$<12-byte salt, base64>$<64-byte key, base64>.
    expect(line).toMatch(/^agent-a:\$7\$4096\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==$/);
    const [, , iterations, salt, key] = line.slice('agent-a:'.length).split('$') as [string, string, string, string, string];
    expect(pbkdf2Sync(SECRET, Buffer.from(salt, 'base64'), Number(iterations), 64, 'sha512').toString('base64')).toBe(key);
    expect(mosquittoPasswordHash(brokerHash)).toBe(line.slice('agent-a:'.length));
  });

  it('keep the gateway on its own listener and password file, and list who cannot log in', () => {
    expect(file(config, 'passwords').split('\n').filter(Boolean).map((l) => l.split(':')[0])).toEqual(['agent-a', 'agent-b', 'tank-b1']);
    expect(file(config, 'gateway-passwords').split('\n').filter(Boolean).map((l) => l.split(':')[0])).toEqual(['gateway']);
    expect(config.withoutBrokerHash).toEqual(['agent-old']);
    const conf = file(config, 'mosquitto.conf');
    expect(conf).toContain('listener 11883 127.0.0.1\nallow_anonymous false\nuse_username_as_clientid true\npassword_file /etc/mosquitto/greenshield/passwords\nacl_file /etc/mosquitto/greenshield/acl\n');
    expect(conf).toContain('listener 11884 127.0.0.1\nallow_anonymous false\npassword_file /etc/mosquitto/greenshield/gateway-passwords\n');
    expect(config.files.filter((f) => f.secret).map((f) => f.name)).toEqual(['passwords', 'gateway-passwords']);
    // Global settings, before the first listener: no Nagle delay on PUBLISHes to the gateways,
    // and an absent instance's queued share is not cut at Mosquitto's default of 1000.
    const globals = conf.split('\nlistener ')[0]!.split('\n').filter((l) => l && !l.startsWith('#'));
    expect(globals).toEqual(['per_listener_settings true', 'set_tcp_nodelay true', 'max_queued_messages 1000000']);
  });

  it('write exact topics per principal in the acl file', () => {
    const acl = file(config, 'acl');
    const section = (user: string) => acl.split(`\nuser ${user}\n`)[1]!.split('\n\n')[0]!.split('\n').filter(Boolean);
    expect(section('agent-b')).toEqual([
      'topic write gs/v1/agents/agent-b/state',
      ...['tank-b1', 'pole.b2'].flatMap((id) => ['telemetry', 'event', 'state', 'ack'].map((c) => `topic write gs/v1/devices/${id}/${c}`)),
      'topic read gs/v1/devices/tank-b1/cmd',
      'topic read gs/v1/devices/pole.b2/cmd',
    ]);
    expect(section('gateway')).toEqual(['topic read gs/v1/#', 'topic write gs/v1/devices/+/cmd', 'topic write gs/v1/cluster/#']);
  });
});

describe('EMQX files', () => {
  const config = generateBrokerConfig(input({ target: 'emqx', brokerDir: '/opt/emqx/etc/greenshield' }));

  it('write the bootstrap CSV EMQX imports with bootstrap_type = hash (lowercase hex, salt as stored)', () => {
    const [header, ...rows] = file(config, 'auth-built-in-db-bootstrap.csv').trim().split('\n');
    expect(header).toBe('user_id,password_hash,salt,is_superuser');
    expect(rows.map((r) => r.split(',')[0])).toEqual(['agent-a', 'agent-b', 'tank-b1', 'gateway']);
    const [, hex, salt, superuser] = rows[0]!.split(',');
    expect(superuser).toBe('false');
    expect(hex).toBe(pbkdf2Sync(SECRET, Buffer.from(salt!, 'ascii'), 4096, 64, 'sha512').toString('hex'));
  });

  it('write acl.conf rules that bind client ids, use {eq, Topic} for agents and deny the rest', () => {
    const acl = file(config, 'acl.conf');
    expect(acl).toContain(
      `{allow, {'and', [{username, "agent-b"}, {clientid, {re, "^agent-b(:.*)?$"}}]}, subscribe, [{eq, "gs/v1/devices/tank-b1/cmd"}, {eq, "gs/v1/devices/pole.b2/cmd"}]}.`,
    );
    expect(acl).toContain('{allow, {username, "gateway"}, subscribe, ["gs/v1/#"]}.');
    expect(acl).toContain('{allow, {username, "gateway"}, publish, ["gs/v1/devices/+/cmd", "gs/v1/cluster/#"]}.');
    expect(acl.trim().endsWith('{deny, all}.')).toBe(true);
    expect(clientIdPattern('pole.b2')).toBe('^pole\\.b2(:.*)?$');
    const re = new RegExp(clientIdPattern('pole.b2'));
    expect(['pole.b2', 'pole.b2:uplink'].every((id) => re.test(id))).toBe(true);
    expect(['polexb2', 'pole.b22', 'x-pole.b2'].some((id) => re.test(id))).toBe(false);
  });

  it('configure PBKDF2 with the hashes iteration count, and refuse mixed counts', async () => {
    expect(file(config, 'emqx.conf')).toContain('password_hash_algorithm { name = pbkdf2, mac_fun = sha512, iterations = 4096, dk_length = 64 }');
    expect(file(config, 'emqx.conf')).toContain('bootstrap_file = "/opt/emqx/etc/greenshield/auth-built-in-db-bootstrap.csv"');
    expect(file(config, 'emqx.env')).toContain('EMQX_AUTHENTICATION__1__PASSWORD_HASH_ALGORITHM__ITERATIONS=4096\n');
    const odd = { ...principal('agent-b', 'agent'), brokerHash: await hashSecretForBroker(SECRET, 10_000) };
    expect(() => generateBrokerConfig(input({ target: 'emqx', credentials: [principal('agent-a', 'agent'), odd] }))).toThrow(/one PBKDF2 iteration count for all principals; found 4096, 10000/);
    // Mosquitto keeps the count per line: mixed counts are fine there.
    expect(() => generateBrokerConfig(input({ credentials: [principal('agent-a', 'agent'), odd] }))).not.toThrow();
  });
});
