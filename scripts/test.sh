#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need when
# it is missing (as root, through apt-get), then runs every test.
#
#   scripts/test.sh            # all tests
#   scripts/test.sh build_     # only tests whose name contains `build_`
#
# SSH tests start their own throwaway sshd on 127.0.0.1. Under CI=true they
# fail (never skip) when sshd cannot run.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
have sshd || missing+=(openssh-server)
have ssh || missing+=(openssh-client)
have ssh-keygen || missing+=(openssh-client)
have git || missing+=(git)
have zstd || missing+=(zstd)
have tar || missing+=(tar)
have rsync || missing+=(rsync)

if [ ${#missing[@]} -gt 0 ]; then
  # shellcheck disable=SC2207
  missing=($(printf '%s\n' "${missing[@]}" | sort -u))
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing: ${missing[*]}" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
  else
    echo "missing: ${missing[*]}; install them (e.g. sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

cargo test --locked --all-targets "$@"
