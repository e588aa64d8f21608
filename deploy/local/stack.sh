#!/usr/bin/env bash
# Local infrastructure for HSSK Hub without Docker: a real single-node Apache Kafka
# (KRaft, broker+controller in one JVM, jars from Maven Central), a Redis server and a
# PostgreSQL cluster for the warehouse (postgres.sh), all on 127.0.0.1, all with their
# data under one state directory.
#
# Why not Docker: developer machines and CI here have no container engine, and the
# tests need a real broker (consumer groups, compaction, offsets), not a fake.
#
# Usage: deploy/local/stack.sh COMMAND
#   start | stop | status            all services (PostgreSQL through postgres.sh)
#   start-kafka | stop-kafka         only Kafka   (tests stop/restart the broker alone)
#   start-redis | stop-redis         only Redis
#   fetch                            download the Kafka jars into the cache (no-op when cached)
#   env                              print export lines for the hub (eval "$(stack.sh env)")
#   kafka-run CLASS [ARGS...]        run a Kafka CLI class on the cached classpath, e.g.
#                                    kafka-run org.apache.kafka.tools.TopicCommand --list
#                                    (--bootstrap-server is NOT added for you)
#
# Environment (defaults):
#   HSSK_STATE_DIR             <repo>/.hub          data, pid files, logs (git-ignored)
#   HSSK_KAFKA_PORT            9092                 PLAINTEXT listener
#   HSSK_KAFKA_CONTROLLER_PORT 9093                 KRaft controller listener
#   HSSK_REDIS_PORT            6379
#   HSSK_PG_PORT               5432                 PostgreSQL (see postgres.sh)
#   HSSK_KAFKA_VERSION         4.1.2                any 4.x on Maven Central (needs Java 17+)
#   HSSK_CACHE_DIR             ${XDG_CACHE_HOME:-$HOME/.cache}/hssk-hub   downloaded jars
#   HSSK_START_TIMEOUT         60                   seconds to wait for each service
#
# Two stacks can run side by side given distinct HSSK_STATE_DIR and ports (tests use
# .hub-test and 19092/19093/16379): a process counts as ours only if it is tied to our
# state dir (see is_ours), so one stack never stops or reports the other's processes.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd -P)"
KAFKA_ASSETS="$SCRIPT_DIR/kafka"   # pom.xml + log4j2 configs, committed

# realpath -m: absolute and canonical even before the directory exists, so the paths we
# put in command lines are the ones we later compare with /proc/<pid>/{cmdline,cwd}.
STATE_DIR="$(realpath -m "${HSSK_STATE_DIR:-$REPO_ROOT/.hub}")"
KAFKA_PORT="${HSSK_KAFKA_PORT:-9092}"
CTRL_PORT="${HSSK_KAFKA_CONTROLLER_PORT:-9093}"
REDIS_PORT="${HSSK_REDIS_PORT:-6379}"
KAFKA_VERSION="${HSSK_KAFKA_VERSION:-4.1.2}"
CACHE_DIR="$(realpath -m "${HSSK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hssk-hub}")"
START_TIMEOUT="${HSSK_START_TIMEOUT:-60}"
STOP_TIMEOUT=30
HOST=127.0.0.1

KAFKA_HOME="$CACHE_DIR/kafka-$KAFKA_VERSION"
KAFKA_LIBS="$KAFKA_HOME/libs"
KAFKA_MARKER="$KAFKA_HOME/.fetched"

KAFKA_DIR="$STATE_DIR/kafka"
KAFKA_DATA="$KAFKA_DIR/data"
KAFKA_PROPS="$KAFKA_DIR/server.properties"
KAFKA_PID="$KAFKA_DIR/kafka.pid"
KAFKA_CLUSTER_ID="$KAFKA_DIR/cluster.id"
REDIS_DIR="$STATE_DIR/redis"
REDIS_PID="$REDIS_DIR/redis.pid"
LOG_DIR="$STATE_DIR/logs"
KAFKA_LOG="$LOG_DIR/kafka.log"
REDIS_LOG="$LOG_DIR/redis.log"

JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"

log() { printf '%s\n' "$*"; }
err() { printf 'stack.sh: %s\n' "$*" >&2; }
die() { local code="$1"; shift; err "$*"; exit "$code"; }

for p in "$KAFKA_PORT" "$CTRL_PORT" "$REDIS_PORT" "$START_TIMEOUT"; do
    [[ "$p" =~ ^[0-9]+$ ]] || die 2 "not a number: '$p' (check HSSK_*_PORT / HSSK_START_TIMEOUT)"
done

# ---------------------------------------------------------------- helpers

now_ms() { date +%s%3N; }

# bash's /dev/tcp avoids depending on nc/ss; `timeout` guards against a connect that hangs.
port_open() { timeout 1 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null; }

# Who listens on a port, for error messages only (ss may be missing: then say nothing).
port_owner() {
    command -v ss >/dev/null 2>&1 || return 0
    ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:(([^)]*))' | head -n1 || true
}

# Is process $1 our $2 (kafka|redis)? Ours means: started for THIS state dir. That is
# what keeps a recycled pid, the distro's redis, or another stack's processes (a test
# stack next to a dev stack) from being reported or killed.
#  - kafka: a java whose arguments include kafka.Kafka and our server.properties.
#  - redis: a redis-server whose working directory is our redis dir (it chdirs to --dir).
#    Not its command line: redis rewrites that to "redis-server 127.0.0.1:PORT".
# Builtins only on the common path, since our_pid may call this for every process.
is_ours() {
    local pid="$1" kind="$2" comm args line
    read -r comm <"/proc/$pid/comm" 2>/dev/null || return 1
    case "$kind" in
        kafka)
            [[ "$comm" == java ]] || return 1
            mapfile -d '' args <"/proc/$pid/cmdline" 2>/dev/null || return 1
            line=" ${args[*]} "
            [[ "$line" == *" kafka.Kafka $KAFKA_PROPS "* ]] ;;
        redis)
            [[ "$comm" == redis-server ]] || return 1
            # "(deleted)": the state dir was removed under a running redis; still ours
            # to stop (start_redis then replaces it).
            line="$(readlink "/proc/$pid/cwd" 2>/dev/null)" || return 1
            [[ "$line" == "$REDIS_DIR" || "$line" == "$REDIS_DIR (deleted)" ]] ;;
        *) return 1 ;;
    esac
}

# Prints the pid of our running service, found through its pid file or, if that file
# is missing or stale (deleted by hand, a crash between launch and write...), by
# scanning /proc: a broker nobody can find is one nobody can stop.
# Usage: our_pid PIDFILE KIND
our_pid() {
    local pidfile="$1" kind="$2" pid d
    if [[ -s "$pidfile" ]]; then
        pid="$(tr -dc '0-9' <"$pidfile")"
        if [[ -n "$pid" ]] && is_ours "$pid" "$kind"; then
            printf '%s\n' "$pid"
            return 0
        fi
    fi
    for d in /proc/[0-9]*; do
        pid="${d#/proc/}"
        if is_ours "$pid" "$kind"; then
            printf '%s\n' "$pid"
            return 0
        fi
    done
    return 1
}
kafka_pid() { our_pid "$KAFKA_PID" kafka; }
redis_pid() { our_pid "$REDIS_PID" redis; }

# SIGTERM (both services shut down cleanly on it: Kafka flushes and closes its logs,
# Redis fsyncs its AOF), poll until gone, SIGKILL as the last resort.
stop_pid() {
    local name="$1" pid="$2" deadline
    kill -TERM "$pid" 2>/dev/null || return 0
    deadline=$(( $(date +%s) + STOP_TIMEOUT ))
    while kill -0 "$pid" 2>/dev/null; do
        if (( $(date +%s) >= deadline )); then
            err "$name (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.2
    done
    # A zombie (not reaped yet) still answers kill -0; /proc/<pid>/stat says Z.
    while kill -0 "$pid" 2>/dev/null && [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]]; do
        sleep 0.1
    done
}

# One start/stop at a time per state dir: two test processes racing to start the same
# stack would otherwise both format storage or both launch a broker.
lock_state() {
    mkdir -p "$STATE_DIR"
    exec 9>"$STATE_DIR/.stack.lock"
    flock -w 180 9 || die 1 "timed out waiting for another stack.sh on $STATE_DIR"
}

# ---------------------------------------------------------------- java / fetch

require_java() {
    command -v "$JAVA" >/dev/null 2>&1 ||
        die 2 "java not found: install OpenJDK 17+ (Debian: apt-get install openjdk-17-jre-headless)"
    local spec
    spec="$("$JAVA" -XshowSettings:properties -version 2>&1 |
        sed -n 's/^ *java\.specification\.version = //p' | head -n1)"
    spec="${spec#1.}"   # "1.8" -> "8"
    [[ "$spec" =~ ^[0-9]+$ ]] || die 2 "cannot tell the Java version of $JAVA"
    (( spec >= 17 )) ||
        die 2 "Java $spec found, Kafka 4 needs 17+: install OpenJDK 17+ (Debian: apt-get install openjdk-17-jre-headless)"
}

# The marker holds the version and a hash of the POM, so editing the POM (say, the log4j
# version) refetches instead of silently running the old jar set.
fetch_stamp() { printf '%s %s\n' "$KAFKA_VERSION" "$(sha256sum "$KAFKA_ASSETS/pom.xml" | cut -d' ' -f1)"; }

kafka_fetched() { [[ -f "$KAFKA_MARKER" && "$(cat "$KAFKA_MARKER")" == "$(fetch_stamp)" ]]; }

cmd_fetch() {
    require_java
    kafka_fetched && { log "kafka $KAFKA_VERSION jars already in $KAFKA_LIBS"; return 0; }
    command -v mvn >/dev/null 2>&1 ||
        die 2 "mvn not found: install Maven (Debian: apt-get install maven); it downloads Kafka's jars once"

    mkdir -p "$KAFKA_HOME"
    # Several stacks (e.g. dev + test) share the cache: serialise fetches of one version.
    exec 8>"$KAFKA_HOME.lock"
    flock -w 600 8 || die 1 "timed out waiting for another fetch of kafka $KAFKA_VERSION"
    if kafka_fetched; then
        exec 8>&-
        log "kafka $KAFKA_VERSION jars already in $KAFKA_LIBS"
        return 0
    fi

    log "fetching kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_LIBS ..."
    local t0 tmp mvnlog
    t0=$(now_ms)
    tmp="$KAFKA_HOME/libs.partial"
    mvnlog="$KAFKA_HOME/fetch.log"
    rm -rf "$tmp" "$KAFKA_MARKER"
    # The plugin version is pinned: Maven 3.8's default maven-dependency-plugin is too old
    # for these goals' flags. Output goes to a file; it is shown only on failure.
    if ! mvn -B -q -Dstyle.color=never -f "$KAFKA_ASSETS/pom.xml" \
            -Dkafka.version="$KAFKA_VERSION" \
            org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
            -DincludeScope=runtime -DoutputDirectory="$tmp" >"$mvnlog" 2>&1; then
        tail -n 30 "$mvnlog" | sed 's/\x1b\[[0-9;]*m//g' >&2
        die 1 "maven could not fetch kafka $KAFKA_VERSION (is HSSK_KAFKA_VERSION a release on Maven Central?); full log: $mvnlog"
    fi
    ls "$tmp"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null 2>&1 ||
        die 1 "fetch finished but kafka_2.13-$KAFKA_VERSION.jar is missing from $tmp"
    rm -rf "$KAFKA_LIBS"
    mv "$tmp" "$KAFKA_LIBS"
    # Written last: an interrupted fetch leaves no marker and is simply redone.
    fetch_stamp >"$KAFKA_MARKER"
    exec 8>&-
    log "fetched $(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars in $(elapsed "$t0")"
}

# Runs a Kafka CLI class. A small heap and C1-only JIT: these tools live for a second
# or two, where JIT warm-up would cost more than it saves. An array, not a function, so
# it can also be run under `timeout`.
KAFKA_TOOL_JAVA=( "$JAVA" -Xms64m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$KAFKA_ASSETS/tools-log4j2.properties"
    -cp "$KAFKA_LIBS/*" )
kafka_tool() { "${KAFKA_TOOL_JAVA[@]}" "$@"; }

# Elapsed time since $1 (from now_ms) as "4.2s".
elapsed() { local ms=$(( $(now_ms) - $1 )); printf '%d.%ds' $(( ms / 1000 )) $(( ms % 1000 / 100 )); }

# ---------------------------------------------------------------- kafka

write_kafka_config() {
    # Regenerated on every start so a change of ports or of these settings takes effect;
    # the data in log.dirs is what persists, not this file.
    cat >"$KAFKA_PROPS" <<EOF
# Generated by deploy/local/stack.sh at every start; edits here are overwritten.
# Single node, KRaft: this JVM is both broker and the only controller (static voter),
# so no --standalone/bootstrap dance is needed when formatting.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CTRL_PORT
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$CTRL_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$KAFKA_DATA

# One replica of everything. Internal topics also get ONE partition: the default 50
# offsets partitions make the first consumer group on a fresh broker wait for 50 leaders.
default.replication.factor=1
min.insync.replicas=1
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1

# The default 3 s delay is paid by every first join of a consumer group: tests feel it.
group.initial.rebalance.delay.ms=0
# Topics are created on purpose (hub topics create); a typo must fail, not make a topic.
auto.create.topics.enable=false

# The hub accepts MLLP frames up to 10 MiB (HSSK_MLLP_MAX_FRAME_BYTES) and its producers allow that plus 64 KiB
# of headers; at the broker's default (~1 MiB) a larger message was NAKed forever and a big BHYT raw record
# failed its import. The same limit as the cluster (deploy/k8s/base/kafka/cluster.yaml).
message.max.bytes=10551296
replica.fetch.max.bytes=10551296

# Sized for a 2-core machine shared with the hub and its tests.
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
# The log cleaner stays ON (faust changelog topics are compacted) but with a 16 MiB
# dedupe buffer instead of 128 MiB.
log.cleaner.dedupe.buffer.size=16777216
log.cleaner.threads=1
EOF
}

kafka_format_once() {
    # meta.properties is what StorageTool writes; its presence means "formatted", and
    # re-formatting would refuse anyway (or, forced, wipe the data we want to keep).
    if [[ -f "$KAFKA_DATA/meta.properties" ]]; then
        return 0
    fi
    local cid
    if [[ -s "$KAFKA_CLUSTER_ID" ]]; then
        cid="$(cat "$KAFKA_CLUSTER_ID")"
    else
        # A Kafka Uuid: 16 random bytes, URL-safe base64 without padding (22 chars).
        # Kafka itself never hands out ids starting with '-' (CLI parsers take them for
        # options), so neither do we. No JVM needed for this.
        cid="-"
        while [[ "$cid" == -* ]]; do
            cid="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
        done
        printf '%s\n' "$cid" >"$KAFKA_CLUSTER_ID"
    fi
    log "formatting kafka storage (cluster id $cid) in $KAFKA_DATA"
    kafka_tool kafka.tools.StorageTool format -t "$cid" -c "$KAFKA_PROPS" >>"$KAFKA_LOG" 2>&1 ||
        { tail -n 20 "$KAFKA_LOG" >&2; die 1 "kafka storage format failed; log: $KAFKA_LOG"; }
}

kafka_fail() {
    err "$1"
    err "---- last lines of $KAFKA_LOG ----"
    tail -n 40 "$KAFKA_LOG" >&2 || true
    exit 1
}

start_kafka() {
    local pid
    if pid="$(kafka_pid)"; then
        if [[ -f "$KAFKA_DATA/meta.properties" ]]; then
            log "kafka already running on $HOST:$KAFKA_PORT (pid $pid)"
            return 0
        fi
        # Someone deleted the state dir under a running broker: it is serving files
        # that no longer exist. Replace it rather than report it as healthy.
        log "kafka (pid $pid) runs on a deleted state dir; restarting it"
        stop_pid kafka "$pid"
    fi
    rm -f "$KAFKA_PID"
    require_java
    kafka_fetched || cmd_fetch

    local port
    for port in "$KAFKA_PORT" "$CTRL_PORT"; do
        if port_open "$port"; then
            die 1 "port $HOST:$port is already in use by another process $(port_owner "$port"); stop it or set HSSK_KAFKA_PORT / HSSK_KAFKA_CONTROLLER_PORT"
        fi
    done

    mkdir -p "$KAFKA_DATA" "$LOG_DIR"
    # Keep the previous run's log for post-mortems; start this run's log empty so its
    # tail (printed on failure) is about this run only.
    if [[ -f "$KAFKA_LOG" ]]; then mv -f "$KAFKA_LOG" "$KAFKA_LOG.1"; fi
    : >"$KAFKA_LOG"
    write_kafka_config
    kafka_format_once

    local t0
    t0=$(now_ms)
    # setsid: the broker must outlive this script and not die with the terminal's or a
    # test runner's process group (Ctrl-C, CI step teardown). nohup for the same reason
    # on SIGHUP. Both exec in place, so $! is the JVM's own pid. 8>&- 9>&- close our
    # lock fds: a daemon inheriting them would hold the lock for its whole life.
    # Heap is fixed at 512 MiB: enough for tests, and predictable on a shared machine.
    setsid nohup "$JAVA" -Xms512m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$KAFKA_ASSETS/log4j2.properties" \
        -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_PROPS" \
        >>"$KAFKA_LOG" 2>&1 </dev/null 8>&- 9>&- &
    pid=$!
    printf '%s\n' "$pid" >"$KAFKA_PID"
    log "kafka starting on $HOST:$KAFKA_PORT (pid $pid, log $KAFKA_LOG)"

    # Readiness, step 1: the listener accepts connections. Polled, with the process
    # checked on every round so a crash is reported at once, not after the timeout.
    local deadline=$(( $(date +%s) + START_TIMEOUT ))
    until port_open "$KAFKA_PORT"; do
        kill -0 "$pid" 2>/dev/null || { rm -f "$KAFKA_PID"; kafka_fail "kafka exited during startup"; }
        (( $(date +%s) < deadline )) ||
            kafka_fail "kafka did not open $HOST:$KAFKA_PORT within ${START_TIMEOUT}s (still running as pid $pid; 'stack.sh stop' to stop it)"
        sleep 0.2
    done
    # Step 2: a real metadata round trip. An open port is not a usable broker: until the
    # controller has unfenced it, clients get errors. The admin client retries internally.
    local left=$(( deadline - $(date +%s) )); (( left > 5 )) || left=5
    if ! timeout "$left" "${KAFKA_TOOL_JAVA[@]}" org.apache.kafka.tools.TopicCommand \
            --bootstrap-server "$HOST:$KAFKA_PORT" --list >/dev/null 2>>"$KAFKA_LOG"; then
        kill -0 "$pid" 2>/dev/null || { rm -f "$KAFKA_PID"; kafka_fail "kafka exited during startup"; }
        kafka_fail "kafka on $HOST:$KAFKA_PORT did not answer a metadata request in time (still running as pid $pid)"
    fi
    log "kafka up on $HOST:$KAFKA_PORT (pid $pid) in $(elapsed "$t0")"
}

stop_kafka() {
    local pid
    if pid="$(kafka_pid)"; then
        log "stopping kafka (pid $pid)"
        stop_pid kafka "$pid"
        log "kafka stopped"
    fi
    rm -f "$KAFKA_PID"
}

# ---------------------------------------------------------------- redis

# Debian's redis-server package starts (and enables) the distro's own redis on 6379
# where systemd/invoke-rc.d allow it. Right after *we* installed it, that instance is a
# side effect of our install and would squat the port, so we stop and disable it.
stop_distro_redis() {
    local stopped=""
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet redis-server 2>/dev/null; then
        systemctl disable --now redis-server >/dev/null 2>&1 && stopped=1
    fi
    if [[ -z "$stopped" && -s /run/redis/redis-server.pid ]] && kill -0 "$(cat /run/redis/redis-server.pid)" 2>/dev/null; then
        service redis-server stop >/dev/null 2>&1 || kill -TERM "$(cat /run/redis/redis-server.pid)" 2>/dev/null || true
        if command -v update-rc.d >/dev/null 2>&1; then update-rc.d redis-server disable >/dev/null 2>&1 || true; fi
        stopped=1
    fi
    if [[ -n "$stopped" ]]; then
        log "stopped and disabled the distro's redis-server service (it would take port 6379)"
    fi
}

require_redis() {
    command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 && return 0
    if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "redis-server not found; installing it with apt-get ..."
        { DEBIAN_FRONTEND=noninteractive apt-get update -q &&
          DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server; } >"${TMPDIR:-/tmp}/hssk-apt-redis.log" 2>&1 ||
            { tail -n 20 "${TMPDIR:-/tmp}/hssk-apt-redis.log" >&2; die 2 "apt-get install redis-server failed"; }
        stop_distro_redis
        command -v redis-server >/dev/null 2>&1 || die 2 "redis-server still missing after apt-get install"
    else
        die 2 "redis-server not found: install redis-server (Debian: sudo apt-get install redis-server)"
    fi
}

redis_fail() {
    err "$1"
    err "---- last lines of $REDIS_LOG ----"
    tail -n 20 "$REDIS_LOG" >&2 || true
    exit 1
}

redis_ping() { [[ "$(timeout 2 redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]; }

start_redis() {
    local pid
    if pid="$(redis_pid)"; then
        if [[ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" == "$REDIS_DIR" ]]; then
            log "redis already running on $HOST:$REDIS_PORT (pid $pid)"
            return 0
        fi
        log "redis (pid $pid) runs on a deleted state dir; restarting it"
        stop_pid redis "$pid"
    fi
    rm -f "$REDIS_PID"
    require_redis
    if port_open "$REDIS_PORT"; then
        local hint="stop it or set HSSK_REDIS_PORT"
        [[ "$REDIS_PORT" == 6379 ]] &&
            hint="if it is the distro's service: sudo systemctl disable --now redis-server (or sudo service redis-server stop); or set HSSK_REDIS_PORT"
        die 1 "port $HOST:$REDIS_PORT is already in use by another process $(port_owner "$REDIS_PORT"); $hint"
    fi
    mkdir -p "$REDIS_DIR" "$LOG_DIR"

    local t0
    t0=$(now_ms)
    # Our own instance, not the system service: data in the state dir, loopback only.
    # AOF on, RDB snapshots off: every write survives a stop/start, no fork-on-save
    # stalls.
    # 8>&- 9>&-: the daemon must not inherit (and so forever hold) our lock fds.
    # </dev/null: started with stdin closed (a CI step, `demo.sh 0<&-`), redis's event loop gets fd 0, which
    # daemonizing then points at /dev/null: "Error registering the readable event for the module pipe", crash.
    redis-server --port "$REDIS_PORT" --bind "$HOST" --dir "$REDIS_DIR" \
        --daemonize yes --pidfile "$REDIS_PID" --logfile "$REDIS_LOG" \
        --appendonly yes --save '' </dev/null >/dev/null 8>&- 9>&- ||
        redis_fail "redis-server failed to start"

    # redis-server returned as soon as it forked; the daemon may still fail (bad option
    # for this redis version, unwritable dir, AOF damage). It writes its pid file once it
    # is listening, so: fail fast if that pid dies, or if no pid file shows up at all.
    local deadline=$(( $(date +%s) + START_TIMEOUT )) nopid_deadline=$(( $(date +%s) + 10 ))
    until redis_ping; do
        if [[ -s "$REDIS_PID" ]]; then
            kill -0 "$(cat "$REDIS_PID")" 2>/dev/null || redis_fail "redis exited during startup"
        elif (( $(date +%s) >= nopid_deadline )); then
            redis_fail "redis did not start (no $REDIS_PID after 10s)"
        fi
        (( $(date +%s) < deadline )) ||
            redis_fail "redis did not answer PING on $HOST:$REDIS_PORT within ${START_TIMEOUT}s"
        sleep 0.1
    done
    pid="$(redis_pid)" || die 1 "redis answers on $HOST:$REDIS_PORT but $REDIS_PID does not name our process"
    log "redis up on $HOST:$REDIS_PORT (pid $pid) in $(elapsed "$t0")"
}

stop_redis() {
    local pid
    if pid="$(redis_pid)"; then
        log "stopping redis (pid $pid)"
        stop_pid redis "$pid"
        log "redis stopped"
    fi
    rm -f "$REDIS_PID"
}

# ---------------------------------------------------------------- status / env

status_line() {
    local name="$1" port="$2" pid
    if pid="$("${name}_pid")"; then
        if port_open "$port"; then
            log "$name up $HOST:$port pid $pid"
        else
            log "$name starting $HOST:$port pid $pid"
        fi
    else
        log "$name down $HOST:$port"
    fi
}

cmd_status() {
    status_line kafka "$KAFKA_PORT"
    status_line redis "$REDIS_PORT"
    postgres_sh status
}

cmd_env() {
    printf 'export HSSK_KAFKA_BOOTSTRAP=%s\n' "$HOST:$KAFKA_PORT"
    printf 'export HSSK_REDIS_URL=%s\n' "redis://$HOST:$REDIS_PORT/0"
    postgres_sh env
}

postgres_sh() { bash "$SCRIPT_DIR/postgres.sh" "$@"; }

# ---------------------------------------------------------------- main

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

cmd="${1:-}"
[[ $# -gt 0 ]] && shift
case "$cmd" in
    start)       lock_state; start_kafka; start_redis; postgres_sh start ;;
    stop)        lock_state; stop_kafka; stop_redis; postgres_sh stop ;;
    status)      cmd_status ;;
    start-kafka) lock_state; start_kafka ;;
    stop-kafka)  lock_state; stop_kafka ;;
    start-redis) lock_state; start_redis ;;
    stop-redis)  lock_state; stop_redis ;;
    fetch)       cmd_fetch ;;
    env)         cmd_env ;;
    kafka-run)
        [[ $# -ge 1 ]] || die 2 "usage: stack.sh kafka-run CLASS [ARGS...]"
        require_java
        kafka_fetched || cmd_fetch >&2
        kafka_tool "$@" ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
esac
