/**
 * For tests of several gateway processes on one PostgreSQL (test/integration/cluster-*.test.ts):
 * who leads, signing in, and a live dashboard socket that records every message it gets.
 */
import WebSocket from 'ws';
import type { ServerMessage } from '../../protocol/ws.js';
import type { GatewayProcess } from './gateway-process.js';
import { waitFor } from './gateway.js';

/** Whether this instance says on /metrics that it leads. */
export async function isLeader(p: GatewayProcess): Promise<boolean> {
  const text = await (await fetch(`${p.httpUrl}/metrics`)).text();
  return /^gs_cluster_leader 1$/m.test(text);
}

/** Waits until one of two instances leads; which one and the other. */
export async function leaderOf<P extends GatewayProcess>(a: P, b: P): Promise<{ leader: P; follower: P }> {
  const leader = await waitFor(async () => ((await isLeader(a)) ? a : (await isLeader(b)) ? b : undefined), { timeoutMs: 10_000, what: 'a leader' });
  return { leader, follower: leader === a ? b : a };
}

/** A session token for a configured user (fails the test on a refused sign-in). */
export async function signIn(p: GatewayProcess, username: string, password: string): Promise<string> {
  const res = await fetch(`${p.httpUrl}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, password }) });
  if (res.status !== 200) throw new Error(`sign-in of ${username} on ${p.httpUrl}: HTTP ${res.status}`);
  return ((await res.json()) as { token: string }).token;
}

/**
 * A signed-in dashboard on one instance: every message it was sent, from the first on. Resolves
 * once a message of `ready` type (a snapshot) arrived; the socket goes into `sockets` for the
 * test's cleanup.
 */
export async function liveDashboard(p: GatewayProcess, token: string, ready: ServerMessage['type'], sockets: WebSocket[]): Promise<ServerMessage[]> {
  const messages: ServerMessage[] = [];
  const ws = new WebSocket(`${p.httpUrl.replace('http', 'ws')}/ws`, { headers: { authorization: `Bearer ${token}` } });
  sockets.push(ws);
  ws.on('message', (data) => messages.push(JSON.parse(String(data)) as ServerMessage));
  ws.on('error', () => undefined);
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  await waitFor(() => messages.some((m) => m.type === ready), { what: `${ready} on ${p.httpUrl}` });
  return messages;
}
