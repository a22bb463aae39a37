// The page to manage second factors (gateway/endpoints/manage.py, served at <second_factor.path>/manage.js).
//
// Everything goes through the gateway's JSON endpoints under second_factor.path, with the browser client
// (client.js) in cookie mode: it adds the CSRF header to every change, refreshes an expired access cookie once,
// and runs the WebAuthn ceremony. The page's data attributes say where everything is. A 401 (a session too old
// to change factors, or gone) sends the browser back to this page's URL, whose GET sends it on to the step-up
// or sign-in page with `next` back here. Nothing is written with innerHTML: names typed by users stay text.

const root = document.getElementById('manage');
const d = root.dataset;
const byId = (id) => document.getElementById(id);
const status = byId('manage-status');
const { createClient, AuthError } = await import(d.client);

class Leaving extends Error {}

function leave() {
  location.assign(d.reauth);
  return new Leaving('navigating');
}

const gw = createClient({
  mode: 'cookie', handleRedirect: false, loginPath: d.login, refreshPath: d.refresh, logoutPath: d.logout,
  mfaPath: d.api, csrfCookie: d.csrfCookie, csrfHeader: d.csrfHeader,
  onStepUp: () => {}, // the 401 is handled below like any other
});

async function call(method, path, body) {
  const init = { method, headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await gw.fetch(d.api + path, init);
  const data = await res.json().catch(() => null);
  if (res.ok) return data;
  if (res.status === 401 && !(data && data.code === 'second_factor_invalid')) throw leave();
  throw new AuthError((data && data.detail) || `HTTP ${res.status}`, res.status, data);
}

function say(text) {
  status.textContent = text;
}

async function run(button, work) {
  if (button) button.disabled = true;
  say('Working\u2026');
  try {
    say((await work()) || '');
  } catch (err) {
    if (err instanceof Leaving) return;
    if (err instanceof AuthError && err.status === 401 && !(err.body && err.body.code === 'second_factor_invalid')) {
      leave();
      return;
    }
    if (err instanceof AuthError) say(err.status === 429 ? 'Too many attempts. Wait a moment, then try again.' : err.message);
    else if (err && err.name === 'NotAllowedError') say('The key was not added (cancelled or not allowed).');
    else say('That did not work. Try again.');
  } finally {
    if (button) button.disabled = false;
  }
}

function item(parts, onRemove) {
  const li = document.createElement('li');
  for (const [text, cls] of parts) {
    const span = document.createElement('span');
    span.textContent = text;
    if (cls) span.className = cls;
    li.append(span);
  }
  const remove = document.createElement('button');
  remove.type = 'button';
  remove.className = 'remove';
  remove.textContent = 'Remove';
  remove.addEventListener('click', () => run(remove, onRemove));
  li.append(remove);
  return li;
}

function showCodes(codes) {
  byId('codes').replaceChildren(...codes.map((code) => {
    const li = document.createElement('li');
    li.textContent = code;
    return li;
  }));
  byId('codes-shown').hidden = false;
}

const KINDS = { synced: 'passkey (synced)', device_bound: 'security key or device-bound passkey' };

async function load() {
  const info = await call('GET', '');
  const hasTotp = info.methods.includes('totp');
  byId('totp-state').textContent = hasTotp ? 'An authenticator app is set up.' : 'No authenticator app is set up.';
  // a new app replaces the current one once its first code confirms it (a required user cannot remove it, only replace it)
  byId('totp-begin').hidden = false;
  byId('totp-begin').textContent = hasTotp ? 'Replace the authenticator app' : 'Set up an authenticator app';
  byId('totp-remove').hidden = !hasTotp;
  const keys = info.authenticators || [];
  const list = byId('authenticators');
  if (list) {
    list.replaceChildren(...keys.map((key) => item(
      [[key.name, 'name'], [KINDS[key.kind] || key.kind, 'muted kind'],
       [`added ${new Date(key.created_at * 1000).toLocaleDateString()}`, 'muted']],
      async () => {
        await call('DELETE', '/webauthn', { name: key.name });
        await load();
        return `${key.name} was removed.`;
      })));
  }
  const hasFactor = hasTotp || keys.length > 0;
  byId('codes-left').textContent = hasFactor ? `Recovery codes left: ${info.recovery_codes_left}.`
    : 'Recovery codes come with your first second factor.';
  byId('codes-new').hidden = !hasFactor;
  root.dataset.loaded = 'true';
  return info.required && !hasFactor ? 'Your account must have a second factor: set one up now.' : '';
}

byId('totp-begin').addEventListener('click', (event) => run(event.currentTarget, async () => {
  const data = await call('POST', '/totp');
  byId('totp-qr').src = data.qr_code;
  byId('totp-secret').textContent = data.secret;
  byId('totp-enrol').hidden = false;
  byId('totp-code').focus();
  return 'Scan the code, then type the code the app shows.';
}));

byId('totp-confirm').addEventListener('submit', (event) => {
  event.preventDefault();
  run(event.submitter, async () => {
    const data = await call('POST', '/totp/confirm', { code: byId('totp-code').value.trim() });
    byId('totp-enrol').hidden = true;
    byId('totp-code').value = '';
    if (data.recovery_codes) showCodes(data.recovery_codes);
    await load();
    return 'The authenticator app is set up.';
  });
});

byId('totp-remove').addEventListener('click', (event) => run(event.currentTarget, async () => {
  await call('DELETE', '/totp');
  await load();
  return 'The authenticator app was removed.';
}));

byId('codes-new').addEventListener('click', (event) => run(event.currentTarget, async () => {
  showCodes((await call('POST', '/recovery-codes')).recovery_codes);
  await load();
  return 'New recovery codes: the earlier ones no longer work.';
}));

const addKey = byId('add-key');
if (addKey) {
  addKey.addEventListener('submit', (event) => {
    event.preventDefault();
    run(event.submitter, async () => {
      const name = byId('key-name').value.trim();
      const data = await gw.addAuthenticator(name);
      byId('key-name').value = '';
      if (data.recovery_codes) showCodes(data.recovery_codes);
      await load();
      return `${name} was added.`;
    });
  });
}

run(null, load);
