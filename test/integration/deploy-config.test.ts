/**
 * The deployable stack, as far as it can be checked without a Docker engine or EMQX: both compose
 * files validate with `docker-compose config`; the config every gateway and agent service gets
 * (its config file plus its GS__ environment) passes the real config schema; EMQX's environment
 * in the compose file is what the generator writes; and the generated acl.conf for the shipped
 * ledger is read by Erlang's file:consult, as EMQX reads it, with every rule of a shape EMQX
 * compiles and every client-id pattern compiled and tried by Erlang's `re`.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { loadConfig } from '../../config/load.js';
import { emqxEnvironment } from '../../gateway/src/broker/broker-config.js';
import { generateSecret, hashSecret, hashSecretForBroker, writeCredentialsFile } from '../../gateway/src/broker/credentials.js';
import { REPO } from '../helpers/gateway.js';

const run = promisify(execFile);
const MISSING = (tool: string, pkg: string) => `${tool} is missing: run \`bash scripts/ensure-system-deps.sh\` (installs Debian's ${pkg})`;

async function tool(cmd: string, args: string[], pkg: string, opts: { cwd?: string } = {}): Promise<{ stdout: string; stderr: string }> {
  try {
    return await run(cmd, args, { cwd: opts.cwd ?? REPO, maxBuffer: 64 * 1024 * 1024 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(MISSING(cmd, pkg));
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${e.stderr || e.stdout || e.message}`);
  }
}

interface ComposeService {
  command?: string[];
  environment?: Record<string, string>;
  depends_on?: Record<string, { condition: string }>;
}
const composeFiles = ['docker-compose.yml', 'deploy/single-site/docker-compose.yml'];
const resolved = new Map<string, { services: Record<string, ComposeService> }>();

const dir = mkdtempSync(join(tmpdir(), 'gs-deploy-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('docker-compose files', () => {
  it.each(composeFiles)('%s validates with docker-compose config', async (file) => {
    await tool('docker-compose', ['-f', file, 'config', '-q'], 'docker-compose');
    const { stdout } = await tool('docker-compose', ['-f', file, 'config'], 'docker-compose');
    resolved.set(file, parseYaml(stdout) as { services: Record<string, ComposeService> });
  });

  it('has the scale-out services, with health checks and start order', () => {
    const doc = resolved.get('docker-compose.yml') as unknown as {
      services: Record<string, { healthcheck?: unknown; depends_on?: Record<string, { condition: string }> }>;
      volumes: Record<string, unknown>;
    };
    expect(Object.keys(doc.services).sort()).toEqual(['broker-config', 'edge-agent', 'emqx', 'gateway-1', 'gateway-2', 'influxdb', 'postgres', 'simulators']);
    for (const name of ['emqx', 'influxdb', 'postgres', 'gateway-1', 'gateway-2', 'simulators']) expect(doc.services[name]?.healthcheck, name).toBeDefined();
    expect(doc.services.emqx?.depends_on).toEqual({ 'broker-config': { condition: 'service_completed_successfully' } });
    for (const g of ['gateway-1', 'gateway-2']) expect(doc.services[g]?.depends_on).toMatchObject({ emqx: { condition: 'service_healthy' }, influxdb: { condition: 'service_healthy' } });
    expect(doc.services['edge-agent']?.depends_on).toMatchObject({ emqx: { condition: 'service_healthy' }, simulators: { condition: 'service_healthy' } });
    expect(Object.keys(doc.volumes)).toEqual(expect.arrayContaining(['emqx-data', 'influxdb2-data', 'postgres-data', 'gateway-1-data', 'gateway-2-data']));
  });

  it("gives EMQX the generator's authentication and authorization settings", () => {
    const emqx = resolved.get('docker-compose.yml')?.services.emqx;
    expect(emqx?.environment).toEqual(Object.fromEntries(emqxEnvironment('/opt/emqx/etc/greenshield')));
  });

  it('gives every gateway and agent service a config the schema accepts', () => {
    let checked = 0;
    for (const [file, doc] of resolved) {
      for (const [name, service] of Object.entries(doc.services)) {
        const command = service.command?.join(' ') ?? '';
        const kind = command.includes('gateway/src/main.ts') ? 'gateway' : command.includes('edge-agent/src/main.ts') ? 'agent' : undefined;
        if (!kind) continue;
        const configFile = /--config (\S+)/.exec(command)?.[1];
        expect(configFile, `${file} ${name}: --config`).toBeDefined();
        // Values the services read from their secrets at start (sh -c '... $(cat /run/secrets/...)').
        const fromSecrets = { GS__GATEWAY__INFLUX__TOKEN: command.includes('GS__GATEWAY__INFLUX__TOKEN') ? 'token' : undefined, GS__AGENT__PASSWORD: command.includes('GS__AGENT__PASSWORD') ? 'secret' : undefined };
        const env = { ...service.environment, ...Object.fromEntries(Object.entries(fromSecrets).filter(([, v]) => v !== undefined)) };
        const { config, envOverrides } = loadConfig(join(REPO, configFile!), env);
        expect(envOverrides.length, `${file} ${name}`).toBe(Object.keys(env).filter((k) => k.startsWith('GS__')).length);
        if (kind === 'gateway' && file === 'docker-compose.yml') {
          expect(config.gateway?.mqtt).toMatchObject({ mode: 'external', external: { url: 'mqtt://emqx:1883', username: 'gateway', shareGroup: 'greenshield', clientId: name } });
          expect(config.gateway?.influx).toMatchObject({ api: 'v2', org: 'greenshield', bucket: 'greenshield', token: 'token' });
          // One operational store for both instances: the compose file's PostgreSQL.
          expect(config.gateway?.store).toMatchObject({
            kind: 'postgres',
            postgres: { url: 'postgres://greenshield@postgres:5432/greenshield', passwordFile: '/run/secrets/postgres-password', applicationName: name },
          });
          expect(service.depends_on).toMatchObject({ postgres: { condition: 'service_healthy' } });
        }
        if (kind === 'agent') expect(config.agent).toMatchObject({ id: 'agent-chashan', brokerUrl: 'mqtt://emqx:1883', username: 'agent-chashan' });
        checked++;
      }
    }
    expect(checked).toBe(4); // gateway-1, gateway-2, edge-agent; the single-site gateway
  });
});

describe('generated EMQX acl.conf for the shipped ledger', () => {
  it('is read by Erlang file:consult and has only rules EMQX compiles', async () => {
    const credentials = join(dir, 'credentials.yaml');
    const secret = generateSecret();
    writeCredentialsFile(credentials, [
      { username: 'agent-chashan', kind: 'agent', hash: await hashSecret(secret), brokerHash: await hashSecretForBroker(secret) },
      { username: 'tank-001', kind: 'device', hash: await hashSecret(secret), brokerHash: await hashSecretForBroker(secret) },
      { username: 'agent.with.dots', kind: 'agent', hash: await hashSecret(secret) },
    ]);
    const out = join(dir, 'emqx');
    const cli = join(REPO, 'gateway/src/broker/broker-config-cli.ts');
    const { stderr } = await tool(process.execPath, ['--import', 'tsx', cli, '--target', 'emqx', '--ledger', 'config/ledger/chashan-zhuhai.csv', '--credentials', credentials, '--out', out, '--gateway-password-file', join(dir, 'gateway.secret')], 'node');
    expect(stderr).toMatch(/1 principal\(s\) have no broker hash.*\n {2}agent\.with\.dots\nissue each a new secret, then run this again: {2}npm run credentials -- add <username> --replace/);

    // Describes each rule the way emqx_authz_rule:compile/1 would accept it, or crashes on one it would not.
    const script = join(dir, 'check-acl.escript');
    writeFileSync(
      script,
      String.raw`#!/usr/bin/env escript
main([Path]) ->
    {ok, Terms} = file:consult(Path),
    lists:foreach(fun(T) -> io:format("~s~n", [rule(T)]) end, Terms).

rule({deny, all}) -> "deny all";
rule({Perm, Who, Action, Topics}) when (Perm =:= allow orelse Perm =:= deny),
        (Action =:= publish orelse Action =:= subscribe orelse Action =:= all), is_list(Topics) ->
    N = length([ok || T <- Topics, topic(T)]),
    io_lib:format("~s ~s ~s ~b ~s", [Perm, who(Who), Action, N, first(Topics)]).

topic({eq, T}) -> io_lib:printable_unicode_list(T) orelse error({bad_topic, T});
topic(T) -> io_lib:printable_unicode_list(T) orelse error({bad_topic, T}).

first([{eq, T} | _]) -> "eq:" ++ T;
first([T | _]) -> T.

who({username, U}) -> U;
who({'and', [{username, U}, {clientid, {re, Re}}]}) ->
    {ok, MP} = re:compile(Re),
    match = re:run(U, MP, [{capture, none}]),
    match = re:run(U ++ ":uplink-2", MP, [{capture, none}]),
    nomatch = re:run(U ++ "x", MP, [{capture, none}]),
    nomatch = re:run("x" ++ U, MP, [{capture, none}]),
    Undotted = [case C of $. -> $x; _ -> C end || C <- U],
    (Undotted =:= U) orelse (nomatch =:= re:run(Undotted, MP, [{capture, none}])) orelse error({dot_not_escaped, Re}),
    U ++ "(client-id-bound)".
`,
    );
    const { stdout } = await tool('escript', [script, join(out, 'acl.conf')], 'erlang-base');
    expect(stdout.trim().split('\n')).toEqual([
      'allow agent-chashan(client-id-bound) publish 7153 eq:gs/v1/agents/agent-chashan/state',
      'allow agent-chashan(client-id-bound) subscribe 1788 eq:gs/v1/devices/tank-001/cmd',
      'allow tank-001(client-id-bound) publish 4 eq:gs/v1/devices/tank-001/telemetry',
      'allow tank-001(client-id-bound) subscribe 1 eq:gs/v1/devices/tank-001/cmd',
      'allow agent.with.dots(client-id-bound) publish 1 eq:gs/v1/agents/agent.with.dots/state',
      'allow gateway publish 2 gs/v1/devices/+/cmd',
      'allow gateway subscribe 1 gs/v1/#',
      'deny all',
    ]);
    const csv = readFileSync(join(out, 'auth-built-in-db-bootstrap.csv'), 'utf8').trim().split('\n');
    expect(csv.map((l) => l.split(',')[0])).toEqual(['user_id', 'agent-chashan', 'tank-001', 'gateway']);
  });
});
