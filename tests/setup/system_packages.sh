#!/usr/bin/env bash
# System packages the test suite needs (Debian/Ubuntu): PostgreSQL + PostGIS for the monitoring
# store and STAC API tests, Chromium for the report test. Installs only what is missing; safe to
# re-run. Without root or apt-get it prints what is missing and exits 0 (those tests then skip).
set -euo pipefail

missing=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

command -v dpkg-query >/dev/null || { echo "system_packages: not a Debian system, skipping"; exit 0; }
# PostGIS for the installed PostgreSQL major version (postgresql-15-postgis-3 on bookworm).
pg_major=$(apt-cache policy postgresql 2>/dev/null | sed -n 's/^ *Candidate: \([0-9]*\)+.*/\1/p')
for pkg in postgresql "postgresql-${pg_major:-15}-postgis-3" chromium; do
  have_pkg "$pkg" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO=sudo; else
    echo "system_packages: missing ${missing[*]} (need root to install); those tests will skip"
    exit 0
  fi
else
  SUDO=
fi
echo "system_packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q "${missing[@]}"
