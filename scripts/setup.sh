#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu machine: system libraries, virtual environment, packages.
#   scripts/setup.sh          what the app needs (LLVM >= 16 for Sionna RT on the CPU)
#   scripts/setup.sh --test   also Chromium and ChromeDriver for the browser tests
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1

sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi

apt_packages=()
# Dr.Jit (Sionna RT's CPU backend) needs LLVM >= 16; Debian 12's LLVM 15 aborts.
if ! ldconfig -p 2>/dev/null | grep -qE 'libLLVM(-(1[6-9]|[2-9][0-9])\.so|\.so\.(1[6-9]|[2-9][0-9]))'; then
  if [[ -z "${DRJIT_LIBLLVM_PATH:-}" ]]; then apt_packages+=(libllvm19); fi
fi
# npm installs Leaflet for the Scene Builder's box map (below).
if ! command -v npm >/dev/null 2>&1; then apt_packages+=(npm); fi
if [[ $want_test -eq 1 ]] && ! command -v chromium >/dev/null 2>&1; then
  apt_packages+=(chromium chromium-driver)
fi
if [[ ${#apt_packages[@]} -gt 0 ]]; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing system packages: ${apt_packages[*]}"
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${apt_packages[@]}" >/dev/null
  else
    echo "setup: please install ${apt_packages[*]} with your package manager" >&2
    exit 1
  fi
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.installed"
if [[ ! -f "$stamp" || requirements.txt -nt "$stamp" || pyproject.toml -nt "$stamp" ]]; then
  "$VENV/bin/pip" install -q -r requirements.txt
  "$VENV/bin/pip" install -q --no-deps -e .
  touch "$stamp"
fi
# The Scene Builder's box map serves Leaflet and Leaflet.draw from this machine, so it works
# offline: `npm ci` installs the versions and sha512 sums pinned in the committed lock file.
boxmap=pages/components/boxmap
if [[ ! -f "$boxmap/node_modules/.package-lock.json" || "$boxmap/package-lock.json" -nt "$boxmap/node_modules/.package-lock.json" ]]; then
  (cd "$boxmap" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
echo "setup: ok ($("$VENV/bin/python" --version), $(cd "$boxmap" && node -p 'const p = require("./package.json").dependencies; Object.keys(p).map(k => k + " " + p[k]).join(", ")'))"
