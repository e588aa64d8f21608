#!/usr/bin/env bash
# Create (or refresh) the project's virtualenv in .venv with the hub and its test tools installed.
# Re-installs only when pyproject.toml changed, so repeated runs cost a second.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/.venv"
py="${PYTHON:-python3}"

if ! command -v "$py" >/dev/null 2>&1; then
  echo "bootstrap: Python 3.11+ is required (Debian: apt-get install python3 python3-venv)" >&2
  exit 2
fi
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "bootstrap: Python 3.11+ is required; $("$py" --version) found" >&2
  exit 2
fi
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv" || { echo "bootstrap: cannot create a venv (Debian: apt-get install python3-venv)" >&2; exit 2; }
fi
stamp="$venv/.installed-$(sha256sum "$root/pyproject.toml" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "bootstrap: installing the hub and its dependencies into .venv ..."
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -e "$root[test]"
  rm -f "$venv"/.installed-*
  touch "$stamp"
fi
