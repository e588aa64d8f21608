#!/usr/bin/env bash
# Quickstart command 1: install what is needed, start the hub on the local stack, run a short demo.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bash "$root/deploy/local/bootstrap.sh"
"$root/.venv/bin/hub" up
"$root/.venv/bin/hub" demo
echo
echo "The hub keeps running: try '.venv/bin/hub status', and '.venv/bin/hub down' to stop it."
