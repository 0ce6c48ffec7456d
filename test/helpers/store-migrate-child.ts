/**
 * A process that migrates a PostgreSQL operational store when told to, for the concurrent-start
 * test (store-postgres.test.ts): argv[2] is the connection URL (password included). It connects
 * first and prints `ready`; on a `go` line on stdin it runs the migrations and prints
 * `{"from":…,"to":…}` or `{"error":"…"}`, then exits.
 */
import { createInterface } from 'node:readline';
import { PgBridge } from '../../gateway/src/store/pg-bridge.js';
import { migratePostgres } from '../../gateway/src/store/postgres-migrations.js';

const connectionString = process.argv[2]!;
const bridge = new PgBridge({ connectionString, displayUrl: 'test', callTimeoutMs: 10_000, connectTimeoutMs: 10_000, applicationName: 'gs-migrate-child' });
if (!bridge.ping()) throw new Error('no connection');
process.stdout.write('ready\n');
const lines = createInterface({ input: process.stdin });
lines.once('line', () => {
  let result: unknown;
  try {
    result = migratePostgres(bridge, 30_000);
  } catch (err) {
    result = { error: (err as Error).message };
  }
  bridge.close();
  process.stdout.write(`${JSON.stringify(result)}\n`);
  lines.close();
});
