import { createServer, type AddressInfo } from 'node:net';

/**
 * A port that was free a moment ago, for servers that cannot listen on port 0 and report back
 * (influxd). Our own servers always listen on port 0 instead.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}
