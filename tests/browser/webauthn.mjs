// The DevTools virtual WebAuthn authenticator for run.mjs and flow.mjs: WebAuthn.enable +
// WebAuthn.addVirtualAuthenticator (ctap2, internal transport, resident keys, user verification, user
// verified; `overrides` on top), and `window.__cdp(method, params)` in every page of the tab (WebAuthn.*
// commands only) with `window.__authenticatorId`. The authenticator belongs to the tab: it keeps its
// credentials across navigations.
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
