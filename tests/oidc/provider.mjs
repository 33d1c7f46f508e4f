// An OpenID Connect provider for the console's sign-in test: panva's
// oidc-provider (OpenID Certified), with its development login and consent
// pages. It issues JWT access tokens for the resource "gridcase" carrying
// the claims gridcase's services read (role, org, territory), signed with
// an RSA key made at start, whose public half it writes for the services.
// For tests only: accounts are fixed, any password is accepted.
//
//   node provider.mjs --redirect-uri URL --out DIR
//
// Prints one line, {"issuer": URL, "key": PEM path, "kid": key id}, once it listens.
import { generateKeyPairSync } from "node:crypto";
import { writeFileSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import Provider, { errors } from "oidc-provider";

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, "")] = process.argv[i + 1];
if (!args["redirect-uri"] || !args.out) {
  console.error("usage: node provider.mjs --redirect-uri URL --out DIR");
  process.exit(2);
}

// The demo county's people, by login name.
const ACCOUNTS = {
  "operator-1": { role: "command_centre", org: "cc-990101001", territory: "990101001" },
  "auditor-1": { role: "county_auditor", org: "county-990101", territory: "990101" },
  "utilities-1": { role: "handling_unit", org: "unit.utilities.990101", territory: "unit.utilities.990101" },
};

// gridcase's services, as a resource; their tokens' audience is "gridcase".
const RESOURCE = "urn:gridcase:services";
const kid = "test-idp";
const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: "jwk" }), kid, alg: "RS256", use: "sig" };
const keyFile = path.join(args.out, "idp-public.pem");
writeFileSync(keyFile, publicKey.export({ type: "spki", format: "pem" }));

const server = http.createServer();
server.listen(0, "127.0.0.1", () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: "gridcase-console",
        token_endpoint_auth_method: "none",
        redirect_uris: [args["redirect-uri"]],
        response_types: ["code"],
        grant_types: ["authorization_code"],
        application_type: "native",
      },
    ],
    jwks: { keys: [jwk] },
    pkce: { required: () => true, methods: ["S256"] },
    cookies: { keys: ["gridcase-test-identity-provider"] },
    scopes: ["openid", "gridcase"],
    features: {
      devInteractions: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resource) => {
          if (resource !== RESOURCE) throw new errors.InvalidTarget();
          return {
            scope: "gridcase",
            audience: "gridcase",
            accessTokenTTL: 3600,
            accessTokenFormat: "jwt",
            jwt: { sign: { alg: "RS256" } },
          };
        },
      },
    },
    findAccount: async (ctx, id) =>
      ACCOUNTS[id] ? { accountId: id, claims: async () => ({ sub: id }) } : undefined,
    extraTokenClaims: async (ctx, token) => {
      const account = ACCOUNTS[token.accountId];
      return account ? { role: account.role, org: account.org, territory: account.territory } : {};
    },
  });
  provider.on("server_error", (ctx, error) => console.error("server_error", error));
  server.on("request", provider.callback());
  console.log(JSON.stringify({ issuer, key: keyFile, kid }));
});
for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => server.close(() => process.exit(0)));
