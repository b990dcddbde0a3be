#!/usr/bin/env bash
# Seed the fuzz corpora (fuzz/corpus/<target>/, never committed) from real
# bundles built by slipway: a small tree with every entry kind, a long path
# (GNU long-name header) and a long symlink target (GNU long-link header).
#
#   fuzz/seed.sh [path/to/slipway]     # default: target/debug/slipway
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-${CARGO_TARGET_DIR:-target}/debug/slipway}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export SLIPWAY_STORE=$work/store

long=$(printf 'd%.0s' $(seq 1 120))
mkdir -p "$work/t1/src/$long" "$work/t1/bin" "$work/t2"
printf '<h1>hi</h1>\n' >"$work/t1/src/index.html"
printf 'x' >"$work/t1/src/$long/f"
printf '#!/bin/sh\necho start\n' >"$work/t1/bin/start"
chmod 755 "$work/t1/bin/start"
ln -s src "$work/t1/public"
ln -s "src/$long/f" "$work/t1/deep"
: >"$work/t1/empty"
printf 'one' >"$work/t2/a"

m=fuzz/corpus/manifest_parse
b=fuzz/corpus/bundle_read
mkdir -p "$m" "$b"
for t in t1 t2; do
  "$bin" build --dir "$work/$t" --name "$t" >/dev/null
  "$bin" export "$t" -o "$work/$t.tar.zst" >/dev/null 2>&1
  mkdir -p "$work/x-$t"
  tar --zstd -xf "$work/$t.tar.zst" -C "$work/x-$t"
  cp "$work/x-$t/.slipway/manifest.json" "$m/$t.json"
  { printf '\0'; cat "$work/$t.tar.zst"; } >"$b/$t-zst"
  { printf '\3'; zstd -dc "$work/$t.tar.zst"; } >"$b/$t-tar"
done
# Protocol sessions as a hostile client writes them (for frame_decode): the
# requests a restricted key must not get anything from (docs/security.md).
f=fuzz/corpus/frame_decode
mkdir -p "$f"
python3 - "$f" <<'PY'
import json, struct, sys
out = sys.argv[1]
def frame(msg):
    body = json.dumps(msg).encode()
    return struct.pack(">IB", len(body), 1) + body
hello = {"type": "hello", "protocol": 1, "version": "0.1.0"}
zero = "sha256:" + "0" * 64
sessions = {
    "hook-hostile": {"type": "hook", "kind": "health", "release": "v1", "command": "id > /tmp/x",
                     "env": {"SLIPWAY_ROOT": "/tmp/elsewhere"}, "timeout_ms": 10**15, "retry_for_ms": 10**15},
    "push-many-signatures": {"type": "push", "name": "v1", "id": zero, "link_mode": "hardlink",
                             "pushed_by": "mallory@evil",
                             "signatures": [{"format": "sshsig", "key_fingerprint": "SHA256:%040d" % i,
                                             "signed_at": "2026-01-01T00:00:00Z"} for i in range(40)]},
    "plan-push-hostile-name": {"type": "plan_push", "name": "../../etc", "id": zero, "link_mode": "hardlink",
                               "pushed_by": "mallory@evil", "shared": ["../../.."]},
    "mark-healthy-forged": {"type": "mark_healthy", "name": "v1", "actor": "alice@laptop"},
    "history-by-id": {"type": "history", "limit": 5, "id": zero},
    "rollback-reason-escapes": {"type": "rollback", "actor": "a@b",
                                "reason": "\u001b]0;owned\u0007\nFORGED" + "x" * 5000},
}
for name, msg in sessions.items():
    with open(f"{out}/{name}", "wb") as fh:
        fh.write(frame(hello) + frame(msg))
PY
echo "seeded $m, $b and $f"
