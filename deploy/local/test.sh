#!/usr/bin/env bash
# Quickstart command 2: install what is needed and run the whole test suite. The integration tests start
# their own stack (test ports, .hub-test state) and stop it at the end. Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bash "$root/deploy/local/bootstrap.sh"

# The compose file is checked with a compose client, which validates without a Docker engine.
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test: installing Debian's docker-compose to validate docker-compose.yml ..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
  else
    echo "test: no compose client; install docker-compose (Debian: sudo apt-get install docker-compose)" >&2
  fi
fi

# The dashboard test drives Debian's Chromium headless through chromedriver: install both if missing.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test: installing Debian's chromium and chromium-driver for the dashboard test ..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "test: no chromium/chromedriver; install them (Debian: sudo apt-get install chromium chromium-driver)" >&2
  fi
fi

# The warehouse tests run a real PostgreSQL (deploy/local/postgres.sh): install Debian's package if missing.
bash "$root/deploy/local/postgres.sh" install

cd "$root"
# Disruptive tests restart Kafka mid-suite; on a loaded 2-core machine it can take over a minute to open its
# port, which the stack's default 60 s wait reported as a failed start (and the tests after it cascaded).
export HSSK_START_TIMEOUT="${HSSK_START_TIMEOUT:-300}"
exec "$root/.venv/bin/python" -m pytest "$@"
