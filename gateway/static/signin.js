// The built-in sign-in page's script (gateway/endpoints/signin.py, served at <endpoints.signin>.js), cookie mode.
//
// The password goes as JSON to the login endpoint (with the configured field names), then to `next`. When the
// answer is second_factor_required, the page finishes the login right here, with the `mfa_token`, through the
// browser client (client.js in cookie mode: it stores no token, the gateway sets its HttpOnly cookies):
// * a TOTP or recovery code typed into the code field (completeSecondFactor);
// * the user's security key or passkey (completeWithWebAuthn: navigator.credentials.get with the answer's options,
//   a new challenge from <mfa path>/webauthn/login-options after a failed or cancelled ceremony);
// * a required user with no factor yet (the answer's `enrol`): TOTP (QR code and key from <mfa path>/totp, a first
//   code confirms it) or, with WebAuthn, a new security key or passkey (addAuthenticator with the mfa_token); the
//   mfa_token alone then finishes the login, the recovery codes are shown once, and "Continue" goes to `next`.
// A login in the enrolment grace period goes to the manage page first. With passkey_login, "Sign in with a passkey"
// needs no password (loginWithPasskey). Nothing is written with innerHTML.

const form = document.getElementById('password-form');
const d = form.dataset;
const byId = (id) => document.getElementById(id);
const status = byId('password-status');
const { createClient, SecondFactorRequired, AuthError } = await import(d.client);

const gw = createClient({
  mode: 'cookie', handleRedirect: false, loginPath: form.getAttribute('action'), refreshPath: d.refresh,
  logoutPath: d.logout, mfaPath: d.api, csrfCookie: d.csrfCookie, csrfHeader: d.csrfHeader,
});

let pending = null; // the SecondFactorRequired of the password just proven
const canWebAuthn = typeof window.PublicKeyCredential === 'function';
if (!canWebAuthn) { // a browser without WebAuthn is offered the rest
  for (const id of ['webauthn-step', 'enrol-key-form', 'passkey-login']) byId(id)?.remove();
}

const say = (text) => { status.textContent = text; };
const on = (id, type, handler) => { const el = byId(id); if (el) el.addEventListener(type, handler); }; // parts the config has
const show = (id, on) => { const el = byId(id); if (el) el.hidden = !on; };

function toNext(answer) {
  const manage = d.manage;
  const next = d.next;
  // in the second-factor enrolment grace period: to the manage page first, then on to `next`
  location.assign(manage && answer && answer.second_factor_enrolment_due && !next.startsWith(manage)
    ? `${manage}?next=${encodeURIComponent(next)}` : next);
}

function reset(text) {
  pending = null;
  show('factor-step', false);
  show('webauthn-step', false);
  show('enrol-step', false);
  show('credentials', true);
  if (form.elements.code) form.elements.code.required = false;
  form.elements.username.required = true;
  form.elements.password.required = true;
  byId('sign-in').hidden = false;
  say(text);
}

function refusal(err, what) {
  if (err && err.name === 'NotAllowedError') return 'The key was not used (cancelled or not allowed). Try again.';
  if (err && err.name === 'InvalidStateError') return 'This key is already registered. Use another one.';
  if (!(err instanceof AuthError)) return err instanceof TypeError ? 'The gateway could not be reached. Try again.'
    : 'That did not work. Try again.';
  const code = err.body && err.body.code;
  if (code === 'mfa_token_invalid') return null; // start again with the password
  return err.status === 429 ? 'Too many attempts. Wait a moment, then try again.'
    : err.status >= 500 ? 'Sign-in is unavailable right now. Try again later.'
    : what;
}

// Runs one step of the second factor; a spent or expired mfa_token sends the user back to the password.
async function attempt(button, work, what) {
  if (button) button.disabled = true;
  say('Working\u2026');
  try {
    await work();
  } catch (err) {
    const text = refusal(err, what);
    if (text === null) reset('That took too long, or too many attempts failed. Sign in again.');
    else say(text);
  } finally {
    if (button) button.disabled = false;
  }
}

function askForFactor(answer) {
  pending = new SecondFactorRequired(answer);
  const methods = pending.methods;
  show('credentials', false);
  form.elements.username.required = false;
  form.elements.password.required = false;
  if (answer.enrol || methods.length === 0) {
    byId('sign-in').hidden = true;
    show('enrol-step', true);
    say('Your account needs a second factor. Set one up now to finish signing in.');
    return;
  }
  const code = methods.includes('totp') || methods.includes('recovery');
  const key = methods.includes('webauthn') && byId('webauthn-step') !== null;
  show('factor-step', code);
  form.elements.code.required = code;
  form.elements.code.value = '';
  byId('sign-in').hidden = !code;
  show('webauthn-step', key);
  say(code && key ? 'Use your security key or passkey, or enter the code from your authenticator app or a recovery code.'
    : key ? 'Use your security key or passkey.'
    : code ? 'Enter the code from your authenticator app, or a recovery code.'
    : 'This account has no second factor this page can use.');
  if (code) form.elements.code.focus();
  else if (key) byId('use-key').focus();
}

async function post(path, body) { // a JSON step of the enrolment with the mfa_token (no session yet)
  const res = await fetch(path, {
    method: 'POST', credentials: 'same-origin', body: JSON.stringify(body),
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
  });
  const data = await res.json().catch(() => null);
  if (!res.ok) throw new AuthError((data && data.detail) || `HTTP ${res.status}`, res.status, data);
  return data;
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const button = byId('sign-in');
  if (pending !== null) {
    const code = form.elements.code.value.trim();
    await attempt(button, async () => {
      toNext(await gw.completeSecondFactor(pending.mfaToken, /^[0-9]{6,8}$/.test(code) ? { code } : { recoveryCode: code }));
    }, 'The code is not right.');
    return;
  }
  button.disabled = true;
  say('Signing in\u2026');
  try {
    const body = { [d.userField]: form.elements.username.value, [d.passwordField]: form.elements.password.value };
    const res = await fetch(form.action, {
      method: 'POST', credentials: 'same-origin', body: JSON.stringify(body),
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    });
    const answer = await res.json().catch(() => ({}));
    if (res.ok) {
      toNext(answer);
      return;
    }
    if (answer.code === 'second_factor_required' && answer.mfa_token) askForFactor(answer);
    else {
      say(res.status === 429 ? 'Too many attempts. Wait a moment, then try again.'
        : res.status >= 500 ? 'Sign-in is unavailable right now. Try again later.'
        : 'The user name or password is not right.');
    }
  } catch (err) {
    say('The gateway could not be reached. Try again.');
  }
  button.disabled = false;
});

on('use-key', 'click', (event) => attempt(event.currentTarget, async () => {
  const asked = pending;
  asked.webauthn = asked.tried ? null : asked.webauthn; // a challenge is answered once: later, a new one
  asked.tried = true;
  toNext(await gw.completeWithWebAuthn(asked));
}, 'The key was not accepted.'));

on('passkey-login', 'click', (event) => attempt(event.currentTarget, async () => {
  toNext(await gw.loginWithPasskey());
}, 'That passkey was not accepted.'));

// -- enrolment at the login (a required user with no factor yet) ----------------------------------------

function enrolled(answer) {
  const codes = (answer && answer.recovery_codes) || [];
  byId('recovery-codes').replaceChildren(...codes.map((code) => {
    const li = document.createElement('li');
    li.textContent = code;
    return li;
  }));
  show('enrol-choices', false);
  show('enrol-totp', false);
  show('enrol-done', true);
  byId('continue').focus();
}

async function finishEnrolment(answer) {
  await gw.completeSecondFactor(pending.mfaToken, {}); // the mfa_token alone: the new factor was just confirmed
  pending = null;
  enrolled(answer);
  say('You are signed in. Write down your recovery codes, then continue.');
}

on('enrol-totp-begin', 'click', (event) => attempt(event.currentTarget, async () => {
  const data = await post(`${d.api}/totp`, { mfa_token: pending.mfaToken });
  byId('enrol-qr').src = data.qr_code;
  byId('enrol-secret').textContent = data.secret;
  show('enrol-totp', true);
  byId('enrol-code').focus();
  say('Scan the code with your authenticator app (or type the key), then enter the code it shows.');
}, 'The authenticator app could not be set up.'));

on('enrol-totp-form', 'submit', (event) => {
  event.preventDefault();
  attempt(event.submitter, async () => {
    const answer = await post(`${d.api}/totp/confirm`, { mfa_token: pending.mfaToken, code: byId('enrol-code').value.trim() });
    await finishEnrolment(answer);
  }, 'The code is not right.');
});

on('enrol-key-form', 'submit', (event) => {
  event.preventDefault();
  attempt(event.submitter, async () => {
    await finishEnrolment(await gw.addAuthenticator(byId('enrol-key-name').value.trim(), { mfaToken: pending.mfaToken }));
  }, 'The key was not registered.');
});

on('continue', 'click', () => toNext(null));
form.dataset.ready = 'true';
