/**
 * Sign-in, roles and the audit log over the real HTTP API: who may see and do what.
 */
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, testPassword, TEST_USERS, type TestGateway } from '../helpers/gateway.js';

let gateway: TestGateway;
beforeAll(async () => {
  gateway = await startTestGateway();
});
afterAll(async () => {
  await gateway?.close();
});

const login = (username: string, password: string) =>
  fetch(`${gateway.httpUrl}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, password }) });

function wsStatus(token?: string): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${gateway.httpUrl.replace('http', 'ws')}/ws`, token ? { headers: { authorization: `Bearer ${token}` } } : {});
    ws.once('open', () => {
      ws.close();
      resolve(101);
    });
    ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    ws.once('error', () => undefined);
  });
}

describe('sign-in', () => {
  it('gives a session (HttpOnly cookie and bearer token) for the right password only', async () => {
    const ok = await login(TEST_USERS.viewer.username, testPassword('viewer'));
    expect(ok.status).toBe(200);
    const body = (await ok.json()) as { user: { role: string; passwordHash?: string }; token: string; expiresAt: number };
    expect(body.user.role).toBe('viewer');
    expect(body.user).not.toHaveProperty('passwordHash');
    expect(body.expiresAt - Date.now()).toBeGreaterThan(11 * 3600_000);
    const cookie = ok.headers.get('set-cookie') ?? '';
    expect(cookie).toMatch(/^gs_session=[^;]+; Path=\/; HttpOnly; SameSite=Strict; Max-Age=\d+/);
    // The cookie alone is a session.
    const me = await fetch(`${gateway.httpUrl}/api/auth/me`, { headers: { cookie: cookie.split(';')[0]! } });
    expect(((await me.json()) as { user: { username: string } }).user.username).toBe(TEST_USERS.viewer.username);

    for (const [u, p] of [[TEST_USERS.viewer.username, 'wrong-password'], ['nobody', 'whatever-1']] as const) {
      const bad = await login(u, p);
      expect(bad.status).toBe(401);
      expect(await bad.json()).toEqual({ code: 'BAD_LOGIN', message: 'wrong username or password' });
    }
  });

  it('slows guessing: after 10 failures for a user, even the right password waits', async () => {
    for (let i = 0; i < 10; i++) await login(TEST_USERS.grid_worker.username, `guess-${i}`);
    const res = await login(TEST_USERS.grid_worker.username, testPassword('grid_worker'));
    expect(res.status).toBe(429);
    expect(((await res.json()) as { code: string }).code).toBe('TOO_MANY_ATTEMPTS');
  });

  it('logout ends the session', async () => {
    const { token } = (await (await login(TEST_USERS.duty_officer.username, testPassword('duty_officer'))).json()) as { token: string };
    const auth = { authorization: `Bearer ${token}` };
    expect((await fetch(`${gateway.httpUrl}/api/auth/me`, { headers: auth })).status).toBe(200);
    expect((await fetch(`${gateway.httpUrl}/api/auth/logout`, { method: 'POST', headers: auth })).status).toBe(204);
    expect((await fetch(`${gateway.httpUrl}/api/auth/me`, { headers: auth })).status).toBe(401);
  });
});

describe('roles', () => {
  it('refuses the API and the live WebSocket without a session', async () => {
    const res = await fetch(`${gateway.httpUrl}/api/devices`);
    expect(res.status).toBe(401);
    expect(((await res.json()) as { code: string }).code).toBe('UNAUTHENTICATED');
    expect(await wsStatus()).toBe(401);
    expect(await wsStatus(await gateway.tokenFor('viewer'))).toBe(101);
    // Health and metrics stay open for load balancers and Prometheus.
    expect((await fetch(`${gateway.httpUrl}/health`)).status).toBe(200);
  });

  it('lets only an admin manage users, and every change is audited with its operator', async () => {
    expect((await gateway.api('/api/users', { as: 'duty_officer' })).status).toBe(403);
    const created = await gateway.api('/api/users', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'li-wei', displayName: '李伟', role: 'grid_worker', grids: ['G07'], password: 'a-long-password' }),
    });
    expect(created.status).toBe(201);
    const { user } = (await created.json()) as { user: { id: number; grids: string[] } };
    expect(user.grids).toEqual(['G07']);
    const dup = await gateway.api('/api/users', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'li-wei', displayName: 'x', role: 'viewer', password: 'a-long-password' }) });
    expect(dup.status).toBe(409);

    const session = (await (await login('li-wei', 'a-long-password')).json()) as { token: string };
    const disable = await gateway.api(`/api/users/${user.id}`, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ disabled: true }) });
    expect(disable.status).toBe(200);
    // Disabling ends the user's sessions at once, and they cannot sign in again.
    expect((await fetch(`${gateway.httpUrl}/api/auth/me`, { headers: { authorization: `Bearer ${session.token}` } })).status).toBe(401);
    expect((await login('li-wei', 'a-long-password')).status).toBe(401);

    expect((await gateway.api('/api/audit', { as: 'viewer' })).status).toBe(403);
    const audit = (await (await gateway.api('/api/audit?limit=50', { as: 'duty_officer' })).json()) as { entries: Array<{ actor: string; action: string; subject: string | null; detail: Record<string, unknown> }> };
    expect(audit.entries).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ actor: TEST_USERS.admin.username, action: 'user.create', subject: 'li-wei' }),
        expect.objectContaining({ actor: TEST_USERS.admin.username, action: 'user.update', subject: 'li-wei', detail: { disabled: true } }),
        expect.objectContaining({ actor: 'li-wei', action: 'auth.login' }),
        expect.objectContaining({ actor: 'nobody', action: 'auth.login_failed' }),
      ]),
    );
  });

  it('answers bad user input with 400 and { code, message }', async () => {
    const res = await gateway.api('/api/users', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'x', displayName: '', role: 'king', password: 'short' }) });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { code: string; message: string };
    expect(body.code).toBe('BAD_REQUEST');
    expect(body.message.length).toBeGreaterThan(5);
  });
});

describe('OpenAPI', () => {
  it('describes the API from the routes’ own schemas', async () => {
    const res = await fetch(`${gateway.httpUrl}/api/openapi.json`);
    expect(res.status).toBe(200);
    const doc = (await res.json()) as { openapi: string; paths: Record<string, Record<string, { parameters?: Array<{ name: string }> }>> };
    expect(doc.openapi).toBe('3.0.3');
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/api/auth/login', '/api/devices', '/api/devices/{id}/series', '/api/users/{id}', '/api/audit']));
    expect(doc.paths['/api/devices/{id}/series']?.get?.parameters?.map((p) => p.name)).toEqual(expect.arrayContaining(['field', 'from', 'to', 'id']));
  });
});
