"""A Flask app served by gunicorn 21.2 (CGI-style environ: ``X_User_Id`` and ``X-User-Id`` both become
HTTP_X_USER_ID). Every answer says which handler ran and what identity it saw."""
from flask import Flask, jsonify, request

app = Flask(__name__)


def report(handler: str | None, status: int = 200):
    env = request.environ
    body = {
        "upstream": "gunicorn", "handler": handler, "method": request.method, "path": env.get("PATH_INFO"),
        "user": env.get("HTTP_X_USER_ID"), "roles": env.get("HTTP_X_USER_ROLES"),
        "host": env.get("HTTP_HOST"), "headers": {k: v for k, v in env.items() if k.startswith("HTTP_")},
    }
    return jsonify(body), status, {"X-Upstream": "gunicorn"}


@app.route("/api/admin/users", methods=["GET", "POST", "DELETE"])
@app.route("/admin/users", methods=["GET", "POST", "DELETE"])
def admin():
    return report("admin")


@app.route("/api/items/<item>", methods=["GET", "POST", "DELETE"])
@app.route("/api/<path:rest>", methods=["GET", "POST", "DELETE"])
def api(item=None, rest=None):
    return report("api")


@app.route("/items/<item>", methods=["GET", "POST", "DELETE"])
def items(item):
    return report("items." + request.method.lower())


@app.route("/", methods=["GET", "POST", "DELETE"])
@app.route("/<path:rest>", methods=["GET", "POST", "DELETE"])
def public(rest=None):
    return report("public")


@app.errorhandler(404)
@app.errorhandler(405)
def no_handler(error):
    return report(None, error.code)
