"""A stdlib http.server upstream that routes on ``unquote(urlparse(path).path)``, as many hand-written
services do (``urlparse`` drops ``;params`` of the last segment), and reads headers the CGI way
(``X_User_Id`` is ``X-User-Id``), as a WSGI/CGI bridge would. It also accepts websocket handshakes:
the first message says what the handshake carried. Usage: stdlib_app.py PORT"""
import base64
import hashlib
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


def handler_for(method: str, path: str) -> str:
    if path in ("/api/admin", "/admin") or path.startswith(("/api/admin/", "/admin/")):
        return "admin"
    if path == "/api" or path.startswith("/api/"):
        return "api"
    if path.startswith("/items/"):
        return "items." + method.lower()
    return "public"


def frame(opcode: int, payload: bytes) -> bytes:
    size = len(payload)
    head = bytes([0x80 | opcode, size]) if size < 126 else bytes([0x80 | opcode, 126]) + size.to_bytes(2, "big")
    return head + payload


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def cgi(self, name: str) -> str | None:
        """A header as CGI sees it: names compared after folding case and ``_``/``-``, repeats joined."""
        key = name.upper().replace("-", "_")
        values = [v for k, v in self.headers.items() if k.upper().replace("-", "_") == key]
        return ",".join(values) if values else None

    def answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        path = unquote(urlparse(self.path).path)
        body = json.dumps({
            "upstream": "stdlib", "handler": handler_for(self.command, path), "method": self.command, "path": path,
            "user": self.cgi("X-User-Id"), "roles": self.cgi("X-User-Roles"),
            "host": self.headers.get("Host"), "headers": dict(self.headers.items()),
        }).encode()
        if self.headers.get("Upgrade", "").lower() == "websocket":
            return self.websocket(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Upstream", "stdlib")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def websocket(self, message: bytes) -> None:
        key = self.headers.get("Sec-WebSocket-Key", "").encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", base64.b64encode(hashlib.sha1(key).digest()).decode())
        self.end_headers()
        self.wfile.write(frame(0x1, message) + frame(0x8, (1000).to_bytes(2, "big")))
        self.wfile.flush()
        self.close_connection = True

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = answer

    def log_message(self, *args) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
