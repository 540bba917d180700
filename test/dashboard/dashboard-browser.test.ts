/**
 * The dashboard in a real headless Chromium (Debian's `chromium`, driven by
 * playwright-core): load the page, log in with a token, see both zones
 * connected and the frontend → backend edge, then inject a 50 % abort fault
 * through the API and watch the edge's success rate drop on the page
 * without a reload.
 */

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { existsSync } from 'node:fs';
import type { Browser } from 'playwright-core';
import { waitFor } from '../common/wait.js';
import { EDGE_ID, faultYaml, startDashboardMesh, type DashboardMesh } from './dashboard-mesh.js';

const CHROMIUM = process.env.MESHFED_CHROMIUM ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) {
  console.error(
    `\n${'!'.repeat(78)}\n!! SKIPPING the dashboard browser test: no Chromium at ${CHROMIUM}.\n` +
      `!! Install Debian's package (apt-get install -y chromium) or set MESHFED_CHROMIUM.\n${'!'.repeat(78)}\n`,
  );
}
/** The little of the DOM the test reads in the page (the project's TypeScript has no DOM types). */
interface BrowserDocument {
  querySelector(selector: string): { getAttribute(name: string): string | null } | null;
}

const describeBrowser = haveChromium ? describe : describe.skip;

describeBrowser('dashboard in headless Chromium', () => {
  let mesh: DashboardMesh;
  let browser: Browser;

  beforeAll(async () => {
    const { chromium } = await import('playwright-core');
    [mesh, browser] = await Promise.all([
      startDashboardMesh(),
      chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] }),
    ]);
  }, 40_000);

  afterAll(async () => {
    await browser?.close();
    await mesh?.close();
  });

  it('logs in, shows both zones and the edge, and the success rate drops live under a fault', async () => {
    expect(await mesh.call(20)).toEqual(new Array(20).fill(200));
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('pageerror', (err) => problems.push(err.message));
    await page.goto(`${mesh.global.cp.url}/`);

    // A wrong token is refused with a message, and the login form stays.
    await page.fill('#token', 'mf1.not.a-token');
    await page.click('#login-form button[type=submit]');
    await page.waitForSelector('#login-error:not(:empty)', { timeout: 10_000 });
    expect(await page.textContent('#login-error')).toContain('refused');

    await page.fill('#token', mesh.global.admin);
    await page.click('#login-form button[type=submit]');
    await page.waitForSelector('#live.on', { timeout: 10_000 });
    await page.waitForSelector('[data-zone="zone-a"][data-connected="true"]', { timeout: 10_000 });
    await page.waitForSelector('[data-zone="zone-b"][data-connected="true"]', { timeout: 10_000 });
    const row = `#edges tr[data-edge="${EDGE_ID}"]`;
    await page.waitForSelector(`${row}[data-success="1"]`, { timeout: 10_000 });
    expect(await page.textContent(`${row} .success`)).toBe('100.0%');
    expect(await page.locator(`#graph g.edge[data-edge="${EDGE_ID}"]`).count()).toBe(1);
    // Marks this document: a reload would lose it.
    // (Browser-side code as strings: the project's TypeScript has no DOM types.)
    await page.evaluate('window.dashboardMarker = 42');

    await mesh.apply(faultYaml(50));
    await waitFor(async () => (await mesh.call(8)).includes(503) || undefined, {
      what: 'the abort fault to reach the frontend sidecar',
      timeoutMs: 15_000,
    });
    const statuses = await mesh.call(120);
    expect(statuses.filter((s) => s === 503).length).toBeGreaterThan(30);

    await page.waitForFunction(
      (selector: string) => {
        const doc = (globalThis as unknown as { document: BrowserDocument }).document;
        return Number(doc.querySelector(selector)?.getAttribute('data-success') ?? '1') < 0.8;
      },
      row,
      { timeout: 15_000, polling: 100 },
    );
    const shown = (await page.textContent(`${row} .success`)) ?? '';
    expect(Number.parseFloat(shown)).toBeLessThan(80);
    expect(await page.getAttribute(`#graph g.edge[data-edge="${EDGE_ID}"]`, 'class')).toMatch(/\bbad\b/);
    expect(await page.evaluate('window.dashboardMarker')).toBe(42);
    expect(problems).toEqual([]);
  }, 60_000);
});
