#!/usr/bin/env bash
# Runs a real Apache Kafka broker, or a cluster of them, on 127.0.0.1, without
# Docker and without a Kafka download: the broker's jars are resolved from Maven
# Central with kafka/pom.xml. Each node is one JVM in KRaft combined mode (broker
# and controller): one node by default; KAFKA_NODES=3 makes a cluster of three
# brokers whose controller quorum has three voters, so that any one node can be
# lost (three more JVMs for separate controllers would not fit a small machine,
# and a combined quorum of three survives the same single loss).
#
# Usage: scripts/kafka-local.sh start|stop|status|brokers|quorum-leader|version|check [NODE]
#
#   start    resolve the jars (first time only), write the config, format the
#            storage (first time only), start every node (or node NODE) in the
#            background and wait until each answers. Exit 0 if already running.
#   stop     stop every node (or node NODE): SIGTERM, then SIGKILL after 30 s.
#            Exit 0 if it was not running.
#   status   print whether each node is running (exit 0 if all are, else 3).
#   brokers  print the bootstrap list (host:port of every node, comma-separated).
#   quorum-leader  print the node id of the controller quorum's leader.
#   version  print the Kafka version pinned in kafka/pom.xml.
#   check    exit 0 if this machine can start the broker: Java 17+, and Maven
#            unless the jars are already resolved; else say what is missing.
#
# Environment:
#   KAFKA_LOCAL_DIR        state dir: jars, config, data, logs, pid file
#                          (default: $HOME/.cache/census-stream/kafka)
#   KAFKA_JARS_DIR         where the jars go (default: $KAFKA_LOCAL_DIR/jars); lets
#                          several state dirs share one download
#   KAFKA_NODES            nodes in the cluster (default: 1); with more than one,
#                          node i keeps its state in $KAFKA_LOCAL_DIR/node-i
#   KAFKA_PORT             client (PLAINTEXT) port of node 1 (default: 9092);
#                          node i listens on KAFKA_PORT + 100 (i - 1)
#   KAFKA_CONTROLLER_PORT  KRaft controller port of node 1 (default: 9093);
#                          node i on KAFKA_CONTROLLER_PORT + 100 (i - 1)
#   KAFKA_HEAP_OPTS        JVM heap options, per node (default: -Xms256m -Xmx1g)
#   KAFKA_START_TIMEOUT    seconds to wait for the broker to answer (default: 60)
#   JAVA_HOME / MVN        Java (17+) and Maven to use (default: from PATH)
#
# Needs Java 17+ always, and Maven only the first time (to fetch the jars).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM="$SCRIPT_DIR/../kafka/pom.xml"

STATE_DIR="${KAFKA_LOCAL_DIR:-$HOME/.cache/census-stream/kafka}"
JAR_DIR="${KAFKA_JARS_DIR:-$STATE_DIR/jars}"
CLUSTER_ID_FILE="$STATE_DIR/cluster.id"
HOST=127.0.0.1

BASE_PORT="${KAFKA_PORT:-9092}"
BASE_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
NODES="${KAFKA_NODES:-1}"
case "$NODES" in '' | *[!0-9]* | 0) echo "kafka-local: error: KAFKA_NODES must be a positive number" >&2 && exit 2 ;; esac
# Replicas of each topic, and how many must have a write: a cluster of three loses a
# node without losing an acknowledged record or refusing writes.
REPLICAS=$((NODES < 3 ? NODES : 3))
MIN_ISR=$((REPLICAS >= 3 ? 2 : 1))

# The node the functions below act on (use_node): its id, ports and folders. One node
# keeps its state in the state dir itself; each of several in its own node-i folder.
use_node() {
    NODE=$1
    local home="$STATE_DIR"
    [ "$NODES" -gt 1 ] && home="$STATE_DIR/node-$NODE"
    NODE_DIR="$home"
    CONF_DIR="$home/config"
    DATA_DIR="$home/data"
    LOG_DIR="$home/logs"
    PID_FILE="$home/kafka.pid"
    VERSION_FILE="$home/running.version"
    PORT=$((BASE_PORT + 100 * (NODE - 1)))
    CONTROLLER_PORT=$((BASE_CONTROLLER_PORT + 100 * (NODE - 1)))
}
use_node 1

# "1@host:port,2@host:port,..." of the controller quorum.
quorum_voters() {
    local i voters=()
    for i in $(seq 1 "$NODES"); do
        voters+=("$i@$HOST:$((BASE_CONTROLLER_PORT + 100 * (i - 1)))")
    done
    (IFS=,; echo "${voters[*]}")
}

# "host:port,host:port,..." of every node's client listener.
bootstrap_list() {
    local i list=()
    for i in $(seq 1 "$NODES"); do
        list+=("$HOST:$((BASE_PORT + 100 * (i - 1)))")
    done
    (IFS=,; echo "${list[*]}")
}
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-60}"
STOP_TIMEOUT=30

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
        --bootstrap-server "$HOST:$PORT" 2>/dev/null | grep "(id: $NODE " >/dev/null
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

# Settings of a node in a cluster of several (none for a single node).
cluster_settings() {
    [ "$NODES" -gt 1 ] || return 0
    cat <<EOF
# A node heartbeats every 0.5 s (default 2 s) and is fenced 2.5 s after it stops (killed,
# frozen; default 9 s): its partitions get new leaders sooner.
broker.session.timeout.ms=2500
broker.heartbeat.interval.ms=500
EOF
}

write_config() {
    mkdir -p "$CONF_DIR" "$DATA_DIR" "$LOG_DIR"
    cat >"$CONF_DIR/server.properties" <<EOF
# Written by scripts/kafka-local.sh on every start: edit the script, not this file.
# Node $NODE of $NODES, KRaft combined mode, static quorum of $NODES voters.
process.roles=broker,controller
node.id=$NODE
controller.quorum.voters=$(quorum_voters)
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$DATA_DIR

# $REPLICAS replicas of every topic, internal ones included; a write needs $MIN_ISR.
offsets.topic.replication.factor=$REPLICAS
transaction.state.log.replication.factor=$REPLICAS
transaction.state.log.min.isr=$MIN_ISR
share.coordinator.state.topic.replication.factor=$REPLICAS
share.coordinator.state.topic.min.isr=$MIN_ISR
default.replication.factor=$REPLICAS
min.insync.replicas=$MIN_ISR

$(cluster_settings)

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

# Launches the current node's JVM in the background (or says it runs already); sets
# LAUNCHED_PID (empty when it was running) and LOG_START (the server.log byte where this
# run's lines begin).
launch_node() {
    local pid
    LAUNCHED_PID=""
    if pid=$(running_pid); then
        say "node $NODE already running (pid $pid, Kafka $(cat "$VERSION_FILE" 2>/dev/null || pinned_version)) on $(broker_address), state in $NODE_DIR"
        return 0
    fi
    rm -f "$PID_FILE"
    for p in "$PORT" "$CONTROLLER_PORT"; do
        port_open "$p" && die "port $p on $HOST is already in use by another process; set KAFKA_PORT / KAFKA_CONTROLLER_PORT"
    done
    write_config
    format_storage

    # The broker logs to server.log; the JVM's own output goes to console.log.
    # Only what this run appends to server.log counts below.
    local console="$LOG_DIR/console.log"
    LOG_START=1
    [ -f "$LOG_DIR/server.log" ] && LOG_START=$(($(wc -c <"$LOG_DIR/server.log") + 1))
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
    LAUNCHED_PID=$!
    echo "$LAUNCHED_PID" >"$PID_FILE"
    say "starting Kafka $(pinned_version) node $NODE (pid $LAUNCHED_PID) on $HOST:$PORT, logs in $LOG_DIR"
}

# Waits until the current node, launched as pid $1 with its lines from server.log byte
# $2 on, logs that it started and answers Kafka requests (ApiVersions) on its port.
await_node() {
    local pid=$1 log_start=$2 console="$LOG_DIR/console.log"
    local deadline=$((SECONDS + START_TIMEOUT)) started=0 launched=$SECONDS
    while [ "$SECONDS" -lt "$deadline" ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$PID_FILE"
            tail -n 20 "$console" >&2 || true
            die "node $NODE exited during start-up; see $LOG_DIR/server.log and $console"
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
            local ver
            ver=$(new_log "$log_start" | logged_version || pinned_version)
            echo "$ver" >"$VERSION_FILE"
            say "node $NODE ready on $HOST:$PORT: Kafka $ver"
            return 0
        fi
        sleep 0.2
    done
    say "node $NODE did not answer on $HOST:$PORT within $START_TIMEOUT s; stopping it" >&2
    cmd_stop "$NODE" >&2 || true
    die "start-up timed out; see $LOG_DIR/server.log"
}

# The nodes a command acts on: node $1 if given, else all of them.
nodes_of() {
    if [ -n "${1:-}" ]; then
        case "$1" in *[!0-9]* | 0) die "no node $1: nodes are 1 to $NODES" ;; esac
        [ "$1" -le "$NODES" ] || die "no node $1: nodes are 1 to $NODES (KAFKA_NODES)"
        echo "$1"
    else
        seq 1 "$NODES"
    fi
}

cmd_start() {
    local t0 t1 t2 i
    t0=$(date +%s%N)
    find_java
    mkdir -p "$STATE_DIR"
    local pids=() starts=() nodes
    nodes=$(nodes_of "${1:-}")
    # The jars are resolved (and replaced when kafka/pom.xml changed) only when a node is to
    # be launched, never under a running one.
    for i in $nodes; do
        use_node "$i"
        running_pid >/dev/null || {
            resolve_jars
            break
        }
    done
    # Every node is launched before any is waited for: a quorum of three elects its
    # leader only once two voters are up.
    t1=$(date +%s%N)
    for i in $nodes; do
        use_node "$i"
        launch_node
        pids+=("$LAUNCHED_PID")
        starts+=("${LOG_START:-1}")
    done
    local k=0
    for i in $nodes; do
        use_node "$i"
        [ -n "${pids[$k]}" ] && await_node "${pids[$k]}" "${starts[$k]}"
        k=$((k + 1))
    done
    t2=$(date +%s%N)
    if [ "$NODES" -gt 1 ]; then
        say "cluster of $NODES nodes ($REPLICAS replicas per topic, min.insync.replicas $MIN_ISR): $(bootstrap_list)"
    else
        say "broker ready on $(bootstrap_list)"
    fi
    say "start-up took $(fmt_secs $((t2 - t1))) s (JVM launch to answering), $(fmt_secs $((t2 - t0))) s in all"
}

# Nanoseconds -> seconds with one decimal.
fmt_secs() {
    local ds=$((($1 + 50000000) / 100000000))
    echo "$((ds / 10)).$((ds % 10))"
}

cmd_stop() {
    local i nodes pid pids=() names=()
    nodes=$(nodes_of "${1:-}")
    # Every node is sent SIGTERM before any is waited for: a node's clean shutdown needs an
    # active controller, and the last voter of a quorum stopped one by one has none left.
    for i in $nodes; do
        use_node "$i"
        if ! pid=$(running_pid); then
            rm -f "$PID_FILE"
            say "node $NODE not running"
            continue
        fi
        say "stopping node $NODE (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        pids+=("$pid")
        names+=("$i")
    done
    local deadline=$((SECONDS + STOP_TIMEOUT)) k
    for k in "${!pids[@]}"; do
        use_node "${names[$k]}"
        pid=${pids[$k]}
        while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "node $NODE still running after $STOP_TIMEOUT s: sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
        fi
        rm -f "$PID_FILE" "$VERSION_FILE"
        say "node $NODE stopped"
    done
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
    local pid i down=0 nodes
    nodes=$(nodes_of "${1:-}")
    for i in $nodes; do
        use_node "$i"
        if pid=$(running_pid); then
            say "node $NODE running (pid $pid) on $(broker_address): Kafka $(cat "$VERSION_FILE" 2>/dev/null || pinned_version), state in $NODE_DIR"
        else
            say "node $NODE not running (pinned Kafka $(pinned_version), state in $NODE_DIR)"
            down=1
        fi
    done
    [ "$down" = 0 ] || return 3
}

# Prints the node id of the controller quorum's leader, asked of the first node that answers.
cmd_quorum_leader() {
    find_java
    local i out leader
    for i in $(seq 1 "$NODES"); do
        use_node "$i"
        running_pid >/dev/null || continue
        out=$(kafka_tool org.apache.kafka.tools.MetadataQuorumCommand \
            --bootstrap-server "$HOST:$PORT" describe --status 2>/dev/null) || continue
        leader=$(echo "$out" | sed -n 's/^LeaderId:[[:space:]]*//p' | head -n 1)
        [ -n "$leader" ] && echo "$leader" && return 0
    done
    die "no running node named the quorum's leader"
}

case "${1:-}" in
    quorum-leader) cmd_quorum_leader ;;
    start) cmd_start "${2:-}" ;;
    stop) cmd_stop "${2:-}" ;;
    status) cmd_status "${2:-}" ;;
    brokers) bootstrap_list ;;
    version) pinned_version ;;
    check) cmd_check ;;
    *)
        echo "usage: $0 start|stop|status|brokers|quorum-leader|version|check [NODE]" >&2
        exit 2
        ;;
esac
