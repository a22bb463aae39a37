"""The upstream check of docs/upstreams.md (`<!-- upstream-verify -->`), verbatim: every recipe imports it.

tests/ops/test_recipes.py fails when this copy and the documented snippet differ."""
import jwt  # PyJWT[crypto]

_clients: dict[str, jwt.PyJWKClient] = {}

def verify_identity(token: str, jwks_url: str, issuer: str, audience: str, idps: tuple[str, ...] = ()) -> dict:
    """Claims of a valid X-Gateway-Identity header value; raises jwt.PyJWTError otherwise.

    ``idps``: who may have authenticated the caller (the claim ``idp``); by default
    only the gateway itself, so an external IdP's users are refused unless listed.
    """
    client = _clients.setdefault(jwks_url, jwt.PyJWKClient(jwks_url, lifespan=300))
    key = client.get_signing_key_from_jwt(token)  # picks the key by the token's kid; refetches on a new kid
    claims = jwt.decode(
        token, key.key, algorithms=[key.algorithm_name],  # the published key decides the algorithm
        audience=audience, issuer=issuer, options={"require": ["exp", "iat", "iss", "aud", "sub"]},
    )
    if claims.get("token_type") != "identity":
        raise jwt.InvalidTokenError("not a gateway identity token")
    if claims.get("idp") not in (idps or (issuer,)):
        raise jwt.InvalidTokenError("the caller was authenticated by an identity provider not accepted here")
    return claims
