#!/usr/bin/env python3
"""A small static web server standing in for nginx in tests/cli/site.rs.

    web.py ROOT    # serves ROOT/current/public on 127.0.0.1, a free port

Like nginx with `root /srv/site/current/public;`, it resolves the document
root on every request (through the `current` symlink), so the atomic rename
of `current` is picked up at once. Like `nginx -s reload`, SIGHUP reloads its
configuration: ROOT/current/server.json, shipped in each release (here, the
response headers). It writes ROOT/shared/web.pid and, once listening,
ROOT/shared/web.port; it logs every reload and every error response to
ROOT/shared/web.log.
"""

import http.server
import json
import os
import signal
import sys

ROOT = sys.argv[1]
SHARED = os.path.join(ROOT, "shared")
config = {"headers": {}}
reloads = 0


def log(line):
    with open(os.path.join(SHARED, "web.log"), "a") as f:
        f.write(line + "\n")


def reload(*_):
    global config, reloads
    try:
        with open(os.path.join(ROOT, "current", "server.json")) as f:
            config = json.load(f)
    except FileNotFoundError:
        return  # nothing deployed yet
    reloads += 1
    log(f"reload {reloads}: {config['headers'].get('X-Release')}")


def write_atomic(name, text):
    tmp = os.path.join(SHARED, f".{name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, os.path.join(SHARED, name))


class Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args, **kwargs):
        # A path, not a resolved directory: `current` is followed per request.
        super().__init__(*args, directory=os.path.join(ROOT, "current", "public"), **kwargs)

    def end_headers(self):
        for name, value in config["headers"].items():
            self.send_header(name, value)
        super().end_headers()

    def log_request(self, code="-", size="-"):
        if isinstance(code, int) and code >= 400:
            log(f"{self.requestline} -> {code}")

    def log_error(self, fmt, *args):
        log("error: " + fmt % args)


class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = True


signal.signal(signal.SIGHUP, reload)
reload()
server = Server(("127.0.0.1", 0), Handler)
write_atomic("web.pid", f"{os.getpid()}\n")
write_atomic("web.port", f"{server.server_address[1]}\n")
server.serve_forever(poll_interval=0.5)
