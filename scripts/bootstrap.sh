#!/usr/bin/env bash
# Create .venv and install the project with the extras named in $1 (e.g. "test,lint").
# Works on a bare machine with only python3 and make: on Debian/Ubuntu, `python3 -m venv`
# needs the python3-venv package, which we install with apt-get when we are root.
set -euo pipefail
extras="${1:-test}"
py="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  if ! "$py" -m venv .venv 2>/dev/null; then
    rm -rf .venv
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "bootstrap: installing python3-venv with apt-get" >&2
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      "$py" -m venv .venv
    else
      echo "bootstrap: '$py -m venv' failed; install your distribution's python3-venv package" >&2
      exit 1
    fi
  fi
  .venv/bin/python -m pip install -q --upgrade pip
fi
.venv/bin/python -m pip install -q -e ".[$extras]"
