#!/usr/bin/env python3
"""A web service with a PostgreSQL database, shipped inside a release tree:
the application that database-migration tests deploy. Python 3 standard
library only: it speaks PostgreSQL's simple-query protocol itself (trust
authentication, no password), and runs `pg_dump` for backups.

Every program of the tree is a copy of this file; it does what its name says
(`bin/migrate` migrates), or what its first argument says when run as
`dbapp.py COMMAND ...`:

    bin/server          serve on 127.0.0.1:$SLIPWAY_PORT
    bin/migrate         bring the database to the tree's SCHEMA
    bin/migrate --down  revert schema 2 to 1
    bin/schema          print the tree's SCHEMA (what the release expects)
    bin/db-schema       print the database's schema version (0: none yet)
    bin/backup          pg_dump the database; the dump's path is the last line
    bin/intake off|on   pause / resume writes at the proxy (the flag file)

The tree (beside `bin/`) holds `VERSION` (the release's name, else
$SLIPWAY_RELEASE), `SCHEMA` (the schema version it expects, 1 or 2), `MODE`
(ok, fail-check; absent means ok), maybe `MIGRATE_SLEEP` (seconds) and maybe
`ACCEPTS` (the schema versions the server is healthy on, e.g. `1 2` for a
schema-1 release that runs on schema 2 too, as it does: the column schema 2
adds is nullable; absent means SCHEMA only).

Settings come from $SLIPWAY_ROOT/shared/db.env, KEY=VALUE lines written by
the test, so that every slot on every host finds the same database:

    PGHOST, PGPORT, PGUSER, PGDATABASE   where the database is (required)
    PGBIN        the directory of pg_dump (optional; else pg_dump on PATH)
    INTAKE_FLAG  the file whose existence pauses writes (for bin/intake)

The schema:

    1: items(id text primary key, release text); schema_version(version int), one row
    2: items gains `note text` (the v2 server fills it)
    migrations(release text, version int, direction text, root text, at timestamptz)
        one row per version a migrate applied ('up') or reverted ('down'),
        in the transaction that did it

The server (logs `RELEASE listening on PORT` to stderr once it listens;
SIGTERM stops it, exit 0):

    GET /          200 "RELEASE pid=PID schema=SCHEMA"
    GET /health    200 "ok schema=N" when the database's schema version is the
                   tree's SCHEMA, or in ACCEPTS (and MODE is not fail-check),
                   else 500 saying why
    POST /write    body ID: insert (ID, RELEASE[, note]) into items; 200
                   "wrote ID" once committed; the same ID again is a no-op, 200;
                   500 with the database's error otherwise

bin/migrate takes a transaction-scoped advisory lock (two at once run one
after the other; the second finds nothing to do), creates `migrations` if
need be, applies every version from the database's to SCHEMA, recording each,
and commits. With MIGRATE_SLEEP it prints "migrate: holding version N for
SECS s before commit" and sleeps inside the transaction after the changes:
they hold their locks meanwhile (writes to items wait), and a kill commits
nothing. A database ahead of SCHEMA is left alone. Every run of migrate and
backup appends a line to $SLIPWAY_ROOT/shared/dbapp-calls.log
(`migrate RELEASE up pid=PID`), so tests count calls per host.
"""

import datetime
import http.server
import os
import queue
import signal
import socket
import struct
import subprocess
import sys
import time

TREE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCK_KEY = 7_262_024  # the advisory lock migrations take
COMMANDS = ("server", "migrate", "schema", "db-schema", "backup", "intake")


def say(cmd, line, err=True):
    print(f"{cmd}: {line}", file=sys.stderr if err else sys.stdout, flush=True)


def fail(cmd, line, code=1):
    say(cmd, line)
    sys.exit(code)


def read_tree_file(name):
    try:
        with open(os.path.join(TREE, name)) as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


RELEASE = (read_tree_file("VERSION") or os.environ.get("SLIPWAY_RELEASE") or "unknown").splitlines()[0].strip()
SCHEMA = int(read_tree_file("SCHEMA") or "1")
MODE = (read_tree_file("MODE") or "ok").split()[0]
ACCEPTS = sorted({int(v) for v in (read_tree_file("ACCEPTS") or str(SCHEMA)).split()})


def shared(*parts):
    root = os.environ.get("SLIPWAY_ROOT")
    if not root:
        raise SystemExit("dbapp: SLIPWAY_ROOT is not set: the settings are in $SLIPWAY_ROOT/shared/db.env")
    return os.path.join(root, "shared", *parts)


def settings():
    path = shared("db.env")
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise SystemExit(f"dbapp: no {path}: write PGHOST, PGPORT, PGUSER, PGDATABASE there")
    cfg = {}
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            cfg[k.strip()] = v.strip()
    missing = [k for k in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE") if not cfg.get(k)]
    if missing:
        raise SystemExit(f"dbapp: {path} lacks {', '.join(missing)}")
    return cfg


def record_call(line):
    with open(shared("dbapp-calls.log"), "a") as f:
        f.write(f"{line} pid={os.getpid()}\n")


# --- PostgreSQL's simple-query protocol (version 3), trust authentication ---


class PgError(Exception):
    """The server refused a statement; the connection is still usable."""


class PgGone(PgError):
    """The connection is lost (or never was)."""


def lit(value):
    """`value` as an SQL string literal (standard_conforming_strings is on)."""
    if "\0" in value:
        raise PgError("a NUL byte cannot be in a string")
    return "'" + value.replace("'", "''") + "'"


class Pg:
    def __init__(self, cfg, timeout=10):
        self.sock = socket.create_connection((cfg["PGHOST"], int(cfg["PGPORT"])), timeout=timeout)
        self.rf = self.sock.makefile("rb")
        try:
            self.startup(cfg)
        except BaseException:
            self.sock.close()
            raise

    def startup(self, cfg):
        params = b"".join(
            k.encode() + b"\0" + v.encode() + b"\0"
            for k, v in (("user", cfg["PGUSER"]), ("database", cfg["PGDATABASE"]), ("application_name", "dbapp"))
        )
        body = struct.pack("!i", 196608) + params + b"\0"
        self.sock.sendall(struct.pack("!i", len(body) + 4) + body)
        while True:
            kind, data = self.read()
            if kind == b"R":
                (code,) = struct.unpack("!i", data[:4])
                if code != 0:
                    raise PgGone(f"authentication method {code} asked for: the database must trust 127.0.0.1")
            elif kind == b"S":
                name, value = data.rstrip(b"\0").split(b"\0", 1)
                if name == b"standard_conforming_strings" and value != b"on":
                    raise PgGone("standard_conforming_strings is off")
            elif kind == b"E":
                raise PgGone(error_text(data))
            elif kind == b"Z":
                return

    def read(self):
        head = self.rf.read(5)
        if len(head) < 5:
            raise PgGone("the server closed the connection")
        kind, length = head[:1], struct.unpack("!i", head[1:])[0]
        data = self.rf.read(length - 4)
        if len(data) < length - 4:
            raise PgGone("the server closed the connection")
        return kind, data

    def query(self, sql):
        """Run `sql` (one or more statements; together one transaction
        unless it says BEGIN): the rows of the last result, each a list of
        str or None. Raises PgError with the server's error."""
        data = sql.encode() + b"\0"
        self.sock.sendall(b"Q" + struct.pack("!i", len(data) + 4) + data)
        rows, error = [], None
        while True:
            kind, data = self.read()
            if kind == b"T":
                rows = []
            elif kind == b"D":
                (n,) = struct.unpack("!h", data[:2])
                pos, row = 2, []
                for _ in range(n):
                    (size,) = struct.unpack("!i", data[pos : pos + 4])
                    pos += 4
                    if size < 0:
                        row.append(None)
                    else:
                        row.append(data[pos : pos + size].decode())
                        pos += size
                rows.append(row)
            elif kind == b"E":
                error = error_text(data)
            elif kind == b"Z":
                if error:
                    raise PgError(error)
                return rows
            # C (command complete), N (notice), S, I, A: nothing to keep

    def close(self):
        try:
            self.sock.sendall(b"X" + struct.pack("!i", 4))
        except OSError:
            pass
        self.sock.close()


def error_text(data):
    fields = {f[:1]: f[1:].decode(errors="replace") for f in data.split(b"\0") if f}
    return f"{fields.get(b'S', 'ERROR')}: {fields.get(b'M', '?')} ({fields.get(b'C', '?')})"


def db_version(pg):
    rows = pg.query("select to_regclass('schema_version') is not null")
    if rows[0][0] != "t":
        return 0
    rows = pg.query("select version from schema_version")
    return int(rows[0][0]) if rows else 0


# --- bin/server ---


class Pool:
    """Idle connections, reused; a connection that failed is closed, not kept.
    A reused connection found dead (the database restarted) is replaced once:
    every statement the server sends is safe to run twice (inserts say
    `on conflict do nothing`)."""

    def __init__(self, cfg):
        self.cfg, self.idle = cfg, queue.LifoQueue()

    def run(self, sql):
        try:
            pg, reused = self.idle.get_nowait(), True
        except queue.Empty:
            pg, reused = Pg(self.cfg, timeout=5), False
        try:
            rows = pg.query(sql)
        except (PgGone, OSError):
            pg.close()
            if not reused:
                raise
            pg = Pg(self.cfg, timeout=5)
            try:
                rows = pg.query(sql)
            except (PgGone, OSError):
                pg.close()
                raise
            except PgError:
                self.idle.put(pg)
                raise
        except PgError:
            self.idle.put(pg)  # a statement error leaves the connection usable
            raise
        self.idle.put(pg)
        return rows


class Handler(http.server.BaseHTTPRequestHandler):
    pool = None

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
            self.reply(200, f"{RELEASE} pid={os.getpid()} schema={SCHEMA}\n")
        elif self.path == "/health":
            try:
                have = db_version_pooled(self.pool)
            except Exception as e:
                self.reply(500, f"database unreachable: {e}\n")
                return
            if MODE == "fail-check":
                self.reply(500, "failing (MODE fail-check)\n")
            elif have not in ACCEPTS:
                expects = " or ".join(map(str, ACCEPTS))
                self.reply(500, f"schema mismatch: the database is at {have}, {RELEASE} expects {expects}\n")
            else:
                self.reply(200, f"ok schema={have}\n")
        else:
            self.reply(404, "not found\n")

    def do_POST(self):
        if self.path != "/write":
            self.reply(404, "not found\n")
            return
        item = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode(errors="replace").strip()
        if not item or len(item) > 200:
            self.reply(400, "the body is the id to write (1 to 200 characters)\n")
            return
        if SCHEMA >= 2:
            sql = (
                f"insert into items (id, release, note) values ({lit(item)}, {lit(RELEASE)}, "
                f"{lit('written by ' + RELEASE)}) on conflict (id) do nothing"
            )
        else:
            sql = f"insert into items (id, release) values ({lit(item)}, {lit(RELEASE)}) on conflict (id) do nothing"
        try:
            self.pool.run(sql)  # autocommit: committed when the server says ReadyForQuery
        except Exception as e:
            self.reply(500, f"write failed: {e}\n")
            return
        self.reply(200, f"wrote {item}\n")

    def log_message(self, fmt, *args):
        pass  # one line at start, errors only: logs stay small under load


def db_version_pooled(pool):
    if pool.run("select to_regclass('schema_version') is null")[0][0] == "t":
        return 0
    rows = pool.run("select version from schema_version")
    return int(rows[0][0]) if rows else 0


class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = True


def server(args):
    port = os.environ.get("SLIPWAY_PORT")
    if not port or not port.isdigit():
        fail("server", f"SLIPWAY_PORT must be a port number, got {port!r}", 2)
    if MODE not in ("ok", "fail-check"):
        fail("server", f"unknown MODE {MODE!r}", 2)
    Handler.pool = Pool(settings())

    def stop(*_):
        say("server", "stopping on SIGTERM")
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    httpd = Server(("127.0.0.1", int(port)), Handler)
    say("server", f"{RELEASE} listening on {port}")
    httpd.serve_forever(poll_interval=0.2)


# --- bin/migrate ---

UP = {
    1: "create table items (id text primary key, release text);"
    " create table schema_version (version int not null);"
    " insert into schema_version values (0);",
    2: "alter table items add column note text;",
}
DOWN = {2: "alter table items drop column note;"}


def migrate(args):
    down = args == ["--down"]
    if args and not down:
        fail("migrate", f"usage: migrate [--down], got {' '.join(args)}", 2)
    record_call(f"migrate {RELEASE} {'down' if down else 'up'}")
    pause = float(read_tree_file("MIGRATE_SLEEP") or 0)
    pg = Pg(settings())
    try:
        pg.query("begin")
        pg.query(f"select pg_advisory_xact_lock({LOCK_KEY})")
        pg.query(
            "create table if not exists migrations (release text not null, version int not null,"
            " direction text not null default 'up', root text, at timestamptz not null default now())"
        )
        have = db_version(pg)
        if down:
            steps = [(2, DOWN[2], 1)] if have == 2 else []
        else:
            steps = [(v, UP[v], v) for v in range(have + 1, SCHEMA + 1)]
        if not steps:
            pg.query("rollback")
            if not down and have > SCHEMA:
                say("migrate", f"the database is at schema {have}, ahead of {RELEASE} ({SCHEMA}): nothing to do", False)
            else:
                say("migrate", f"the database is at schema {have}: nothing to do", False)
            return
        for version, sql, reached in steps:
            pg.query(sql)
            pg.query(f"update schema_version set version = {reached}")
            pg.query(
                "insert into migrations (release, version, direction, root) values"
                f" ({lit(RELEASE)}, {version}, {lit('down' if down else 'up')}, {lit(os.environ['SLIPWAY_ROOT'])})"
            )
        last = steps[-1][2]
        if pause > 0:
            say("migrate", f"holding version {last} for {pause:g} s before commit", False)
            time.sleep(pause)
        pg.query("commit")
        say("migrate", f"the database went from schema {have} to {last} ({RELEASE})", False)
    except PgError as e:
        fail("migrate", f"failed, nothing committed: {e}")
    finally:
        pg.close()


# --- the small ones ---


def schema(args):
    print(SCHEMA)


def db_schema(args):
    pg = Pg(settings())
    try:
        print(db_version(pg))
    finally:
        pg.close()


def backup(args):
    cfg = settings()
    record_call(f"backup {RELEASE}")
    pg_dump = os.path.join(cfg["PGBIN"], "pg_dump") if cfg.get("PGBIN") else "pg_dump"
    folder = shared("backups")
    os.makedirs(folder, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    path = os.path.join(folder, now.strftime("%Y%m%dT%H%M%S.%fZ") + ".sql")
    tmp = path + ".tmp"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PGHOST": cfg["PGHOST"],
        "PGPORT": cfg["PGPORT"],
        "PGUSER": cfg["PGUSER"],
        "PGCONNECT_TIMEOUT": "5",
    }
    cmd = [pg_dump, "--no-owner", "--no-privileges", "-f", tmp, cfg["PGDATABASE"]]
    try:
        done = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        fail("backup", f"cannot run {pg_dump}: {e}")
    if done.returncode != 0:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        fail("backup", f"{pg_dump} failed ({done.returncode}): {done.stderr.strip()}")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    say("backup", f"{os.path.getsize(path)} bytes of {cfg['PGDATABASE']}", False)
    print(path, flush=True)


def intake(args):
    if args not in (["off"], ["on"]):
        fail("intake", f"usage: intake off|on, got {' '.join(args) or 'nothing'}", 2)
    flag = settings().get("INTAKE_FLAG")
    if not flag:
        fail("intake", f"{shared('db.env')} lacks INTAKE_FLAG", 2)
    if args == ["off"]:
        os.makedirs(os.path.dirname(flag), exist_ok=True)
        with open(flag, "w") as f:
            f.write(f"paused by {RELEASE}\n")
        say("intake", f"off: writes are refused while {flag} exists", False)
    else:
        try:
            os.unlink(flag)
        except FileNotFoundError:
            pass
        say("intake", f"on: {flag} removed", False)


def main():
    name = os.path.basename(sys.argv[0])
    args = sys.argv[1:]
    if name not in COMMANDS:
        if not args or args[0] not in COMMANDS:
            fail("dbapp", f"usage: dbapp.py {{{'|'.join(COMMANDS)}}} [ARGS]", 2)
        name, args = args[0], args[1:]
    run = {
        "server": server,
        "migrate": migrate,
        "schema": schema,
        "db-schema": db_schema,
        "backup": backup,
        "intake": intake,
    }[name]
    try:
        run(args)
    except (PgError, OSError) as e:
        fail(name, f"{type(e).__name__}: {e}")


main()
