"""The FastAPI recipe of docs/recipes.md, run on uvicorn by tests/ops/test_recipes.py.

GATEWAY_JWKS_URL, GATEWAY_ISSUER, GATEWAY_AUDIENCE: where the gateway's keys are, its tokens.issuer, and the
route's identity_jwt.audience."""
import os
from typing import Annotated, Any

import jwt
from fastapi import Depends, FastAPI, Header, HTTPException
from gateway_identity import verify_identity  # the snippet of docs/upstreams.md


def gateway_user(x_user_id: Annotated[str | None, Header()] = None) -> str:
    """The gateway's X-User-Id (route `headers: {X-User-Id: sub}`); 401 without it.
    Safe only when nothing but the gateway can reach this service."""
    if not x_user_id:
        raise HTTPException(401, "no gateway user")
    return x_user_id


def gateway_identity(x_gateway_identity: Annotated[str | None, Header()] = None) -> dict[str, Any]:
    """The claims of a valid X-Gateway-Identity (route `identity_jwt: {}`); 401 otherwise.
    A plain `def`: FastAPI runs it in its thread pool, so PyJWKClient's blocking fetch never stalls the loop."""
    if not x_gateway_identity:
        raise HTTPException(401, "no gateway identity")
    try:
        return verify_identity(x_gateway_identity, os.environ["GATEWAY_JWKS_URL"], os.environ["GATEWAY_ISSUER"],
                               os.environ["GATEWAY_AUDIENCE"])
    except jwt.PyJWTError as exc:
        raise HTTPException(401, f"invalid gateway identity: {exc}") from None


app = FastAPI()


@app.get("/plain/whoami")
def plain_whoami(user: Annotated[str, Depends(gateway_user)]) -> dict[str, Any]:
    return {"upstream": "fastapi", "user": user}


@app.get("/signed/whoami")
def signed_whoami(claims: Annotated[dict[str, Any], Depends(gateway_identity)]) -> dict[str, Any]:
    return {"upstream": "fastapi", "user": claims["sub"], "roles": claims.get("roles")}
