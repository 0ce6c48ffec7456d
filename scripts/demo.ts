/**
 * The demo (`npm start`): the embedded broker and gateway, the simulated Chashan Zhuhai fleet,
 * the edge agent and the dashboard, all on this machine. InfluxDB is used if it answers at the
 * configured URL; otherwise, if `influxd` is installed, a local one is started with its data in
 * .data/; otherwise the demo runs without storage and says so here and on the page.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../config/load.js';
import { LedgerError, loadLedger } from '../config/ledger.js';
import { buildAgent } from '../edge-agent/src/agent.js';
import { buildCollectors } from '../edge-agent/src/collectors/index.js';
import { distanceM } from '../gateway/src/alerts/geo.js';
import { buildGateway } from '../gateway/src/gateway.js';
import { createLogger } from '../gateway/src/log.js';
import { startSiteFleet } from '../simulators/src/fleet/fleet.js';
import { INFLUXD, startInfluxd, type InfluxServer } from './lib/influxd.js';

const { values } = parseArgs({ options: { config: { type: 'string', short: 'c', default: 'config/demo.yaml' } } });
const say = (line: string) => process.stdout.write(`${line}\n`);

async function influxAnswers(url: string): Promise<boolean> {
  try {
    const res = await fetch(new URL('/ping', url), { signal: AbortSignal.timeout(1500) });
    return res.status === 204;
  } catch {
    return false;
  }
}

async function main(): Promise<void> {
  const { config, source } = loadConfig(values.config);
  const gw = config.gateway;
  if (!gw || !config.agent) throw new ConfigError(source, ['gateway, agent: the demo needs both sections']);
  const log = createLogger(config.log.level, { pretty: process.stdout.isTTY });
  const ledger = loadLedger(config.ledger.file);

  let localInflux: InfluxServer | undefined;
  if (gw.influx.enabled && !(await influxAnswers(gw.influx.url))) {
    const url = new URL(gw.influx.url);
    const local = ['127.0.0.1', 'localhost', '::1'].includes(url.hostname);
    if (local && existsSync(INFLUXD)) {
      const dataDir = join(dirname(resolve(gw.dataDir)), 'influxdb');
      say(`InfluxDB is not running at ${gw.influx.url}; starting ${INFLUXD} with its data in ${dataDir}`);
      localInflux = await startInfluxd({ dataDir, port: Number(url.port || 8086), detached: true }).catch((err: Error) => {
        say(`  could not start it (${err.message.split('\n')[0]}); continuing without storage`);
        return undefined;
      });
    } else {
      say(`⚠ InfluxDB is not reachable at ${gw.influx.url}: readings are shown live but NOT stored.`);
      say(`  Install it (sudo apt-get install influxdb) or point GS__GATEWAY__INFLUX__URL at a server.`);
    }
  }

  say(`Starting the simulated site (${ledger.length} devices)…`);
  const fleet = await startSiteFleet(ledger, {
    seed: config.simulators?.seed ?? 20250401,
    timeScale: config.simulators?.timeScale ?? 60,
    host: config.simulators?.host ?? '127.0.0.1',
    onProgress: (part, detail) => say(`  ✓ ${part.padEnd(12)} ${detail}`),
  });
  // The ledger with each simulated camera's ONVIF/RTSP address filled in, so live video and snapshots work.
  const gateway = buildGateway(config, { log, ledger: fleet.siteLedger() });
  await gateway.start();
  const agentConfig = { ...config.agent, brokerUrl: gateway.mqttUrl };
  // The agent reads the same ledger with each device's simulated address filled in.
  const { collectors, devices } = buildCollectors(agentConfig, fleet.siteLedger(), log);
  const agent = buildAgent({ config: agentConfig, log: log.child({ process: 'agent' }), collectors, deviceCount: devices.length });
  await agent.start();

  const counts = ledger.reduce<Record<string, number>>((n, d) => ({ ...n, [d.kind]: (n[d.kind] ?? 0) + 1 }), {});
  say('');
  say(`  GreenShield 绿盾 demo — ${config.site.name}`);
  say(`  Dashboard:  ${gateway.httpUrl}/`);
  say(`  API:        ${gateway.httpUrl}/api/devices   health: ${gateway.httpUrl}/health   metrics: ${gateway.httpUrl}/metrics`);
  say(`  Sign in:    admin / admin-demo · duty / duty-demo · viewer / viewer-demo · grid / grid-demo  (demo accounts)`);
  say(`  MQTT:       ${gateway.mqttUrl}  (anonymous, development mode)`);
  say(`  Storage:    ${gateway.storage.writer.status.state === 'ok' ? `InfluxDB ${gw.influx.url}, database ${gw.influx.database}` : `NOT STORING (${gateway.storage.writer.status.message ?? 'disabled'})`}`);
  say(`  Fleet:      ${counts.water_tank ?? 0} water tanks (Modbus TCP), ${counts.voice_pole ?? 0} voice poles (HTTP), ${counts.camera ?? 0} cameras (ONVIF + RTSP);`);
  say(`              cameras come online over the first minute as the agent connects to each.`);
  say(`  Fire drill:  in 60 s a fire is ignited in grid G01 (茶山社区第1网格, sign in as grid / grid-demo to get it on the phone view);`);
  say(`              cameras report it on their 4-minute cruise (played ×60), the gateway locates it and dispatches it;`);
  say(`              unacknowledged it escalates after 1 min, 2 min, 5 min. GS__SIMULATORS__TIME_SCALE changes the tank clock.`);
  say('  Stop with Ctrl-C.');
  say('');

  // A fire drill a minute in: cameras report smoke and fire with bearings, the gateway turns them
  // into one incident, locates it and dispatches it to G01's grid worker. The located position is
  // compared with the true ignition point here, where both are known.
  const ignition = { lat: 29.38671, lon: 105.86693 };
  let lastReported = '';
  gateway.alerts.incidents.onIncident((incident) => {
    const loc = incident.location;
    if (incident.category !== 'fire' || loc?.method !== 'triangulated') return;
    const line = `${incident.id} located from ${loc.cameras.length} cameras, ${Math.round(distanceM(loc, ignition))} m from the ignition point (±${Math.round(loc.uncertaintyM)} m), grid ${incident.grid}`;
    if (line !== lastReported) say(`  Fire drill:  ${(lastReported = line)}`);
  });
  const drill = { timer: setTimeout(() => fleet.igniteFire(ignition, { timeScale: 60 }), 60_000), stop() { clearTimeout(this.timer); } };

  let stopping = false;
  const shutdown = async () => {
    if (stopping) return;
    stopping = true;
    say('stopping…');
    await agent.stop();
    await gateway.stop();
    drill.stop();
    await fleet.close();
    await localInflux?.stop();
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown());
  process.on('SIGTERM', () => void shutdown());
}

main().catch((err: unknown) => {
  if (err instanceof ConfigError || err instanceof LedgerError) {
    process.stderr.write(`${err.message}\n`);
    process.exit(2);
  }
  const e = err as NodeJS.ErrnoException;
  if (e.code === 'EADDRINUSE') {
    process.stderr.write(`A port the demo needs is in use (${e.message}). Free it, or choose others, e.g.\n  GS__GATEWAY__HTTP__PORT=8081 GS__GATEWAY__MQTT__PORT=1884 npm start\n`);
    process.exit(1);
  }
  throw err;
});
