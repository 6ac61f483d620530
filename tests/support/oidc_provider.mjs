// The OpenID Provider the oidc policy's tests log in at: panva's certified `oidc-provider`
// (installed by scripts/provision into the cache; OIDC_PROVIDER_MODULES names its node_modules).
//
// Configured from the environment by tests/support/oidc.py:
//   OIDC_PORT      the loopback port (the issuer is http://127.0.0.1:<port>)
//   OIDC_CLIENTS   JSON list of client metadata (client_id, client_secret, redirect_uris ...)
//   OIDC_ACCOUNTS  JSON {login: {password, claims}}
// Interactions are a real login form (login + password checked here) and an automatic consent for
// the scopes asked (a first-party client), so a test drives the flow with plain HTTP.
import http from 'node:http';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const modules = process.env.OIDC_PROVIDER_MODULES;
const { default: Provider } = await import(
  pathToFileURL(path.join(modules, 'oidc-provider', 'lib', 'index.js')).href
);
const { generateKeyPair, exportJWK } = await import(
  pathToFileURL(path.join(modules, 'jose', 'dist', 'webapi', 'index.js')).href
);

const port = Number(process.env.OIDC_PORT);
const issuer = `http://127.0.0.1:${port}`;
const clients = JSON.parse(process.env.OIDC_CLIENTS);
const accounts = JSON.parse(process.env.OIDC_ACCOUNTS);

const { privateKey } = await generateKeyPair('RS256', { extractable: true });
const signing = { ...(await exportJWK(privateKey)), kid: 'test-rs256', use: 'sig', alg: 'RS256' };

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [signing] },
  cookies: { keys: ['portway-test-op-cookie-key-0123456789'] },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    roles: ['roles'],
  },
  // claims of the scopes asked go into the ID token too (the relying party reads only that)
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: false }, rpInitiatedLogout: { enabled: true } },
  pkce: { required: () => true },
  async findAccount(ctx, id) {
    const account = accounts[id];
    if (!account) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, ...account.claims }) };
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
});

function form(uid, message) {
  return `<!doctype html><title>Sign in</title><p>${message}</p>
<form method="post" action="/interaction/${uid}/login">
<input name="login"><input name="password" type="password"><button>Sign in</button></form>`;
}

async function readForm(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return new URLSearchParams(body);
}

async function consent(req, res, details) {
  const { prompt, params, session } = details;
  const grant = new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction mismatch');
  if (details.prompt.name === 'consent') return consent(req, res, details);
  if (action === 'login' && req.method === 'POST') {
    const fields = await readForm(req);
    const account = accounts[fields.get('login')];
    if (!account || account.password !== fields.get('password')) {
      res.writeHead(401, { 'content-type': 'text/html' });
      return res.end(form(uid, 'wrong login or password'));
    }
    return provider.interactionFinished(
      req, res, { login: { accountId: fields.get('login') } }, { mergeWithLastSubmission: false },
    );
  }
  res.writeHead(200, { 'content-type': 'text/html' });
  return res.end(form(uid, 'sign in'));
}

const handler = provider.callback();
const server = http.createServer((req, res) => {
  const match = /^\/interaction\/([\w-]+)(?:\/(login))?$/.exec(new URL(req.url, issuer).pathname);
  if (!match) return handler(req, res);
  return interaction(req, res, match[1], match[2]).catch((err) => {
    res.writeHead(400, { 'content-type': 'text/plain' });
    res.end(String(err));
  });
});
server.listen(port, '127.0.0.1', () => console.log(`oidc-provider listening on ${issuer}`));
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
