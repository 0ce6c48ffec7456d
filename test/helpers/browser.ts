/**
 * Debian's Chromium driven by playwright-core; never a downloaded browser. The flags keep it
 * from reaching for the network this machine does not have; Playwright gives each launch a fresh
 * temporary profile.
 */
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';

export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** Where tests leave screenshots for people to look at (git-ignored). */
export const ARTIFACTS = join(import.meta.dirname, '../../test-artifacts');

/** Fills the dashboard's sign-in form and submits it; waits for nothing (see signIn). */
export async function submitSignIn(page: Page, username: string, password: string): Promise<void> {
  await page.getByTestId('signin-username').fill(username);
  await page.getByTestId('signin-password').fill(password);
  await page.getByTestId('signin-submit').click();
}

/**
 * Signs in through the page as a person would: opens `url` (if given), waits for the sign-in
 * screen, submits the form and waits until the page is signed in (body[data-auth="signed-in"]).
 */
export async function signIn(page: Page, username: string, password: string, url?: string): Promise<void> {
  if (url !== undefined) await page.goto(url);
  await page.getByTestId('signin-username').waitFor();
  await submitSignIn(page, username, password);
  await page.waitForSelector('body[data-auth="signed-in"]');
}
