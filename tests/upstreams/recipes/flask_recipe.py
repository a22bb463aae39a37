"""The Flask recipe of docs/recipes.md, run on gunicorn by tests/ops/test_recipes.py.

GATEWAY_JWKS_URL, GATEWAY_ISSUER, GATEWAY_AUDIENCE: where the gateway's keys are, its tokens.issuer, and the
route's identity_jwt.audience."""
import os
from functools import wraps

import jwt
from flask import Flask, abort, g, jsonify, request
from gateway_identity import verify_identity  # the snippet of docs/upstreams.md


def gateway_user(view):
    """g.user = the gateway's X-User-Id (route `headers: {X-User-Id: sub}`); 401 without it.
    Safe only when nothing but the gateway can reach this service."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        user = request.headers.get("X-User-Id")
        if not user:
            abort(401)
        g.user, g.claims = user, None
        return view(*args, **kwargs)
    return wrapper


def gateway_identity(view):
    """g.user = the subject of a valid X-Gateway-Identity (route `identity_jwt: {}`); 401 otherwise."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        token = request.headers.get("X-Gateway-Identity")
        if not token:
            abort(401)
        try:
            claims = verify_identity(token, os.environ["GATEWAY_JWKS_URL"], os.environ["GATEWAY_ISSUER"],
                                     os.environ["GATEWAY_AUDIENCE"])
        except jwt.PyJWTError:
            abort(401)
        g.user, g.claims = claims["sub"], claims
        return view(*args, **kwargs)
    return wrapper


app = Flask(__name__)


@app.get("/plain/whoami")
@gateway_user
def plain_whoami():
    return jsonify(upstream="flask", user=g.user)


@app.get("/signed/whoami")
@gateway_identity
def signed_whoami():
    return jsonify(upstream="flask", user=g.user, roles=g.claims.get("roles"))
