"""The lab's alert receiver (test scaffolding, not part of any role): appends every
webhook body Alertmanager POSTs to one JSON line of a file the tests read."""

import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

OUT = sys.argv[2]


class Sink(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(OUT, "ab") as f:
            f.write(body.replace(b"\n", b" ") + b"\n")
        self.send_response(200)
        self.end_headers()


HTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
