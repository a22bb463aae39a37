#!/usr/bin/env node
// Drives one headless Chromium tab (playwright-core, Debian's /usr/bin/chromium) through a list of
// steps across sites, for flows a page cannot script by itself: signing in at an identity provider's
// own pages and coming back. Prints one JSON line: {"results": [...], "url": <final URL>, "console": [...]}.
//
//   node flow.mjs STEPS.json [--timeout MS] [--virtual-authenticator JSON]
//
// --virtual-authenticator: a DevTools virtual WebAuthn authenticator in the tab first (webauthn.mjs).
//
// Steps (each an object with one action; results of `result`, `evaluate` and `url` are collected in order):
//   {"goto": URL}                     navigate (waits for load)
//   {"waitFor": CSS}                  wait until an element matches, on whatever page the tab is on now
//   {"fill": [CSS, VALUE]}            type into a field
//   {"click": CSS}                    click (a navigation it starts is waited for by the next wait step)
//   {"waitForURL": REGEX}             wait until the tab's URL matches
//   {"result": true}                  wait for window.__result set by the page, collect it, then clear it
//   {"evaluate": JS}                  collect the value of an expression in the page
//   {"url": true}                     collect the tab's URL
// Exit codes: 0 done; 2 usage; 5 a step failed (the results so far and the error are still printed).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { addVirtualAuthenticator } from './webauthn.mjs';

const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'];

async function run(page, steps, timeout, out) {
  for (const step of steps) {
    if (step.goto) await page.goto(step.goto, { waitUntil: 'load', timeout });
    else if (step.waitFor) await page.waitForSelector(step.waitFor, { timeout, state: 'attached' });
    else if (step.fill) await page.fill(step.fill[0], step.fill[1], { timeout });
    else if (step.click) await page.click(step.click, { timeout, noWaitAfter: true });
    else if (step.waitForURL) await page.waitForURL(new RegExp(step.waitForURL), { timeout, waitUntil: 'commit' });
    else if (step.result) {
      const handle = await page.waitForFunction(() => window.__result !== undefined && JSON.stringify(window.__result),
        null, { timeout, polling: 50 });
      out.results.push(JSON.parse(await handle.jsonValue()));
      await page.evaluate(() => { window.__result = undefined; });
    } else if (step.evaluate) out.results.push(await page.evaluate(step.evaluate));
    else if (step.url) out.results.push(page.url());
    else throw new Error(`unknown step ${JSON.stringify(step)}`);
  }
}

async function main() {
  const [stepsPath, ...rest] = process.argv.slice(2);
  let timeout = 30000;
  let authenticator = null;
  for (let i = 0; i < rest.length; i += 2) {
    if (rest[i] === '--timeout') timeout = Number(rest[i + 1]);
    else if (rest[i] === '--virtual-authenticator') authenticator = JSON.parse(rest[i + 1]);
    else { console.error(`unexpected argument ${rest[i]}`); return 2; }
  }
  if (!stepsPath || !Number.isFinite(timeout)) {
    console.error('usage: node flow.mjs STEPS.json [--timeout MS] [--virtual-authenticator JSON]');
    return 2;
  }
  const steps = JSON.parse(readFileSync(stepsPath, 'utf8'));
  const out = { results: [], url: null, console: [] };
  const userDataDir = mkdtempSync(join(tmpdir(), 'gw-chromium-'));
  const deadline = setTimeout(() => {
    console.error('flow.mjs: hard timeout');
    process.stdout.write(JSON.stringify({ ...out, error: 'hard timeout' }) + '\n');
    process.exit(5);
  }, timeout * (steps.length + 2));
  let context;
  let code = 0;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS, timeout: 60000,
    });
    const page = context.pages()[0] || (await context.newPage());
    if (authenticator) await addVirtualAuthenticator(context, page, authenticator);
    page.on('console', (msg) => out.console.push(`${msg.type()}: ${msg.text()}`));
    page.on('pageerror', (err) => out.console.push(`pageerror: ${err && err.stack ? err.stack : err}`));
    try {
      await run(page, steps, timeout, out);
    } catch (err) {
      out.error = String(err && err.stack ? err.stack : err);
      out.page = await page.content().catch(() => null);
      code = 5;
    }
    out.url = page.url();
  } finally {
    if (context) { try { await context.close(); } catch { /* ignore */ } }
    try { rmSync(userDataDir, { recursive: true, force: true }); } catch { /* ignore */ }
    clearTimeout(deadline);
  }
  process.stdout.write(JSON.stringify(out) + '\n');
  return code;
}

process.exitCode = await main();
