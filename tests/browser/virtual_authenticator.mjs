// A DevTools virtual WebAuthn authenticator for a playwright-core page (run.mjs and flow.mjs
// --virtual-authenticator): WebAuthn.enable + WebAuthn.addVirtualAuthenticator with `overrides` over
// ctap2, internal transport, resident keys, user verification, user verified; the page gets
// `window.__cdp(method, params)` for WebAuthn.* commands and `window.__authenticatorId`.

export async function addVirtualAuthenticator(context, page, overrides) {
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true,
               isUserVerified: true, automaticPresenceSimulation: true, ...overrides },
  });
  await page.exposeFunction('__cdp', async (method, params) => {
    if (!String(method).startsWith('WebAuthn.')) throw new Error('only WebAuthn.* commands');
    return cdp.send(method, { authenticatorId, ...(params || {}) });
  });
  await page.addInitScript((id) => { window.__authenticatorId = id; }, authenticatorId);
}
