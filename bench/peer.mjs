// node-oidc-provider configured like authmd's bench setup: one confidential client
// (client_secret_basic), client credentials, introspection and revocation, opaque access tokens
// for one resource indicator, default in-memory storage.
import Provider from 'oidc-provider';

const port = Number(process.env.PORT || 3000);
const clientId = process.env.CLIENT_ID || 'bench';
const clientSecret = process.env.CLIENT_SECRET || 'bench-secret';
const resource = process.env.RESOURCE || 'https://api.bench.example';
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  scopes: ['api.read'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({ scope: 'api.read', accessTokenFormat: 'opaque', accessTokenTTL: 3600 }),
    },
  },
});
// Keep the console quiet under load; errors still reach stderr.
provider.on('server_error', (ctx, err) => console.error('server_error', err));
provider.listen(port, '127.0.0.1', () => console.log(`peer listening on ${issuer}`));
