// The Express recipe of docs/recipes.md, run by tests/ops/test_recipes.py: node server.mjs PORT
// GATEWAY_JWKS_URL, GATEWAY_ISSUER, GATEWAY_AUDIENCE: where the gateway's keys are, its tokens.issuer,
// and the route's identity_jwt.audience.
import express from "express";
import { createRemoteJWKSet, jwtVerify } from "jose";

const jwks = createRemoteJWKSet(new URL(process.env.GATEWAY_JWKS_URL)); // cached; refetched on an unknown kid
const issuer = process.env.GATEWAY_ISSUER;
const audience = process.env.GATEWAY_AUDIENCE;

// req.user = the subject of a valid X-Gateway-Identity (route `identity_jwt: {}`); 401 otherwise.
async function gatewayIdentity(req, res, next) {
  const token = req.get("X-Gateway-Identity");
  if (!token) return res.status(401).json({ detail: "no gateway identity" });
  try {
    const { payload } = await jwtVerify(token, jwks, {
      issuer, audience,
      algorithms: ["RS256", "ES256", "EdDSA"], // asymmetric only
      requiredClaims: ["exp", "iat", "iss", "aud", "sub"],
    });
    if (payload.token_type !== "identity") throw new Error("not a gateway identity token");
    if (payload.idp !== issuer) throw new Error("authenticated by an identity provider not accepted here");
    req.user = payload.sub;
    req.claims = payload;
    next();
  } catch (err) {
    res.status(401).json({ detail: `invalid gateway identity: ${err.code || err.message}` });
  }
}

// req.user = the gateway's X-User-Id (route `headers: {X-User-Id: sub}`): only where nothing but the
// gateway can reach this service.
function gatewayUser(req, res, next) {
  const user = req.get("X-User-Id");
  if (!user) return res.status(401).json({ detail: "no gateway user" });
  req.user = user;
  next();
}

const app = express();
app.get("/plain/whoami", gatewayUser, (req, res) => res.json({ upstream: "express", user: req.user }));
app.get("/signed/whoami", gatewayIdentity, (req, res) =>
  res.json({ upstream: "express", user: req.user, roles: req.claims.roles }));
app.listen(Number(process.argv[2]), "127.0.0.1");
