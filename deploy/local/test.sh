#!/usr/bin/env bash
# Quickstart command 2: install what is needed and run the whole test suite. The integration tests start
# their own stack (test ports, .hub-test state) and stop it at the end. Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bash "$root/deploy/local/bootstrap.sh"
cd "$root"
exec "$root/.venv/bin/python" -m pytest "$@"
