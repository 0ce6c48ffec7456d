/**
 * Signing in to the dashboard in a real Chromium: the sign-in screen and its errors, what each
 * role is shown, the users panel (用户管理) and the audit log (审计日志), signing out, and a
 * session that ends while the page is open (an API 401, a refused WebSocket upgrade).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ARTIFACTS, launchBrowser, signIn, submitSignIn } from '../helpers/browser.js';
import { startTestGateway, testPassword, TEST_USERS, type TestGateway, type TestRole } from '../helpers/gateway.js';

let gateway: TestGateway;
let browser: Browser;
const contexts: BrowserContext[] = [];

beforeAll(async () => {
  gateway = await startTestGateway({ influxUrl: null });
  browser = await launchBrowser();
  mkdirSync(ARTIFACTS, { recursive: true });
});

// Pages left open would keep drawing their maps and slow the next test on a small machine.
afterEach(async () => {
  await Promise.all(contexts.splice(0).map((c) => c.close()));
});

afterAll(async () => {
  await browser?.close();
  await gateway?.close();
});

const home = () => `${gateway.httpUrl}/`;

/** A page in a fresh context: its own cookies, so its own session. */
async function freshPage(): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1440, height: 860 } });
  contexts.push(context);
  return context.newPage();
}

async function signInAs(role: TestRole): Promise<Page> {
  const page = await freshPage();
  await signIn(page, TEST_USERS[role].username, testPassword(role), home());
  return page;
}

const authState = (page: Page) => page.evaluate(() => document.body.dataset.auth);
const bodyRole = (page: Page) => page.evaluate(() => document.body.dataset.role ?? null);

/** Ends every session of a user from the admin side, as a password reset does (same password). */
async function endSessionsOf(role: TestRole): Promise<void> {
  const { users } = (await (await gateway.api('/api/users')).json()) as { users: Array<{ id: number; username: string }> };
  const user = users.find((u) => u.username === TEST_USERS[role].username)!;
  const res = await gateway.api(`/api/users/${user.id}`, {
    method: 'PATCH',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ password: testPassword(role) }),
  });
  expect(res.status).toBe(200);
}

describe('sign-in screen', () => {
  it('is all a visitor sees; a wrong password or too many attempts say so, in the chosen language', async () => {
    const page = await freshPage();
    await page.goto(home());
    await page.getByTestId('signin-username').waitFor();
    expect(await authState(page)).toBe('signed-out');
    expect(await bodyRole(page)).toBeNull();
    expect(await page.getByRole('heading', { name: '用户登录' }).isVisible()).toBe(true);
    expect(await page.locator('#map-view').isHidden()).toBe(true);
    expect(await page.getByTestId('user-box').isHidden()).toBe(true);
    await page.screenshot({ path: join(ARTIFACTS, 'signin.png') });

    await submitSignIn(page, TEST_USERS.viewer.username, 'not-the-password');
    const error = page.getByTestId('signin-error');
    await error.waitFor();
    expect(await error.textContent()).toBe('用户名或密码错误（BAD_LOGIN）');
    expect(await authState(page)).toBe('signed-out');
    expect(await page.getByTestId('signin-password').inputValue()).toBe('');
    expect(await page.locator('#map-view').isHidden()).toBe(true);

    // Empty fields are caught before asking the gateway.
    await page.getByTestId('signin-username').fill('');
    await page.getByTestId('signin-submit').click();
    await expect.poll(() => error.textContent()).toBe('请输入用户名和密码');

    // Too many failures for one username: the gateway makes everyone wait, and the page says so.
    const username = 'e2e-guesser';
    for (let i = 0; i < 10; i++) {
      const res = await fetch(`${gateway.httpUrl}/api/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username, password: `guess-${i}` }),
      });
      expect(res.status).toBe(401);
    }
    await submitSignIn(page, username, 'guess-10');
    await expect.poll(() => error.textContent()).toBe('登录失败次数过多，请几分钟后再试（TOO_MANY_ATTEMPTS）');
    await page.getByRole('button', { name: 'English' }).click();
    expect(await error.textContent()).toBe('Too many failed sign-ins; wait a few minutes and try again (TOO_MANY_ATTEMPTS)');
    expect(await page.getByRole('heading', { level: 1 }).textContent()).toBe('Sign in');
  });
});

describe('roles', () => {
  it('shows a viewer the map with their name and role, but no 用户管理; the API refuses them users', async () => {
    const page = await signInAs('viewer');
    expect(await bodyRole(page)).toBe('viewer');
    expect(await page.getByTestId('user-name').textContent()).toBe(TEST_USERS.viewer.displayName);
    expect(await page.getByTestId('user-role').textContent()).toBe('观察员');
    expect(await page.locator('#map-view').isVisible()).toBe(true);
    // Not hidden: not in the page at all.
    expect(await page.getByTestId('nav-users').count()).toBe(0);
    expect(await page.getByTestId('nav-audit').count()).toBe(0);
    expect(await page.getByTestId('users-view').count()).toBe(0);
    expect(await page.getByText('用户管理').count()).toBe(0);
    // An address the role may not use falls back to the map.
    await page.evaluate(() => {
      window.location.hash = '#/users';
    });
    await expect.poll(() => page.evaluate(() => window.location.hash)).toBe('#/');
    expect(await page.locator('#map-view').isVisible()).toBe(true);

    // The page's own session (its cookie), straight at the API.
    expect((await page.request.get(`${gateway.httpUrl}/api/auth/me`)).status()).toBe(200);
    const users = await page.request.get(`${gateway.httpUrl}/api/users`);
    expect(users.status()).toBe(403);
    expect(((await users.json()) as { code: string }).code).toBe('FORBIDDEN');
  });

  it('lets a duty officer read the audit log, actions translated, but not manage users; an ended session shows on the next call', async () => {
    const page = await signInAs('duty_officer');
    expect(await page.getByTestId('nav-users').count()).toBe(0);
    await page.getByRole('link', { name: '审计日志' }).click();
    const rows = page.getByTestId('audit-row');
    await rows.first().waitFor();
    // The newest entry is this sign-in.
    const first = rows.first();
    expect(await first.getAttribute('data-action')).toBe('auth.login');
    expect(await first.locator('td').nth(1).textContent()).toBe(TEST_USERS.duty_officer.username);
    expect(await first.locator('td').nth(2).textContent()).toBe('登录');
    expect(await page.locator('[data-testid="audit-row"][data-action="auth.login_failed"] td:nth-child(3)').first().textContent()).toBe('登录失败');
    expect(await page.locator('[data-testid="audit-row"][data-action="user.create"] td:nth-child(3)').first().textContent()).toBe('创建用户');
    // Time in the page's language: 2026/04/01 08:30:00 style for zh-CN.
    expect(await first.locator('td').nth(0).textContent()).toMatch(/^\d{4}\/\d{2}\/\d{2} \d{2}:\d{2}:\d{2}$/);
    await page.screenshot({ path: join(ARTIFACTS, 'audit.png') });

    // The session ends elsewhere (a password reset); the next API call answers 401 and the page
    // goes back to the sign-in screen, saying why.
    await endSessionsOf('duty_officer');
    await page.getByTestId('audit-refresh').click();
    await page.getByTestId('signin-notice').waitFor();
    expect(await page.getByTestId('signin-notice').textContent()).toBe('登录已过期，请重新登录');
    expect(await authState(page)).toBe('signed-out');
    expect(await page.getByTestId('audit-view').count()).toBe(0);
  });

  it('lets an admin create a user in 用户管理, who can then sign in', async () => {
    const page = await signInAs('admin');
    expect(await page.getByTestId('user-role').textContent()).toBe('管理员');
    await page.getByRole('link', { name: '用户管理' }).click();
    await page.locator(`[data-testid="user-row"][data-username="${TEST_USERS.admin.username}"]`).waitFor();
    expect(await page.getByTestId('user-row').count()).toBe(Object.keys(TEST_USERS).length);

    const create = async (username: string) => {
      await page.getByTestId('new-username').fill(username);
      await page.getByTestId('new-display-name').fill('李网格');
      await page.getByTestId('new-role').selectOption('grid_worker');
      await page.getByTestId('new-grids').fill('G03，G04');
      await page.getByTestId('new-password').fill('e2e-worker-password');
      await page.getByTestId('new-submit').click();
    };
    // Checked in the page first, in words.
    await create('x');
    const message = page.getByTestId('user-create-message');
    await expect.poll(() => message.textContent()).toContain('用户名须为');

    await create('e2e-worker');
    const row = page.locator('[data-testid="user-row"][data-username="e2e-worker"]');
    await row.waitFor();
    expect(await message.textContent()).toBe('已创建用户“e2e-worker”');
    expect(await row.locator('td').allTextContents()).toEqual(['e2e-worker', '李网格', '网格员', 'G03, G04', '启用', expect.any(String), '编辑停用']);

    // The gateway's refusal is shown too.
    await create('e2e-worker');
    await expect.poll(() => message.textContent()).toBe('该用户名已存在（USER_EXISTS）');
    expect(await page.getByTestId('user-row').count()).toBe(Object.keys(TEST_USERS).length + 1);
    await page.screenshot({ path: join(ARTIFACTS, 'users.png') });

    // The new user signs in elsewhere.
    const other = await freshPage();
    await signIn(other, 'e2e-worker', 'e2e-worker-password', home());
    expect(await other.getByTestId('user-name').textContent()).toBe('李网格');
    expect(await other.getByTestId('user-role').textContent()).toBe('网格员');
    expect(await bodyRole(other)).toBe('grid_worker');

    // Editing: the admin makes them a viewer; that ends their session, and their page says so.
    await row.getByRole('button', { name: '编辑' }).click();
    await page.getByTestId('edit-role').selectOption('viewer');
    await page.getByTestId('edit-save').click();
    await expect.poll(() => row.getAttribute('data-role')).toBe('viewer');
    expect(await page.getByTestId('user-edit-message').textContent()).toBe('已保存用户“e2e-worker”的修改');
    await page.screenshot({ path: join(ARTIFACTS, 'users-edit.png') });
    // The page asks whether its session holds every minute and whenever it is looked at again.
    await other.evaluate(() => document.dispatchEvent(new Event('visibilitychange')));
    await other.getByTestId('signin-notice').waitFor();
    expect(await other.getByTestId('signin-notice').textContent()).toBe('登录已过期，请重新登录');

    // Disabling: confirmed in a dialog; the user can no longer sign in.
    page.once('dialog', (d) => void d.accept());
    await row.getByRole('button', { name: '停用' }).click();
    await expect.poll(() => row.getAttribute('data-disabled')).toBe('true');
    await submitSignIn(other, 'e2e-worker', 'e2e-worker-password');
    await expect.poll(() => other.getByTestId('signin-error').textContent()).toBe('用户名或密码错误（BAD_LOGIN）');
  });
});

describe('sessions', () => {
  it('signing out returns to the sign-in screen and ends the session', async () => {
    const page = await signInAs('viewer');
    await page.getByTestId('sign-out').click();
    await page.getByTestId('signin-notice').waitFor();
    expect(await page.getByTestId('signin-notice').textContent()).toBe('您已退出登录');
    expect(await authState(page)).toBe('signed-out');
    expect(await bodyRole(page)).toBeNull();
    expect(await page.locator('#map-view').isHidden()).toBe(true);
    expect((await page.request.get(`${gateway.httpUrl}/api/auth/me`)).status()).toBe(401);
    // Still signed out after a reload.
    await page.reload();
    await page.getByTestId('signin-username').waitFor();
    expect(await authState(page)).toBe('signed-out');
  });

  it('notices a session that ended when the live feed reconnects (the upgrade is refused)', async () => {
    const worker = await signInAs('grid_worker');
    await worker.waitForSelector('[data-testid="conn-state"][data-state="live"]');
    await endSessionsOf('grid_worker');
    await worker.evaluate(() => window.__gs!.dropLiveSocket());
    const notice = worker.getByTestId('signin-notice');
    await notice.waitFor({ timeout: 10_000 });
    expect(await notice.textContent()).toBe('登录已过期，请重新登录');
    expect(await authState(worker)).toBe('signed-out');
    // The username is kept; signing in again brings the map back, live.
    expect(await worker.getByTestId('signin-username').inputValue()).toBe(TEST_USERS.grid_worker.username);
    await worker.getByTestId('signin-password').fill(testPassword('grid_worker'));
    await worker.getByTestId('signin-submit').click();
    await worker.waitForSelector('[data-testid="conn-state"][data-state="live"]');
    expect(await worker.locator('#map-view').isVisible()).toBe(true);
    await expect.poll(() => worker.evaluate(() => window.__gs!.deviceCount())).toBe(1788);
  });
});
