#!/usr/bin/env bash
# A tour of slipway on a fresh machine (after `git clone`), in a temporary
# directory that is removed at the end:
#
#   1. build slipway (cargo build --release)
#   2. make a sample git project: a tiny static site with a `slipway.toml`
#      [build] section, tagged v1 and v2 with different content
#   3. build both tags into bundles in a fresh local store
#   4. list, inspect and verify them
#   5. export v1 and check it with plain tar and sha256sum
#   6. import it into a second store: the same id
#   7. deploy v1, then v2, to a target of three hosts (local directories:
#      the same protocol as over SSH), with shared data, hooks and a health check
#   8. a deploy whose health check fails on one host: every host switches back
#   9. roll back, look at status and history, verify, prune
#
#   scripts/demo.sh               # the whole tour
#   DEMO_KEEP=1 scripts/demo.sh   # keep the temporary directory to look around
#   SLIPWAY_BIN=/path/to/slipway scripts/demo.sh   # tour that binary, build nothing
#                                 # (the doc test, tests/cli/docs.rs, runs it so)
#
# Every `$ ` line it prints is a command as a reader would type it: plain
# `slipway`, found on PATH, with the store in $SLIPWAY_STORE and the
# target in ./slipway.toml, after the `export` and `cd` lines it printed
# before (tests/cli/setup.rs runs some of them again, pasted).
#
# Each step is a function called from `main` at the bottom; later steps
# (push, deploy, rollback) add their own functions there.
set -euo pipefail
cd "$(dirname "$0")/.."
here=$PWD

if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
step=0
section() {
  step=$((step + 1))
  printf '\n%s== %d. %s%s\n' "$bold" "$step" "$*" "$plain"
}
# Show a command, quoted so that it can be pasted into a shell as it is.
show() {
  local line
  printf -v line '%q ' "$@"
  printf '$ %s\n' "${line% }"
}
# Show a command, then run it (in this shell: `run cd DIR` changes directory).
run() {
  show "$@"
  "$@"
}
# capture VAR CMD...: like `run`, keeping the command's output in VAR too.
capture() {
  local -n into=$1 # bash >= 4.3
  shift
  show "$@"
  into=$("$@")
  printf '%s\n' "$into"
}

work=$(mktemp -d "${TMPDIR:-/tmp}/slipway-demo.XXXXXX")
cleanup() {
  if [ "${DEMO_KEEP:-0}" = 1 ]; then
    echo "kept $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

store="$work/store"
other_store="$work/other-store"
repo="$work/app"
# Set by the steps below.
bin='' v1_id='' v2_id='' again='' imported='' export_file=''

build_slipway() {
  if [ -n "${SLIPWAY_BIN:-}" ]; then
    section "Use slipway at $SLIPWAY_BIN"
    bin=$SLIPWAY_BIN
  else
    section "Build slipway"
    run cargo build --release --locked
    bin="${CARGO_TARGET_DIR:-$here/target}/release/slipway"
  fi
  # `slipway` on PATH is this binary (a link when it has another name),
  # and the demo's store is `$store`, never the user's own.
  local dir
  dir=$(cd "$(dirname "$bin")" && pwd)
  if [ "$(basename "$bin")" != slipway ]; then
    mkdir -p "$work/bin"
    ln -s "$dir/$(basename "$bin")" "$work/bin/slipway"
    dir="$work/bin"
  fi
  export PATH="$dir:$PATH" SLIPWAY_STORE="$store"
  echo "# the commands below run as printed in a shell set up like this one"
  if [ "${DEMO_KEEP:-0}" = 1 ]; then
    echo "# (DEMO_KEEP=1: the directory stays after the demo, to try them in):"
  else
    echo "# (the directory is removed at the end; DEMO_KEEP=1 keeps it to try them in):"
  fi
  # shellcheck disable=SC2016 # `$PATH` is printed for the reader's shell to expand
  printf '$ export PATH=%q:"$PATH" SLIPWAY_STORE=%q\n' "$dir" "$store"
  run slipway --version
}

# Commits in the sample repository get fixed dates and authors, so the
# bundle ids printed by this demo are the same on every run and machine.
git_fixed() {
  local date=$1
  shift
  GIT_AUTHOR_NAME=Demo GIT_AUTHOR_EMAIL=demo@example.com GIT_AUTHOR_DATE=$date \
    GIT_COMMITTER_NAME=Demo GIT_COMMITTER_EMAIL=demo@example.com GIT_COMMITTER_DATE=$date \
    git -C "$repo" "$@"
}

make_project() {
  section "A sample project: a static site, tagged v1 and v2"
  mkdir -p "$repo/site/css"
  git -C "$repo" init -q -b main
  cat >"$repo/slipway.toml" <<'EOF'
# What `slipway build TAG` runs (from the tag's own copy of this file), in a
# clean export of the tag, with SOURCE_DATE_EPOCH = the commit time.
[build]
command = "sh build.sh"
output = "dist"
EOF
  cat >"$repo/build.sh" <<'EOF'
#!/bin/sh
# The "build": copy the site and stamp it with the commit time.
set -eu
rm -rf dist
mkdir -p dist
cp -R site/. dist/
date -u -d "@$SOURCE_DATE_EPOCH" '+built from a commit of %Y-%m-%d %H:%M UTC' >dist/build-info.txt
ln -s index.html dist/home.html
echo "build.sh: $(find dist -type f | wc -l) files in dist/"
EOF
  printf 'body { font-family: sans-serif; color: #222; }\n' >"$repo/site/css/site.css"
  printf '<!doctype html>\n<title>app</title>\n<link rel="stylesheet" href="css/site.css">\n<h1>Hello from v1</h1>\n' \
    >"$repo/site/index.html"
  git_fixed 2024-01-01T12:00:00Z add -A
  git_fixed 2024-01-01T12:00:00Z commit -q -m "v1: first page"
  git_fixed 2024-01-01T12:00:00Z tag -a v1 -m "release v1"

  printf '<!doctype html>\n<title>app</title>\n<link rel="stylesheet" href="css/site.css">\n<h1>Hello from v2</h1>\n<p>Now with a news page.</p>\n' \
    >"$repo/site/index.html"
  printf '<!doctype html>\n<title>news</title>\n<p>v2 is out.</p>\n' >"$repo/site/news.html"
  git_fixed 2024-02-01T12:00:00Z add -A
  git_fixed 2024-02-01T12:00:00Z commit -q -m "v2: news page"
  git_fixed 2024-02-01T12:00:00Z tag -a v2 -m "release v2"
  run git -C "$repo" log --oneline --decorate
}

build_bundles() {
  section "Build both tags into bundles (store: $store)"
  run cd "$repo"
  echo "# slipway build prints exactly the id on stdout; the build's own output goes to stderr"
  capture v1_id slipway build v1
  capture v2_id slipway build v2
  echo "# a dirty working tree changes nothing: the tag alone decides what is built"
  echo "uncommitted" >"$repo/site/index.html"
  capture again slipway build v1
  [ "$again" = "$v1_id" ] || { echo "demo: rebuilding v1 gave another id" >&2; exit 1; }
  git -C "$repo" checkout -q -- site/index.html
  echo "# from here on, the demo works in its directory, where the target's slipway.toml will be"
  run cd "$work"
}

list_inspect_verify() {
  section "List, inspect and verify"
  run slipway list
  echo
  run slipway inspect v1
  echo
  run slipway inspect v2 --json
  echo
  run slipway verify v1
  run slipway verify "${v2_id:0:19}"   # a unique id prefix works as well as a name
}

export_bundle() {
  section "Export v1 and check it with plain tools"
  export_file="$work/v1.tar.zst"
  run slipway export v1 -o "$export_file"
  run tar --zstd -tvf "$export_file"
  echo "# the id is the sha256 of the manifest inside the archive:"
  printf '$ tar --zstd -xOf %s .slipway/manifest.json | sha256sum\n' "$export_file"
  tar --zstd -xOf "$export_file" .slipway/manifest.json | sha256sum
  echo "# provenance travels beside the archive, in the sidecar:"
  run cat "$export_file.meta.json"
}

import_bundle() {
  section "Import it into a second store: the same id"
  echo "# --store names a second, empty store for these commands (it wins over \$SLIPWAY_STORE)"
  capture imported slipway --store "$other_store" import "$export_file"
  run slipway --store "$other_store" list
  run slipway --store "$other_store" verify v1
  if [ "$imported" = "$v1_id" ]; then
    echo "same id in both stores: $imported"
  else
    echo "demo: imported $imported, expected $v1_id" >&2
    exit 1
  fi
}

hosts_dir="$work/hosts"

write_target() {
  local health=$1
  cat >"$work/slipway.toml" <<TOML
# Three "hosts" of one target. Local paths speak the same protocol as
# ssh://[user@]host/root targets, without SSH.
[targets.production]
hosts = ["$hosts_dir/app1", "$hosts_dir/app2", "$hosts_dir/app3"]
shared = ["uploads"]
keep = 3

[targets.production.hooks]
after_activate = "echo reloaded \$SLIPWAY_RELEASE, was \$SLIPWAY_PREVIOUS"
health = '$health'
health_timeout = "3s"
TOML
}

deploy_release() {
  section "Deploy v1, then v2, to three hosts"
  write_target 'test -f index.html'
  run cat slipway.toml
  run slipway deploy v1 -t production
  echo "# the application writes uploads through current/; they live in shared/"
  echo "a photo" >"$hosts_dir/app1/current/uploads/photo.txt"
  run slipway deploy v2 -t production
  run ls -l "$hosts_dir/app1" "$hosts_dir/app1/releases"
  run slipway status -t production
}

failing_deploy() {
  section "A deploy whose health check fails on one host"
  printf '<!doctype html>\n<h1>v3: broken on app2</h1>\n' >"$repo/site/index.html"
  git_fixed 2024-03-01T12:00:00Z commit -qam "v3"
  git_fixed 2024-03-01T12:00:00Z tag -a v3 -m "release v3"
  (cd "$repo" && slipway build v3 >/dev/null)
  write_target "test \"\$SLIPWAY_HOST\" != \"$hosts_dir/app2\""
  show slipway deploy v3 -t production
  local rc=0
  slipway deploy v3 -t production || rc=$?
  echo "# exit status $rc (3: the health check failed, every host was switched back)"
  [ "$rc" = 3 ] || { echo "demo: expected exit 3" >&2; exit 1; }
  run readlink "$hosts_dir/app1/current" "$hosts_dir/app2/current" "$hosts_dir/app3/current"
}

roll_back() {
  section "Roll back, look at the history, verify, prune"
  write_target 'test -f index.html'
  run slipway rollback -t production
  run readlink "$hosts_dir/app1/current"
  run cat "$hosts_dir/app1/current/uploads/photo.txt"
  run slipway history -t production --hosts "$hosts_dir/app1"
  run slipway verify -t production
  run slipway prune -t production --dry-run
}

main() {
  command -v git >/dev/null || { echo "demo: needs git" >&2; exit 1; }
  command -v zstd >/dev/null || { echo "demo: needs zstd (for tar --zstd); e.g. apt-get install zstd" >&2; exit 1; }
  build_slipway
  make_project
  build_bundles
  list_inspect_verify
  export_bundle
  import_bundle
  deploy_release
  failing_deploy
  roll_back
  section "Done"
  echo "v1 $v1_id"
  echo "v2 $v2_id"
}

main "$@"
