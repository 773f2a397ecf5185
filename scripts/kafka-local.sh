#!/usr/bin/env bash
# Runs a real single-node Apache Kafka broker (KRaft combined mode: broker and
# controller in one JVM) on 127.0.0.1, without Docker and without a Kafka
# download: the broker's jars are resolved from Maven Central with kafka/pom.xml.
#
# Usage: scripts/kafka-local.sh start|stop|status|version|check
#
#   start    resolve the jars (first time only), write the config, format the
#            storage (first time only), start the broker in the background and
#            wait until it answers on KAFKA_PORT. Exit 0 if already running.
#   stop     stop the broker (SIGTERM, then SIGKILL after 30 s). Exit 0 if it
#            was not running.
#   status   print whether the broker is running (exit 0) or not (exit 3).
#   version  print the Kafka version pinned in kafka/pom.xml.
#   check    exit 0 if this machine can start the broker: Java 17+, and Maven
#            unless the jars are already resolved; else say what is missing.
#
# Environment:
#   KAFKA_LOCAL_DIR        state dir: jars, config, data, logs, pid file
#                          (default: $HOME/.cache/census-stream/kafka)
#   KAFKA_JARS_DIR         where the jars go (default: $KAFKA_LOCAL_DIR/jars); lets
#                          several state dirs share one download
#   KAFKA_PORT             client (PLAINTEXT) port (default: 9092)
#   KAFKA_CONTROLLER_PORT  KRaft controller port (default: 9093)
#   KAFKA_HEAP_OPTS        JVM heap options (default: -Xms256m -Xmx1g)
#   KAFKA_START_TIMEOUT    seconds to wait for the broker to answer (default: 60)
#   JAVA_HOME / MVN        Java (17+) and Maven to use (default: from PATH)
#
# Needs Java 17+ always, and Maven only the first time (to fetch the jars).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM="$SCRIPT_DIR/../kafka/pom.xml"

STATE_DIR="${KAFKA_LOCAL_DIR:-$HOME/.cache/census-stream/kafka}"
JAR_DIR="${KAFKA_JARS_DIR:-$STATE_DIR/jars}"
CONF_DIR="$STATE_DIR/config"
DATA_DIR="$STATE_DIR/data"
LOG_DIR="$STATE_DIR/logs"
PID_FILE="$STATE_DIR/kafka.pid"
CLUSTER_ID_FILE="$STATE_DIR/cluster.id"
VERSION_FILE="$STATE_DIR/running.version"

PORT="${KAFKA_PORT:-9092}"
CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-60}"
STOP_TIMEOUT=30
HOST=127.0.0.1

# Largest record batch the broker accepts: a 64 MiB message plus headroom for
# the batch header, key and headers.
MAX_MESSAGE_BYTES=$((65 * 1024 * 1024))

say() { echo "kafka-local: $*"; }
die() {
    echo "kafka-local: error: $*" >&2
    exit 1
}

# --- prerequisites ----------------------------------------------------------

pinned_version() {
    [ -f "$POM" ] || die "$POM not found"
    sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM" | head -n 1
}

find_java() {
    if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then
        JAVA="$JAVA_HOME/bin/java"
    elif command -v java >/dev/null 2>&1; then
        JAVA="$(command -v java)"
    else
        die "java not found: install a Java 17+ runtime (e.g. 'apt-get install openjdk-17-jre-headless') or set JAVA_HOME"
    fi
    # 'openjdk version "17.0.15" ...' -> 17; 'java version "1.8.0_x"' -> 8.
    local v major
    v=$("$JAVA" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n 1)
    major=${v%%.*}
    [ "$major" = 1 ] && major=$(echo "$v" | cut -d. -f2)
    case "$major" in
        '' | *[!0-9]*) die "cannot tell the version of $JAVA; Kafka needs Java 17+" ;;
    esac
    [ "$major" -ge 17 ] || die "$JAVA is Java $v; Kafka $(pinned_version) needs Java 17+ (e.g. 'apt-get install openjdk-17-jre-headless')"
}

# Copies the broker's jars into $JAR_DIR, once per content of kafka/pom.xml.
resolve_jars() {
    local stamp want tmp
    want=$(sha256sum "$POM" | cut -d' ' -f1)
    stamp="$JAR_DIR/.pom.sha256"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    local mvn="${MVN:-mvn}"
    command -v "$mvn" >/dev/null 2>&1 ||
        die "mvn not found: install Maven 3.6+ (e.g. 'apt-get install maven'); it is needed once to fetch Kafka's jars"
    say "resolving Kafka $(pinned_version) jars from Maven Central into $JAR_DIR"
    tmp="$JAR_DIR.tmp.$$"
    rm -rf "$tmp"
    mkdir -p "$(dirname "$JAR_DIR")"
    # Maven's output goes to a log file, shown only if it fails.
    if ! "$mvn" -B -Dstyle.color=never -f "$POM" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" \
        >"$STATE_DIR/maven.log" 2>&1; then
        rm -rf "$tmp"
        tail -n 30 "$STATE_DIR/maven.log" >&2
        die "Maven could not resolve the jars of $POM (full output in $STATE_DIR/maven.log)"
    fi
    echo "$want" >"$tmp/.pom.sha256"
    rm -rf "$JAR_DIR"
    mv "$tmp" "$JAR_DIR"
}

# --- process helpers --------------------------------------------------------

# Prints the pid of the broker started from this state dir, if it is running.
running_pid() {
    [ -f "$PID_FILE" ] || return 1
    local pid args
    pid=$(cat "$PID_FILE" 2>/dev/null) || return 1
    case "$pid" in '' | *[!0-9]*) return 1 ;; esac
    kill -0 "$pid" 2>/dev/null || return 1
    # Guard against a recycled pid: it must be kafka.Kafka with our config.
    args=$(ps -o args= -p "$pid" 2>/dev/null) || return 1
    case "$args" in
        *kafka.Kafka*"$CONF_DIR/server.properties"*) echo "$pid" ;;
        *) return 1 ;;
    esac
}

# "host:port" the running broker was configured with (KAFKA_PORT may differ now).
broker_address() {
    sed -n 's|^advertised.listeners=PLAINTEXT://||p' "$CONF_DIR/server.properties" 2>/dev/null |
        grep . || echo "$HOST:$PORT"
}

port_open() {
    (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# Runs a Kafka tool class from the jars, logging only warnings to stderr.
kafka_tool() {
    "$JAVA" -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
        -Dlog4j2.configurationFile="$CONF_DIR/tools-log4j2.properties" \
        -cp "$JAR_DIR/*" "$@"
}

# server.log from byte $1 on (what the current run wrote), or all of it if it
# has been rotated since (it is then shorter than that).
new_log() {
    local from=$1 size
    [ -f "$LOG_DIR/server.log" ] || return 0
    size=$(wc -c <"$LOG_DIR/server.log")
    [ "$size" -ge $((from - 1)) ] || from=1
    tail -c "+$from" "$LOG_DIR/server.log"
}

# True if the broker answers an ApiVersions request on the client port.
broker_answers() {
    local limit=()
    command -v timeout >/dev/null 2>&1 && limit=(timeout 20)
    ${limit[@]+"${limit[@]}"} "$JAVA" -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
        -Dlog4j2.configurationFile="$CONF_DIR/tools-log4j2.properties" \
        -cp "$JAR_DIR/*" org.apache.kafka.tools.BrokerApiVersionsCommand \
        --bootstrap-server "$HOST:$PORT" 2>/dev/null | grep "(id: 1 " >/dev/null
}

# "x (commit y)" from the broker's "Kafka version: x" / "Kafka commitId: y"
# log lines, read from stdin.
logged_version() {
    local lines v c
    lines=$(grep -o 'Kafka \(version\|commitId\): [^ ]*' || true)
    v=$(echo "$lines" | sed -n 's/^Kafka version: //p' | head -n 1)
    c=$(echo "$lines" | sed -n 's/^Kafka commitId: //p' | head -n 1)
    [ -n "$v" ] || return 1
    echo "$v${c:+ (commit $c)}"
}

# --- config -----------------------------------------------------------------

write_config() {
    mkdir -p "$CONF_DIR" "$DATA_DIR" "$LOG_DIR"
    cat >"$CONF_DIR/server.properties" <<EOF
# Written by scripts/kafka-local.sh on every start: edit the script, not this file.
# Single node, KRaft combined mode, static quorum of one voter.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$DATA_DIR

# One broker: every internal topic has a single replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
default.replication.factor=1
min.insync.replicas=1

# Topics.
num.partitions=6
auto.create.topics.enable=true
group.initial.rebalance.delay.ms=0

# Messages up to 64 MiB (socket.request.max.bytes defaults to 100 MiB).
message.max.bytes=$MAX_MESSAGE_BYTES
replica.fetch.max.bytes=$MAX_MESSAGE_BYTES
fetch.max.bytes=$MAX_MESSAGE_BYTES

# The log cleaner's dedupe buffer lives on the heap (default 128 MiB).
log.cleaner.dedupe.buffer.size=33554432
EOF

    cat >"$CONF_DIR/log4j2.properties" <<EOF
# Broker logging: INFO to $LOG_DIR/server.log, rotated at 50 MB.
status = warn
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = $LOG_DIR/server.log
appender.file.filePattern = $LOG_DIR/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF

    cat >"$CONF_DIR/tools-log4j2.properties" <<EOF
# Logging of the command-line tools run by scripts/kafka-local.sh.
status = warn
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
EOF
}

# Formats the data dir once (KRaft needs a cluster id and meta.properties).
format_storage() {
    [ -f "$DATA_DIR/meta.properties" ] && return 0
    local cid
    if [ -s "$CLUSTER_ID_FILE" ]; then
        cid=$(cat "$CLUSTER_ID_FILE")
    else
        cid=$(kafka_tool kafka.tools.StorageTool random-uuid | tail -n 1)
        echo "$cid" >"$CLUSTER_ID_FILE"
    fi
    say "formatting $DATA_DIR (cluster id $cid)"
    kafka_tool kafka.tools.StorageTool format --ignore-formatted \
        -t "$cid" -c "$CONF_DIR/server.properties" >/dev/null ||
        die "formatting the storage failed"
}

# --- commands ---------------------------------------------------------------

cmd_start() {
    local t0 pid
    t0=$(date +%s%N)
    find_java
    mkdir -p "$STATE_DIR"

    if pid=$(running_pid); then
        say "already running (pid $pid, Kafka $(cat "$VERSION_FILE" 2>/dev/null || pinned_version)) on $(broker_address), state in $STATE_DIR"
        return 0
    fi
    rm -f "$PID_FILE"
    for p in "$PORT" "$CONTROLLER_PORT"; do
        port_open "$p" && die "port $p on $HOST is already in use by another process; set KAFKA_PORT / KAFKA_CONTROLLER_PORT"
    done

    resolve_jars
    write_config
    format_storage

    # The broker logs to server.log; the JVM's own output goes to console.log.
    # Only what this run appends to server.log counts below.
    local t1 console="$LOG_DIR/console.log" log_start
    log_start=1
    [ -f "$LOG_DIR/server.log" ] && log_start=$(($(wc -c <"$LOG_DIR/server.log") + 1))
    t1=$(date +%s%N)
    : >"$console"
    # setsid: the broker outlives the shell that started it (no SIGHUP/SIGINT).
    local launcher=()
    command -v setsid >/dev/null 2>&1 && launcher=(setsid)
    # shellcheck disable=SC2086 # HEAP_OPTS holds several JVM options
    nohup ${launcher[@]+"${launcher[@]}"} "$JAVA" $HEAP_OPTS \
        -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
        -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
        -Dkafka.logs.dir="$LOG_DIR" \
        -Dlog4j2.configurationFile="$CONF_DIR/log4j2.properties" \
        -cp "$JAR_DIR/*" kafka.Kafka "$CONF_DIR/server.properties" \
        >>"$console" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$PID_FILE"
    say "starting Kafka $(pinned_version) (pid $pid) on $HOST:$PORT, logs in $LOG_DIR"

    # Wait for the broker to log that it started, then make sure it answers
    # Kafka requests (ApiVersions) on the client port.
    local deadline=$((SECONDS + START_TIMEOUT)) started=0 launched=$SECONDS
    while [ "$SECONDS" -lt "$deadline" ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$PID_FILE"
            tail -n 20 "$console" >&2 || true
            die "the broker exited during start-up; see $LOG_DIR/server.log and $console"
        fi
        # grep without -q reads to the end: with -q it would stop at the match, and `tail` in
        # new_log would die of SIGPIPE, failing the pipeline (pipefail) when a restart on old
        # data has logged more than a pipe holds after the line.
        if [ "$started" = 0 ] && new_log "$log_start" | grep 'Kafka Server started' >/dev/null; then
            started=1
        fi
        # The line can be missed: server.log may roll over between the launch and the line,
        # which then lands in a rolled file. After 15 s, whether it answers decides alone.
        if [ "$started" = 0 ] && [ $((SECONDS - launched)) -ge 15 ]; then
            started=1
        fi
        if [ "$started" = 1 ] && broker_answers; then
            local t2 ver
            t2=$(date +%s%N)
            ver=$(new_log "$log_start" | logged_version || pinned_version)
            echo "$ver" >"$VERSION_FILE"
            say "broker ready on $HOST:$PORT: Kafka $ver"
            say "start-up took $(fmt_secs $((t2 - t1))) s (JVM launch to answering), $(fmt_secs $((t2 - t0))) s in all"
            return 0
        fi
        sleep 0.2
    done
    say "the broker did not answer on $HOST:$PORT within $START_TIMEOUT s; stopping it" >&2
    cmd_stop >&2 || true
    die "start-up timed out; see $LOG_DIR/server.log"
}

# Nanoseconds -> seconds with one decimal.
fmt_secs() {
    local ds=$((($1 + 50000000) / 100000000))
    echo "$((ds / 10)).$((ds % 10))"
}

cmd_stop() {
    local pid
    if ! pid=$(running_pid); then
        rm -f "$PID_FILE"
        say "not running"
        return 0
    fi
    say "stopping the broker (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "still running after $STOP_TIMEOUT s: sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
    rm -f "$PID_FILE" "$VERSION_FILE"
    say "stopped"
}

cmd_check() {
    find_java
    local stamp="$JAR_DIR/.pom.sha256"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(sha256sum "$POM" | cut -d' ' -f1)" ]; then
        return 0
    fi
    command -v "${MVN:-mvn}" >/dev/null 2>&1 ||
        die "mvn not found: install Maven 3.6+ (e.g. 'apt-get install maven'); it is needed once to fetch Kafka's jars"
}

cmd_status() {
    local pid
    if pid=$(running_pid); then
        say "running (pid $pid) on $(broker_address): Kafka $(cat "$VERSION_FILE" 2>/dev/null || pinned_version), state in $STATE_DIR"
        return 0
    fi
    say "not running (pinned Kafka $(pinned_version), state in $STATE_DIR)"
    return 3
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    version) pinned_version ;;
    check) cmd_check ;;
    *)
        echo "usage: $0 start|stop|status|version|check" >&2
        exit 2
        ;;
esac
