/**
 * Debian's Chromium driven by playwright-core; never a downloaded browser. The flags keep it
 * from reaching for the network this machine does not have; Playwright gives each launch a fresh
 * temporary profile.
 */
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';

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
