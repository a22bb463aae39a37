"""A small legacy Flask application with its own users, as the http source meets it.

``python -m tests.legacy.flask_app DB PORT SERVICE_KEY`` serves, from the SQLite
file DB (made by ``make_users``):

  POST /api/login          {"username", "password"} (JSON or form) -> 200 {"user": {...}} or 401
  GET  /api/users/<name>   with X-Service-Key -> 200 {"user": {...}}, 404 unknown or inactive, 403 wrong key

Passwords are Werkzeug's own ``generate_password_hash`` (scrypt by default).
"""
from __future__ import annotations

import sqlite3
import sys
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.security import check_password_hash, generate_password_hash
from werkzeug.serving import run_simple

SCHEMA = (
    "CREATE TABLE users (id INTEGER PRIMARY KEY, username VARCHAR(150) UNIQUE NOT NULL, email VARCHAR(254),"
    " password_hash VARCHAR(255) NOT NULL, active BOOLEAN NOT NULL, roles VARCHAR(255) NOT NULL)"
)
# name -> (Werkzeug method, active, roles); every password is "<name>-pw"
USERS = {
    "alice": ("scrypt", True, "editors,reporting"),
    "bob": ("pbkdf2:sha256", True, "editors"),
    "carol": ("scrypt", False, "editors"),
    "hash-werkzeug-scrypt": ("scrypt", True, ""),
    "hash-werkzeug-pbkdf2": ("pbkdf2:sha256:50000", True, ""),
}


def user_rows() -> list[tuple[Any, ...]]:
    return [
        (i + 1, name, f"{name}@example.com", generate_password_hash(f"{name}-pw", method=method), active, roles)
        for i, (name, (method, active, roles)) in enumerate(USERS.items())
    ]


def make_users(path: str) -> None:
    with sqlite3.connect(path) as db:
        db.execute(SCHEMA)
        db.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?)", user_rows())


def create_app(path: str, service_key: str) -> Flask:
    app = Flask(__name__)

    def row(name: str) -> sqlite3.Row | None:
        with sqlite3.connect(path) as db:
            db.row_factory = sqlite3.Row
            return db.execute("SELECT * FROM users WHERE username = ?", (name,)).fetchone()

    def as_json(user: sqlite3.Row) -> dict[str, Any]:
        roles = [r for r in user["roles"].split(",") if r]
        return {"user": {"id": user["id"], "username": user["username"], "email": user["email"], "groups": roles}}

    @app.post("/api/login")
    def login() -> Any:
        data = request.get_json(silent=True) if request.is_json else request.form
        data = data or {}
        user = row(str(data.get("username", "")))
        if user is None or not user["active"] or not check_password_hash(user["password_hash"], str(data.get("password", ""))):
            return jsonify(error="Invalid username or password"), 401
        return jsonify(as_json(user))

    @app.get("/api/users/<name>")
    def user(name: str) -> Any:
        if request.headers.get("X-Service-Key") != service_key:
            return jsonify(error="forbidden"), 403
        found = row(name)
        if found is None or not found["active"]:
            return jsonify(error="not found"), 404
        return jsonify(as_json(found))

    return app


if __name__ == "__main__":
    db_path, port, key = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    run_simple("127.0.0.1", port, create_app(db_path, key), threaded=True)
