#!/usr/bin/env python3
"""A small web service shipped inside a release tree (as `bin/server`), the
application that service-slot tests deploy. Python 3 standard library only.

    SLIPWAY_PORT=8081 bin/server

It listens on 127.0.0.1:$SLIPWAY_PORT and logs `listening on PORT` to stderr
once it does. Its release is the first line of the tree's `VERSION` file
(beside `bin/`), else $SLIPWAY_RELEASE.

    GET /          -> 200 "RELEASE pid=PID"
    GET /health    -> 200 "ok" (500 in mode fail-check)
    POST /write    -> appends the body and a newline to the data file; 200 "wrote N bytes"
    GET /data      -> the data file (404 while it does not exist)

The data file is $APP_DATA_FILE, else $SLIPWAY_ROOT/shared/app-data.log.

The tree's `MODE` file (beside `bin/`; absent means ok) makes it misbehave.
Its first word is the mode, an optional second one a number of seconds:

    ok               behave
    fail-check       /health answers 500; / still works
    hang             never listen; sleep until killed
    exit             print an error line to stderr and exit 1 at once
    slow-start SECS  sleep SECS (default 1) before listening
    ignore-term      ignore SIGTERM (only SIGKILL stops it)

Otherwise SIGTERM stops it cleanly: `stopping on SIGTERM` on stderr, exit 0.
"""

import http.server
import os
import signal
import sys
import time

TREE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def say(line):
    print(f"server: {line}", file=sys.stderr, flush=True)


def read_tree_file(name):
    try:
        with open(os.path.join(TREE, name)) as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def release():
    version = read_tree_file("VERSION")
    if version:
        return version.splitlines()[0].strip()
    return os.environ.get("SLIPWAY_RELEASE", "unknown")


def data_file():
    if os.environ.get("APP_DATA_FILE"):
        return os.environ["APP_DATA_FILE"]
    if os.environ.get("SLIPWAY_ROOT"):
        return os.path.join(os.environ["SLIPWAY_ROOT"], "shared", "app-data.log")
    return None


MODE, *MODE_ARGS = (read_tree_file("MODE") or "ok").split()
RELEASE = release()


class Handler(http.server.BaseHTTPRequestHandler):
    def reply(self, status, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Release", RELEASE)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/":
            self.reply(200, f"{RELEASE} pid={os.getpid()}\n")
        elif self.path == "/health":
            if MODE == "fail-check":
                self.reply(500, "failing (MODE fail-check)\n")
            else:
                self.reply(200, "ok\n")
        elif self.path == "/data":
            path = data_file()
            try:
                with open(path or "", "rb") as f:
                    self.reply(200, f.read().decode(errors="replace"))
            except FileNotFoundError:
                self.reply(404, f"no data file ({path})\n")
        else:
            self.reply(404, "not found\n")

    def do_POST(self):
        if self.path != "/write":
            self.reply(404, "not found\n")
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = data_file()
        if path is None:
            self.reply(500, "no data file: set APP_DATA_FILE or SLIPWAY_ROOT\n")
            return
        with open(path, "ab") as f:
            f.write(body + b"\n")
        self.reply(200, f"wrote {len(body)} bytes\n")

    def log_message(self, fmt, *args):
        pass  # one line at start, errors only: logs stay small under load


class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = True


def stop(*_):
    say("stopping on SIGTERM")
    sys.exit(0)


def main():
    port = os.environ.get("SLIPWAY_PORT")
    if not port or not port.isdigit():
        say(f"SLIPWAY_PORT must be a port number, got {port!r}")
        sys.exit(2)
    if MODE not in ("ok", "fail-check", "hang", "exit", "slow-start", "ignore-term"):
        say(f"unknown MODE {MODE!r}")
        sys.exit(2)
    if MODE == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, stop)
    if MODE == "exit":
        say("refusing to start (MODE exit)")
        sys.exit(1)
    if MODE == "hang":
        say("hanging before listening (MODE hang)")
        while True:
            time.sleep(3600)
    if MODE == "slow-start":
        time.sleep(float(MODE_ARGS[0]) if MODE_ARGS else 1.0)
    server = Server(("127.0.0.1", int(port)), Handler)
    say(f"{RELEASE} listening on {port}")
    server.serve_forever(poll_interval=0.2)


main()
