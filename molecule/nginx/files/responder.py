"""Stand-in for one gunicorn instance in molecule/nginx (test scaffolding).

Answers every request with ``hostname:port`` in the body and the
``X-Served-By`` header. ``/json`` answers a JSON document (with the request's
headers) big enough to be compressed. ``?fail=NAME`` makes the instance called
NAME answer 502 (for any method), so a test can show that nginx retries a GET
on another instance but never re-sends a POST. Each request is logged to the
journal as ``served METHOD PATH``.
"""

import json
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PORT = int(sys.argv[1])
NAME = f"{socket.gethostname()}:{PORT}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as nginx's upstream keepalive expects

    def _reply(self, status, body, content_type="text/plain"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Served-By", NAME)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        url = urlsplit(self.path)
        print(f"served {self.command} {self.path}", flush=True)
        if NAME in parse_qs(url.query).get("fail", []):
            self._reply(502, f"{NAME} failing on purpose\n")
        elif url.path == "/json":
            document = {
                "served_by": NAME,
                "method": self.command,
                "version": self.request_version,
                "headers": dict(self.headers.items()),
                "padding": ["flaskfleet"] * 100,
            }
            self._reply(200, json.dumps(document), "application/json")
        else:
            self._reply(200, f"{NAME}\n")

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _handle

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
