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
echo "seeded $m and $b"
