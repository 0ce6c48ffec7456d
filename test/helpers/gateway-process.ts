import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { REPO } from './gateway.js';

export interface GatewayProcess {
  child: ChildProcess;
  mqttUrl: string;
  httpUrl: string;
  kill(signal: NodeJS.Signals): Promise<void>;
}

/** Starts test/helpers/gateway-child.ts with a config document; resolves when it is serving. */
export async function spawnGateway(configDoc: unknown): Promise<GatewayProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(REPO, 'test/helpers/gateway-child.ts'), JSON.stringify(configDoc)], {
    cwd: REPO,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout! });
  const ready = await new Promise<{ mqttPort: number | null; httpPort: number; mqttUrl: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('gateway child did not start in 30 s')), 30_000);
    child.once('exit', (code) => reject(new Error(`gateway child exited with ${code}`)));
    lines.on('line', (line) => {
      if (!line.startsWith('{"mqttPort"')) return;
      clearTimeout(timer);
      resolve(JSON.parse(line) as { mqttPort: number | null; httpPort: number; mqttUrl: string });
    });
  });
  return {
    child,
    // The embedded broker's port, or the external broker the child is a client of.
    mqttUrl: ready.mqttPort === null ? ready.mqttUrl : `mqtt://127.0.0.1:${ready.mqttPort}`,
    httpUrl: `http://127.0.0.1:${ready.httpPort}`,
    async kill(signal) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill(signal);
      await exited;
    },
  };
}
