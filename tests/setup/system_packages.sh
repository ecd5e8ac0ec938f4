#!/usr/bin/env bash
# System packages the test suite needs (Debian/Ubuntu): PostgreSQL + PostGIS for the monitoring
# store and STAC API tests, Chromium for the report test. Installs only what is missing; safe to
# re-run. Without root or apt-get it prints what is missing; under CI (CI=true) it then exits 1
# (a missing real part fails the run), elsewhere 0 (those tests skip, see tests/real_parts.py).
set -euo pipefail

missing=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

on_ci() { case "${CI:-}" in 1|true|TRUE|yes) return 0;; *) return 1;; esac; }
give_up() {  # $1: why
  echo "system_packages: $1"
  if on_ci; then exit 1; fi
  exit 0
}
command -v dpkg-query >/dev/null || give_up "not a Debian system: install PostgreSQL + PostGIS and Chromium by hand"
# PostGIS for the installed PostgreSQL major version (postgresql-15-postgis-3 on bookworm).
pg_major=$(apt-cache policy postgresql 2>/dev/null | sed -n 's/^ *Candidate: \([0-9]*\)+.*/\1/p')
for pkg in postgresql "postgresql-${pg_major:-15}-postgis-3" chromium; do
  have_pkg "$pkg" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO=sudo; else
    give_up "missing ${missing[*]} (need root to install); those tests skip (fail under CI)"
  fi
else
  SUDO=
fi
echo "system_packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q "${missing[@]}"
