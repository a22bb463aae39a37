#!/usr/bin/env node
// Opens one page in Debian's headless Chromium (driven by playwright-core), waits until the page
// sets `window.__result`, and prints that result as one JSON line on stdout.
//
//   node run.mjs URL [--timeout MS] [--chromium PATH] [--virtual-authenticator JSON]
//
// --virtual-authenticator: before the page loads, a DevTools virtual WebAuthn authenticator is added
// (WebAuthn.enable + WebAuthn.addVirtualAuthenticator; JSON overrides the defaults: ctap2, internal
// transport, resident keys, user verification, user verified), and the page gets
// `window.__cdp(method, params)` to send WebAuthn.* commands (e.g. WebAuthn.setUserVerified,
// WebAuthn.getCredentials/addCredential) with `window.__authenticatorId`.
//
// Exit codes: 0 result printed; 2 usage; 3 timeout waiting for window.__result; 4 uncaught page
// error (the result, if any, is still printed); 5 browser/navigation failure.
// Console messages and failed requests from the page are logged to stderr for debugging.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { addVirtualAuthenticator } from './webauthn.mjs';

function parseArgs(argv) {
  const out = { url: null, timeout: 30000, chromium: process.env.CHROMIUM_PATH || '/usr/bin/chromium', authenticator: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--timeout') out.timeout = Number(argv[++i]);
    else if (a === '--chromium') out.chromium = argv[++i];
    else if (a === '--virtual-authenticator') out.authenticator = JSON.parse(argv[++i]);
    else if (!out.url) out.url = a;
    else throw new Error(`unexpected argument ${a}`);
  }
  if (!out.url || !Number.isFinite(out.timeout)) throw new Error('usage: node run.mjs URL [--timeout MS] [--chromium PATH]');
  return out;
}

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

async function main() {
  let opts;
  try { opts = parseArgs(process.argv.slice(2)); } catch (e) { console.error(String(e.message)); return 2; }

  const userDataDir = mkdtempSync(join(tmpdir(), 'gw-chromium-'));
  const pageErrors = [];
  let context;
  let code = 0;
  const deadline = setTimeout(() => {
    // Last resort if the browser itself hangs: never leave the caller waiting forever.
    console.error(`run.mjs: hard timeout after ${opts.timeout + 20000} ms`);
    try { rmSync(userDataDir, { recursive: true, force: true }); } catch { /* ignore */ }
    process.exit(3);
  }, opts.timeout + 20000);
  try {
    // launchPersistentContext gives us our own fresh temp --user-data-dir (Playwright refuses
    // --user-data-dir inside args).
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: opts.chromium,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: 60000,
    });
    const page = context.pages()[0] || (await context.newPage());
    page.on('pageerror', (err) => {
      pageErrors.push(String(err && err.stack ? err.stack : err));
      console.error(`[pageerror] ${err && err.stack ? err.stack : err}`);
    });
    if (opts.authenticator) await addVirtualAuthenticator(context, page, opts.authenticator);
    page.on('console', (msg) => console.error(`[console.${msg.type()}] ${msg.text()}`));
    page.on('requestfailed', (req) => console.error(`[requestfailed] ${req.method()} ${req.url()} ${req.failure()?.errorText ?? ''}`));

    const resp = await page.goto(opts.url, { waitUntil: 'load', timeout: opts.timeout });
    if (resp && !resp.ok()) {
      console.error(`run.mjs: page answered HTTP ${resp.status()}`);
      code = 5;
    } else {
      try {
        await page.waitForFunction(() => window.__result !== undefined, null, { timeout: opts.timeout, polling: 50 });
      } catch (e) {
        console.error(`run.mjs: timed out after ${opts.timeout} ms waiting for window.__result`);
        code = 3;
      }
      if (code === 0) {
        const result = await page.evaluate(() => {
          const r = window.__result;
          return typeof r === 'string' ? r : JSON.stringify(r);
        });
        let parsed;
        try { parsed = JSON.parse(result); } catch { parsed = result; }
        process.stdout.write(JSON.stringify(parsed) + '\n');
        if (pageErrors.length) code = 4;
      }
    }
  } catch (e) {
    console.error(`run.mjs: ${e && e.stack ? e.stack : e}`);
    code = code || 5;
  } finally {
    if (context) { try { await context.close(); } catch { /* ignore */ } }
    try { rmSync(userDataDir, { recursive: true, force: true }); } catch { /* ignore */ }
    clearTimeout(deadline);
  }
  if (pageErrors.length && code === 0) code = 4;
  return code;
}

process.exitCode = await main();
