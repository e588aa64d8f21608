#!/usr/bin/env bash
# PostgreSQL for the city data warehouse (hub/warehouse), without Docker: Debian's `postgresql`
# package, our own cluster (initdb) in the state directory, started with pg_ctl on loopback only.
# stack.sh calls this for start/stop/status, next to Kafka and Redis.
#
# Usage: deploy/local/postgres.sh COMMAND
#   install    make sure the PostgreSQL server binaries are there (apt-get when root; else say how)
#   start      initdb once, start on 127.0.0.1:$HSSK_PG_PORT, create database `hssk`, wait until it answers
#   stop       fast shutdown of our cluster (only ours: the one whose data dir is in our state dir)
#   status     one line: postgres up|starting|down 127.0.0.1:PORT [pid N]
#   env        print export lines (HSSK_PG_PORT, HSSK_PG_DSN)
#
# Environment (defaults):
#   HSSK_STATE_DIR       <repo>/.hub     the cluster lives in $HSSK_STATE_DIR/postgres/data
#   HSSK_PG_PORT         5432            TCP port on 127.0.0.1 (tests: 15432 + offset, bench: 35432)
#   HSSK_PG_USER         postgres        OS user that runs the server when we are root
#                                        (initdb and postgres refuse to run as root)
#   HSSK_START_TIMEOUT   60              seconds to wait for the server to accept connections
#
# Authentication is `trust`, for loopback TCP only (the server listens on 127.0.0.1 and has no Unix
# socket): this is a local development and test database, never a production one.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd -P)"
STATE_DIR="$(realpath -m "${HSSK_STATE_DIR:-$REPO_ROOT/.hub}")"
PG_PORT="${HSSK_PG_PORT:-5432}"
PG_OS_USER="${HSSK_PG_USER:-postgres}"
START_TIMEOUT="${HSSK_START_TIMEOUT:-60}"
HOST=127.0.0.1
DB_NAME=hssk
DB_SUPERUSER=hssk   # the cluster's superuser (initdb -U), also the owner of database hssk

PG_DIR="$STATE_DIR/postgres"
PG_DATA="$PG_DIR/data"
LOG_DIR="$STATE_DIR/logs"
PG_LOG="$LOG_DIR/postgres.log"

log() { printf '%s\n' "$*"; }
err() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() { local code="$1"; shift; err "$*"; exit "$code"; }

for p in "$PG_PORT" "$START_TIMEOUT"; do
    [[ "$p" =~ ^[0-9]+$ ]] || die 2 "not a number: '$p' (check HSSK_PG_PORT / HSSK_START_TIMEOUT)"
done

now_ms() { date +%s%3N; }
elapsed() { local ms=$(( $(now_ms) - $1 )); printf '%d.%ds' $(( ms / 1000 )) $(( ms % 1000 / 100 )); }
port_open() { timeout 1 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null; }

# Debian keeps the server binaries out of PATH, per major version: take the newest installed.
pg_bindir() {
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
    if [[ -n "$d" && -x "$d/pg_ctl" && -x "$d/initdb" ]]; then
        printf '%s\n' "$d"
    elif command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
        dirname "$(command -v pg_ctl)"
    else
        return 1
    fi
}

# Debian's package creates and starts its own cluster ("main" on 5432) at install. Right after *we*
# installed it, that cluster is a side effect of our install and would squat the port: stop it and
# keep it from starting at boot (stack.sh does the same for the distro's redis).
stop_distro_cluster() {
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet postgresql 2>/dev/null; then
        systemctl disable --now postgresql >/dev/null 2>&1 || true
    fi
    local conf
    for conf in /etc/postgresql/*/main/start.conf; do
        [[ -f "$conf" ]] || continue
        local ver; ver="$(basename "$(dirname "$(dirname "$conf")")")"
        if command -v pg_ctlcluster >/dev/null 2>&1; then pg_ctlcluster "$ver" main stop >/dev/null 2>&1 || true; fi
        printf 'manual\n' >"$conf"
    done
    log "stopped the distro's own PostgreSQL cluster (it would take port 5432); ours runs from $PG_DATA"
}

cmd_install() {
    pg_bindir >/dev/null && return 0
    if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "PostgreSQL server not found; installing Debian's postgresql package with apt-get ..."
        local aptlog="${TMPDIR:-/tmp}/hssk-apt-postgresql.log"
        { DEBIAN_FRONTEND=noninteractive apt-get update -q &&
          DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; } >"$aptlog" 2>&1 ||
            { tail -n 20 "$aptlog" >&2; die 2 "apt-get install postgresql failed; full log: $aptlog"; }
        stop_distro_cluster
        pg_bindir >/dev/null || die 2 "PostgreSQL server binaries still missing after apt-get install postgresql"
    else
        die 2 "PostgreSQL server not found: install it (Debian: sudo apt-get install postgresql)"
    fi
}

# Runs a server binary as the right OS user: ourselves, or $PG_OS_USER when we are root.
as_pg() {
    if [[ "$(id -u)" -eq 0 ]]; then
        runuser -u "$PG_OS_USER" -- "$@"
    else
        "$@"
    fi
}

# The postmaster's pid, if it runs for OUR data dir: postmaster.pid names it, and the process must be a
# postgres whose command line carries our -D (a recycled pid or another stack's server is not ours).
is_ours() {
    local args line
    mapfile -d '' args <"/proc/$1/cmdline" 2>/dev/null || return 1
    line=" ${args[*]} "
    [[ "$line" == *"/postgres -D $PG_DATA "* ]]
}

# postmaster.pid first; if it is gone (state dir deleted under a running server), scan /proc: a
# server nobody can find is one nobody can stop.
pg_pid() {
    local pid d
    if [[ -s "$PG_DATA/postmaster.pid" ]]; then
        pid="$(head -n1 "$PG_DATA/postmaster.pid" 2>/dev/null | tr -dc '0-9')"
        if [[ -n "$pid" ]] && is_ours "$pid"; then printf '%s\n' "$pid"; return 0; fi
    fi
    for d in /proc/[0-9]*; do
        pid="${d#/proc/}"
        if is_ours "$pid"; then printf '%s\n' "$pid"; return 0; fi
    done
    return 1
}

pg_fail() {
    err "$1"
    err "---- last lines of $PG_LOG ----"
    tail -n 30 "$PG_LOG" >&2 || true
    exit 1
}

prepare_dirs() {
    mkdir -p "$PG_DIR" "$LOG_DIR"
    touch "$PG_LOG"
    if [[ "$(id -u)" -eq 0 ]]; then
        id -u "$PG_OS_USER" >/dev/null 2>&1 ||
            die 2 "OS user '$PG_OS_USER' does not exist (Debian's postgresql package creates 'postgres'; or set HSSK_PG_USER)"
        chown "$PG_OS_USER": "$PG_DIR" "$PG_LOG"
        [[ -d "$PG_DATA" ]] && chown -R "$PG_OS_USER": "$PG_DATA"
        # The server user must be able to walk down to its data dir.
        as_pg test -x "$PG_DIR" ||
            die 2 "user '$PG_OS_USER' cannot reach $PG_DIR (a parent directory is not searchable by others)"
    fi
}

initdb_once() {
    [[ -f "$PG_DATA/PG_VERSION" ]] && return 0
    local bindir; bindir="$(pg_bindir)"
    rm -rf "$PG_DATA"
    log "initialising a PostgreSQL cluster in $PG_DATA"
    as_pg "$bindir/initdb" -D "$PG_DATA" -U "$DB_SUPERUSER" --auth-local=trust --auth-host=trust \
        -E UTF8 --locale=C.UTF-8 >>"$PG_LOG" 2>&1 ||
        pg_fail "initdb failed"
    # Loopback TCP only, trust: replaces initdb's file (which also allows replication and ::1).
    as_pg tee "$PG_DATA/pg_hba.conf" >/dev/null <<EOF
# Generated by deploy/local/postgres.sh: local development/test cluster, loopback TCP only.
# TYPE  DATABASE  USER  ADDRESS        METHOD
host    all       all   127.0.0.1/32   trust
EOF
}

psql_hssk() {
    local bindir; bindir="$(pg_bindir)"
    "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$PG_PORT" -U "$DB_SUPERUSER" "$@"
}

cmd_start() {
    local pid
    if pid="$(pg_pid)"; then
        if [[ -f "$PG_DATA/postmaster.pid" ]]; then
            log "postgres already running on $HOST:$PG_PORT (pid $pid)"
            return 0
        fi
        # Someone deleted the state dir under a running server: replace it rather than report it healthy.
        log "postgres (pid $pid) runs on a deleted state dir; restarting it"
        cmd_stop
    fi
    cmd_install
    if port_open "$PG_PORT"; then
        die 1 "port $HOST:$PG_PORT is already in use by another process; stop it or set HSSK_PG_PORT"
    fi
    prepare_dirs
    initdb_once
    if [[ -f "$PG_LOG" ]]; then : >"$PG_LOG"; fi

    local t0 bindir; t0=$(now_ms); bindir="$(pg_bindir)"
    # Settings on the command line, so a changed port takes effect at the next start. No Unix socket:
    # the shared /var/run/postgresql is not ours, and TCP on loopback is all the hub uses.
    # setsid: the server must outlive this script and the test runner's process group.
    # 8>&- 9>&-: it must not inherit stack.sh's lock fds.
    as_pg setsid "$bindir/pg_ctl" start -D "$PG_DATA" -l "$PG_LOG" -s -W \
        -o "-p $PG_PORT -c listen_addresses=$HOST -c unix_socket_directories=''" \
        </dev/null >/dev/null 2>&1 8>&- 9>&- || pg_fail "pg_ctl start failed"

    # Poll until the server accepts connections (pg_isready), checking the postmaster on every round so
    # a crash is reported at once. postmaster.pid appears as soon as the postmaster runs.
    local deadline=$(( $(date +%s) + START_TIMEOUT ))
    until "$bindir/pg_isready" -q -h "$HOST" -p "$PG_PORT" -t 1 2>/dev/null; do
        if [[ -s "$PG_DATA/postmaster.pid" ]] && ! pg_pid >/dev/null; then
            pg_fail "postgres exited during startup"
        fi
        (( $(date +%s) < deadline )) || pg_fail "postgres did not accept connections on $HOST:$PG_PORT within ${START_TIMEOUT}s"
        sleep 0.1
    done
    pid="$(pg_pid)" || pg_fail "postgres answers on $HOST:$PG_PORT but is not the server of $PG_DATA"
    if [[ "$(psql_hssk -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" != 1 ]]; then
        psql_hssk -d postgres -c "CREATE DATABASE $DB_NAME OWNER $DB_SUPERUSER" >>"$PG_LOG" 2>&1 ||
            pg_fail "could not create database $DB_NAME"
    fi
    log "postgres up on $HOST:$PG_PORT (pid $pid, database $DB_NAME) in $(elapsed "$t0")"
}

cmd_stop() {
    local pid bindir
    pid="$(pg_pid)" || return 0
    bindir="$(pg_bindir)" || die 1 "postgres (pid $pid) runs but pg_ctl is not found to stop it"
    log "stopping postgres (pid $pid)"
    if [[ ! -f "$PG_DATA/postmaster.pid" ]]; then
        # No data dir left for pg_ctl: SIGINT is the postmaster's own "fast shutdown".
        kill -INT "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
        log "postgres stopped"
        return 0
    fi
    # fast: roll back open transactions and shut down cleanly (a checkpoint, no recovery at next start).
    as_pg "$bindir/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 60 -s >/dev/null 2>&1 8>&- 9>&- || {
        err "pg_ctl stop -m fast did not finish; trying immediate"
        as_pg "$bindir/pg_ctl" stop -D "$PG_DATA" -m immediate -w -t 30 -s >/dev/null 2>&1 || true
    }
    log "postgres stopped"
}

cmd_status() {
    local pid
    if pid="$(pg_pid)"; then
        if port_open "$PG_PORT"; then log "postgres up $HOST:$PG_PORT pid $pid"; else log "postgres starting $HOST:$PG_PORT pid $pid"; fi
    else
        log "postgres down $HOST:$PG_PORT"
    fi
}

cmd_env() {
    printf 'export HSSK_PG_PORT=%s\n' "$PG_PORT"
    printf 'export HSSK_PG_DSN=%s\n' "postgresql://$DB_SUPERUSER@$HOST:$PG_PORT/$DB_NAME"
}

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

case "${1:-}" in
    install) cmd_install ;;
    start)   cmd_start ;;
    stop)    cmd_stop ;;
    status)  cmd_status ;;
    env)     cmd_env ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
esac
