// A real MCP client run against authmd, driven by tests/integration/mcp_client.rs:
//
// - an https host publishes the client's Client ID Metadata Document (no registration);
// - an MCP server (the SDK's own server classes) accepts only bearer tokens that authmd's
//   introspection endpoint says are active for its resource, and publishes its RFC 9728
//   document pointing at authmd;
// - the SDK's client discovers all of it from a 401, uses the document URL as client_id, sends
//   the person through authmd's login and consent pages (a cookie-keeping fetch plays the
//   browser), exchanges the code, and calls a tool that answers who the token speaks for.
//
// Everything listens on 127.0.0.1. Prints one "ok <step>" line per step; exits 1 on failure.

import https from 'node:https';
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const AUTHMD = env('AUTHMD_URL');
const MCP_PORT = Number(env('MCP_PORT'));
const DOC_PORT = Number(env('DOC_PORT'));
const EMAIL = env('PERSON_EMAIL');
const PASSWORD = env('PERSON_PASSWORD');
const RS_ID = env('RS_CLIENT_ID');
const RS_SECRET = env('RS_CLIENT_SECRET');
const MCP_URL = `http://127.0.0.1:${MCP_PORT}/mcp`;
const DOC_URL = `https://localhost:${DOC_PORT}/oauth/client.json`;
const REDIRECT = 'http://127.0.0.1:47123/callback';

const step = (name) => console.log(`ok ${name}`);

// --- the client's metadata document, over https ------------------------------------------------
const documentHost = https.createServer(
  { cert: readFileSync(env('DOC_CERT')), key: readFileSync(env('DOC_KEY')) },
  (req, res) => {
    if (req.url !== '/oauth/client.json') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=300' });
    res.end(JSON.stringify({
      client_id: DOC_URL,
      client_name: 'MCP SDK e2e client',
      redirect_uris: [REDIRECT],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    }));
  },
);

// --- the MCP server: tokens checked by introspection -------------------------------------------
async function introspect(token) {
  const res = await fetch(`${AUTHMD}/oauth2/introspect`, {
    method: 'POST',
    headers: {
      authorization: 'Basic ' + Buffer.from(`${RS_ID}:${RS_SECRET}`).toString('base64'),
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ token }),
  });
  if (!res.ok) throw new Error(`introspection answered ${res.status}`);
  return res.json();
}

const resourceMetadataUrl = `http://127.0.0.1:${MCP_PORT}/.well-known/oauth-protected-resource/mcp`;
let introspections = 0;
const mcpHost = http.createServer(async (req, res) => {
  try {
    if (req.url === '/.well-known/oauth-protected-resource/mcp') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({
        resource: MCP_URL,
        authorization_servers: [AUTHMD],
        scopes_supported: ['api.read'],
        bearer_methods_supported: ['header'],
      }));
      return;
    }
    if (req.url !== '/mcp') {
      res.writeHead(404).end();
      return;
    }
    const bearer = (req.headers.authorization ?? '').replace(/^Bearer /, '');
    const info = bearer ? await introspect(bearer) : { active: false };
    introspections += bearer ? 1 : 0;
    const audience = [].concat(info.aud ?? []);
    if (!info.active || !audience.includes(MCP_URL)) {
      res.writeHead(401, {
        'www-authenticate': `Bearer resource_metadata="${resourceMetadataUrl}"`,
        'content-type': 'application/json',
      });
      res.end(JSON.stringify({ error: 'invalid_token' }));
      return;
    }
    req.auth = { token: bearer, clientId: info.client_id, scopes: (info.scope ?? '').split(' '), extra: { sub: info.sub } };
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString()) : undefined;
    const server = new McpServer({ name: 'authmd-e2e', version: '1.0.0' });
    server.tool('whoami', 'Who the bearer token speaks for', async (extra) => ({
      content: [{ type: 'text', text: JSON.stringify({ sub: extra.authInfo?.extra?.sub, client_id: extra.authInfo?.clientId }) }],
    }));
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    res.on('close', () => { transport.close(); server.close(); });
    await server.connect(transport);
    await transport.handleRequest(req, res, body);
  } catch (e) {
    console.error('mcp server:', e);
    if (!res.headersSent) res.writeHead(500).end();
  }
});

// --- the person's browser: cookies kept, redirects followed by hand ------------------------------
const jar = new Map();
async function browse(url, init = {}) {
  const headers = { ...(init.headers ?? {}), cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') };
  const res = await fetch(url, { ...init, headers, redirect: 'manual' });
  for (const c of res.headers.getSetCookie()) {
    const [pair] = c.split(';');
    const i = pair.indexOf('=');
    jar.set(pair.slice(0, i), pair.slice(i + 1));
  }
  return res;
}
const field = (html, name) => {
  const m = html.match(new RegExp(`name="${name}" value="([^"]*)"`));
  return m && m[1].replaceAll('&#38;', '&').replaceAll('&amp;', '&').replaceAll('&#34;', '"').replaceAll('&quot;', '"');
};
const hiddenFields = (html) =>
  [...html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)]
    .map(([, k, v]) => [k, v.replaceAll('&#38;', '&').replaceAll('&amp;', '&').replaceAll('&#34;', '"').replaceAll('&quot;', '"')]);

async function signInAndConsent(authorizeUrl) {
  let res = await browse(authorizeUrl);
  let html = await res.text();
  if (res.status !== 200 || !html.includes('name="password"')) throw new Error(`login page expected, got ${res.status}: ${html}`);
  res = await browse(`${AUTHMD}/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ email: EMAIL, password: PASSWORD, csrf_token: field(html, 'csrf_token'), return_to: field(html, 'return_to') }),
  });
  if (res.status !== 303) throw new Error(`login answered ${res.status}`);
  res = await browse(new URL(res.headers.get('location'), AUTHMD).toString());
  html = await res.text();
  if (!html.includes('MCP SDK e2e client') || !html.includes('describes itself at <strong>localhost</strong>')) {
    throw new Error(`consent page should name the document's client and host: ${html}`);
  }
  step('consent page names the client and the document host');
  const form = new URLSearchParams(hiddenFields(html));
  form.set('decision', 'allow');
  res = await browse(`${AUTHMD}/oauth2/authorize`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: form,
  });
  const back = new URL(res.headers.get('location'));
  if (back.searchParams.get('iss') !== AUTHMD) throw new Error(`RFC 9207 iss missing: ${back}`);
  return back.searchParams.get('code');
}

// --- the MCP client ----------------------------------------------------------------------------
class Provider {
  constructor() { this.info = undefined; this.saved = undefined; this.verifier = undefined; this.code = undefined; }
  get redirectUrl() { return REDIRECT; }
  get clientMetadataUrl() { return DOC_URL; }
  get clientMetadata() {
    return { client_name: 'MCP SDK e2e client', redirect_uris: [REDIRECT], grant_types: ['authorization_code', 'refresh_token'], token_endpoint_auth_method: 'none' };
  }
  clientInformation() { return this.info; }
  saveClientInformation(info) { this.info = info; }
  tokens() { return this.saved; }
  saveTokens(t) { this.saved = t; }
  saveCodeVerifier(v) { this.verifier = v; }
  codeVerifier() { return this.verifier; }
  async redirectToAuthorization(url) {
    if (url.searchParams.get('client_id') !== DOC_URL) throw new Error(`client_id should be the document URL: ${url}`);
    if (url.searchParams.get('resource') !== MCP_URL) throw new Error(`resource should be the MCP server: ${url}`);
    step('authorization request uses the document URL as client_id, no registration');
    this.code = await signInAndConsent(url.toString());
  }
}

async function main() {
  await new Promise((r) => documentHost.listen(DOC_PORT, '127.0.0.1', r));
  await new Promise((r) => mcpHost.listen(MCP_PORT, '127.0.0.1', r));
  const provider = new Provider();
  const client = new Client({ name: 'authmd-e2e-client', version: '1.0.0' });
  try {
    await client.connect(new StreamableHTTPClientTransport(new URL(MCP_URL), { authProvider: provider }));
    throw new Error('the first connection should need authorization');
  } catch (e) {
    if (!(e instanceof UnauthorizedError)) throw e;
  }
  const transport = new StreamableHTTPClientTransport(new URL(MCP_URL), { authProvider: provider });
  await transport.finishAuth(provider.code);
  if (!provider.saved?.access_token || !provider.saved?.refresh_token) throw new Error('tokens expected');
  step('code exchanged for an access and a refresh token');
  await client.connect(transport);
  const result = await client.callTool({ name: 'whoami', arguments: {} });
  const who = JSON.parse(result.content[0].text);
  if (!who.sub || who.client_id !== DOC_URL) throw new Error(`whoami: ${JSON.stringify(who)}`);
  if (introspections < 1) throw new Error('the MCP server never introspected');
  step(`tool call authorised by introspection for ${who.sub}`);
  console.log(`SUB ${who.sub}`);
  await client.close();
}

const watchdog = setTimeout(() => { console.error('timed out'); process.exit(1); }, 60_000);
main()
  .then(() => { clearTimeout(watchdog); documentHost.close(); mcpHost.close(); process.exit(0); })
  .catch((e) => { console.error(e); process.exit(1); });
