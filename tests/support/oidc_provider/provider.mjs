// A real, certified OpenID Provider (panva/oidc-provider) for the gateway's OIDC tests.
//
// Started by tests/support/oidc.py (`node provider.mjs <config.json>`), never by hand in CI.
// The JSON file says everything: port, issuer, signing keys (private JWKs), clients (their
// metadata as registered at a real IdP) and users (sub, login, password, claims).
//
// Version: oidc-provider 8.8.1 (package-lock.json), the last 8.x release: it supports Node 18 and 20
// LTS, which is Debian's nodejs here and in CI; 9.x needs Node 22 LTS ("Unsupported runtime" on 20).
// Its protocol behaviour (discovery, PKCE, the client auth methods, both logout specs) is the same
// for what these tests use.
//
// What is configured, and why:
// - plain http on 127.0.0.1: oidc-provider allows an http issuer and http redirect URIs for
//   `web` clients using the code flow; its cookies carry no `Secure` flag when the request is
//   not https (ctx.secure is false), so the flow works on loopback without certificates.
// - PKCE required for every client (S256 only, oidc-provider's default method list).
// - client authentication: client_secret_basic, client_secret_post, private_key_jwt.
// - features: rpInitiatedLogout (end_session, with a plain confirmation form) and
//   backchannelLogout (sent synchronously by end_session's confirmation to every client of
//   the session with a backchannel_logout_uri; `sid` included when the client says
//   backchannel_logout_session_required, which the launcher sets by default).
// - our own minimal interactions (no devInteractions): a login form that checks the password
//   and a consent form, both plain HTML that tests/support/oidc.py walks with aiohttp and the
//   browser tests with Chromium. The login form also takes what the test says the sign-in was:
//   `amr` (comma-separated), `acr` (one of `acr_values` from the JSON file) and `ts` (when, for a
//   login long ago); they end up in the ID token as `amr`, `acr` and `auth_time`.
// - claims of the `profile` scope go into the ID token too (conformIdTokenClaims: false), as
//   Keycloak, Okta and Entra do with their default client settings; the launcher can turn this off.
// - ID-token signature algorithms: oidc-provider's default list (RS256, PS256, ES256, EdDSA) unless the
//   launcher gives one (`id_token_signing_algs`, e.g. with HS256 for a client whose
//   id_token_signed_response_alg is HS256, a misconfiguration the gateway must name).
// - cookie names prefixed `op_`: the gateway runs on the same host (127.0.0.1), and cookies do
//   not isolate by port.
// - a test-only admin surface under /__harness/ (loopback tests only): a delay before answering
//   (a slow provider) and a back-channel logout for a given user and sid.
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';

import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const users = new Map(config.users.map((user) => [user.sub, user]));
const byLogin = new Map(config.users.flatMap((user) => [[user.login, user], [user.email, user]]));
const harness = { delayMs: 0, delayPrefix: '/' };

const escape = (value) => String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const page = (title, body) => `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title></head>
<body><main><h1>${escape(title)}</h1>${body}</main></body></html>`;

const loginPage = (uid, clientId, error) => page('Sign in to the test provider', `
<p>Client: <span id="client">${escape(clientId)}</span></p>
${error ? `<p role="alert" id="error">${escape(error)}</p>` : ''}
<form id="login" method="post" action="/interaction/${escape(uid)}/login">
  <label>User <input name="login" id="login-name" autocomplete="username" required></label>
  <label>Password <input name="password" id="login-password" type="password" autocomplete="current-password" required></label>
  <label>How you signed in (amr, comma-separated) <input name="amr" id="login-amr"></label>
  <label>Level (acr) <input name="acr" id="login-acr"></label>
  <button type="submit" id="login-submit">Sign in</button>
</form>`);

const consentPage = (uid, clientId, scopes) => page('Authorize', `
<p>Allow <span id="client">${escape(clientId)}</span> to read: <span id="scopes">${escape(scopes.join(' '))}</span></p>
<form id="consent" method="post" action="/interaction/${escape(uid)}/confirm">
  <button type="submit" id="consent-submit">Allow</button>
</form>`);

const claimsOf = (user) => ({
  sub: user.sub,
  email: user.email,
  email_verified: true,
  name: user.name,
  groups: user.groups,
  ...user.claims,
});

const extraClaims = [...new Set(config.users.flatMap((user) => Object.keys(user.claims || {})))];

const provider = new Provider(config.issuer, {
  clients: config.clients,
  jwks: config.jwks,
  findAccount: async (ctx, id) => {
    const user = users.get(id);
    if (!user) return undefined;
    return { accountId: id, claims: async () => claimsOf(user) };
  },
  acrValues: config.acr_values || [],
  claims: {
    acr: null,
    amr: null,
    auth_time: null,
    sid: null,
    openid: ['sub', 'acr', 'amr', 'auth_time'], // in every ID token, as Keycloak and Entra send them
    email: ['email', 'email_verified'],
    profile: ['name', 'groups', ...extraClaims],
  },
  conformIdTokenClaims: config.conform_id_token_claims,
  enabledJWA: { idTokenSigningAlgValues: config.id_token_signing_algs || undefined },
  pkce: { required: () => true },
  clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
  cookies: {
    names: { session: 'op_session', interaction: 'op_interaction', resume: 'op_interaction_resume' },
    keys: [randomBytes(32).toString('hex')],
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  features: {
    devInteractions: { enabled: false },
    backchannelLogout: { enabled: true },
    rpInitiatedLogout: {
      enabled: true,
      logoutSource: async (ctx, form) => {
        ctx.body = page('Sign out of the test provider', `${form}
<button type="submit" form="op.logoutForm" name="logout" value="yes" id="logout-yes">Yes, sign me out</button>
<button type="submit" form="op.logoutForm" id="logout-no">No, stay signed in</button>`);
      },
      postLogoutSuccessSource: async (ctx) => {
        ctx.body = page('Signed out of the test provider', '<p id="signed-out">You are signed out.</p>');
      },
    },
  },
  renderError: async (ctx, out) => {
    ctx.type = 'html';
    ctx.body = page('Provider error', `<pre id="provider-error">${escape(JSON.stringify(out))}</pre>`);
  },
  ttl: {
    AccessToken: 600, AuthorizationCode: 60, IdToken: 600, Interaction: 600, Session: 3600, Grant: 3600,
  },
});

provider.on('backchannel.success', (ctx, client, accountId, sid) => {
  console.log(`backchannel.success client=${client.clientId} sub=${accountId} sid=${sid}`);
});
provider.on('backchannel.error', (ctx, err, client, accountId, sid) => {
  console.log(`backchannel.error client=${client.clientId} sub=${accountId} sid=${sid}: ${err.message}`);
});
provider.on('server_error', (ctx, err) => console.log(`server_error: ${err.stack}`));
// Refusals, with the detail oidc-provider keeps out of the response: the first place to look when a test fails.
for (const event of ['authorization.error', 'grant.error', 'end_session.error', 'userinfo.error', 'jwks.error',
  'discovery.error', 'interaction.error']) {
  provider.on(event, (ctx, err) => console.log(`${event}: ${err.message} (${err.error_detail || ''})`));
}

const readBody = async (req) => {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 65536) throw new Error('body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
};
const readForm = async (req) => new URLSearchParams(await readBody(req));
const readJson = async (req) => JSON.parse(await readBody(req));

// Test-only surface and the interactions, in front of oidc-provider's own routes.
provider.use(async (ctx, next) => {
  if (harness.delayMs && ctx.path.startsWith(harness.delayPrefix) && !ctx.path.startsWith('/__harness/')) {
    await new Promise((resolve) => { setTimeout(resolve, harness.delayMs); });
  }
  if (ctx.path === '/__harness/delay' && ctx.method === 'POST') {
    const body = await readJson(ctx.req);
    harness.delayMs = body.ms;
    harness.delayPrefix = body.prefix || '/';
    ctx.body = { ok: true };
    return;
  }
  if (ctx.path === '/__harness/backchannel-logout' && ctx.method === 'POST') {
    const body = await readJson(ctx.req);
    const client = await provider.Client.find(body.client_id);
    if (!client) ctx.throw(404, 'no such client');
    try {
      await client.backchannelLogout(body.sub, body.sid);
      ctx.body = { ok: true };
    } catch (err) {
      ctx.status = 502;
      ctx.body = { ok: false, error: err.message };
    }
    return;
  }
  const match = /^\/interaction\/([^/]+)(?:\/(login|confirm))?$/.exec(ctx.path);
  if (!match) {
    await next();
    return;
  }
  ctx.set('Cache-Control', 'no-store');
  const [, uid, action] = match;
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  if (details.uid !== uid) ctx.throw(400, 'interaction mismatch');
  const { prompt, params, session } = details;
  if (!action && ctx.method === 'GET') {
    ctx.type = 'html';
    ctx.body = prompt.name === 'login'
      ? loginPage(uid, params.client_id)
      : consentPage(uid, params.client_id, String(params.scope || '').split(' '));
    return;
  }
  if (ctx.method !== 'POST') ctx.throw(405);
  const form = await readForm(ctx.req);
  if (action === 'login') {
    if (prompt.name !== 'login') ctx.throw(400, 'not at the login step');
    const user = byLogin.get(form.get('login') || '');
    if (!user || user.password !== form.get('password')) {
      ctx.status = 401;
      ctx.type = 'html';
      ctx.body = loginPage(uid, params.client_id, 'Invalid user or password.');
      return;
    }
    // What the test says the sign-in was: amr values, an acr, and when (ts: a login long ago).
    const login = { accountId: user.sub };
    const amr = (form.get('amr') || '').split(',').map((m) => m.trim()).filter(Boolean);
    if (amr.length) login.amr = amr;
    if (form.get('acr')) login.acr = form.get('acr');
    if (form.get('ts')) login.ts = Number(form.get('ts'));
    await provider.interactionFinished(ctx.req, ctx.res, { login }, { mergeWithLastSubmission: false });
    ctx.respond = false;
    return;
  }
  if (prompt.name !== 'consent') ctx.throw(400, 'not at the consent step');
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  const missing = prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  if (missing.missingResourceScopes) {
    for (const [indicator, scope] of Object.entries(missing.missingResourceScopes)) {
      grant.addResourceScope(indicator, scope.join(' '));
    }
  }
  const grantId = await grant.save();
  await provider.interactionFinished(ctx.req, ctx.res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  ctx.respond = false;
});

provider.listen(config.port, '127.0.0.1', () => {
  console.log(`oidc-provider ${config.issuer} listening`);
});
