# Sourced by the other scripts: checks and, where it can, installs what the build needs
# (CMake >= 3.28 and libclang for lightgbm3-sys), then exports the variables cargo uses.
# Stops with a message naming what to install when it cannot do it itself.

cs_die() {
    echo "census-stream setup: $*" >&2
    exit 1
}

CS_CACHE="${CENSUS_STREAM_CACHE:-$HOME/.cache/census-stream}"
mkdir -p "$CS_CACHE"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CS_CACHE/target}"

command -v cargo >/dev/null 2>&1 || cs_die "cargo not found: install Rust from https://rustup.rs"

cs_cmake_ok() {
    local v
    v=$("$1" --version 2>/dev/null | head -n 1 | awk '{print $3}') || return 1
    [ -n "$v" ] || return 1
    [ "$(printf '%s\n3.28.0\n' "$v" | sort -V | head -n 1)" = "3.28.0" ]
}

if [ -n "${CMAKE:-}" ] && cs_cmake_ok "$CMAKE"; then
    :
elif command -v cmake >/dev/null 2>&1 && cs_cmake_ok "$(command -v cmake)"; then
    export CMAKE="$(command -v cmake)"
elif cs_cmake_ok "$CS_CACHE/venv/bin/cmake"; then
    export CMAKE="$CS_CACHE/venv/bin/cmake"
else
    echo "census-stream setup: CMake >= 3.28 not found; installing it from PyPI into $CS_CACHE/venv" >&2
    command -v python3 >/dev/null 2>&1 ||
        cs_die "CMake >= 3.28 is needed (lightgbm3-sys). Install it (e.g. 'pip install cmake') or python3."
    python3 -m venv "$CS_CACHE/venv" && "$CS_CACHE/venv/bin/pip" install -q 'cmake>=3.28' ||
        cs_die "could not install CMake >= 3.28 from PyPI; install it yourself and set CMAKE=/path/to/cmake"
    export CMAKE="$CS_CACHE/venv/bin/cmake"
fi

cs_find_libclang() {
    local d
    for d in ${LIBCLANG_PATH:-} /usr/lib/llvm-*/lib /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib; do
        # libclang.so.1 or libclang-14.so.1, not libclang-cpp.so (another library).
        if ls "$d"/libclang.so* >/dev/null 2>&1 || ls "$d"/libclang-[0-9]*.so* >/dev/null 2>&1; then
            echo "$d"
            return 0
        fi
    done
    return 1
}

if ! CS_LIBCLANG_DIR=$(cs_find_libclang); then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "census-stream setup: libclang not found; installing libclang-dev with apt-get" >&2
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libclang-dev >/dev/null) ||
            cs_die "apt-get install libclang-dev failed; install libclang (bindgen needs it)"
        CS_LIBCLANG_DIR=$(cs_find_libclang) || cs_die "libclang still not found after installing libclang-dev"
    else
        cs_die "libclang not found (bindgen needs it): run 'sudo apt-get install libclang-dev' (Debian/Ubuntu)"
    fi
fi
export LIBCLANG_PATH="$CS_LIBCLANG_DIR"

# Java 17+ and Maven, for the local Kafka broker of the tests (scripts/kafka-local.sh, which
# knows what it needs): installed with apt-get when running as root on Debian/Ubuntu, else its
# message says what to install.
cs_ensure_java_maven() {
    scripts/kafka-local.sh check 2>/dev/null && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "census-stream setup: Java 17+ or Maven not found; installing them with apt-get" >&2
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless maven >/dev/null) ||
            cs_die "apt-get install default-jre-headless maven failed; install Java 17+ and Maven"
    fi
    scripts/kafka-local.sh check ||
        cs_die "the real-Kafka tests need what is named above (or point KAFKA_BROKERS at a running broker)"
}

# Chromium and its WebDriver (chromedriver), for the dashboard's browser test: installed with
# apt-get (Debian's chromium and chromium-driver) when running as root, else named.
cs_ensure_chromium() {
    command -v chromedriver >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1 && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "census-stream setup: chromium or chromedriver not found; installing them with apt-get" >&2
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) ||
            cs_die "apt-get install chromium chromium-driver failed; install them (the browser test needs both)"
    fi
    command -v chromedriver >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1 ||
        cs_die "the dashboard's browser test needs chromium and chromedriver: install them (Debian: chromium chromium-driver)"
}

# Commands run when the calling script exits (also on failure or Ctrl-C), last added first: each
# service a script starts adds its own stop here, so that one trap stops them all.
CS_ON_EXIT=()
cs_run_on_exit() {
    local i
    for ((i = ${#CS_ON_EXIT[@]} - 1; i >= 0; i--)); do
        eval "${CS_ON_EXIT[i]}" || true
    done
    CS_ON_EXIT=()
}
cs_on_exit() {
    CS_ON_EXIT+=("$(printf '%q ' "$@")")
    trap cs_run_on_exit EXIT
    trap 'exit 130' INT TERM
}

# Starts a throwaway local Kafka broker for tests and benchmarks on port $1 (controller on $1+1),
# with its own state folder and an empty data folder, and stops it when the calling script exits
# (also on failure or Ctrl-C). Sets CS_TEST_BROKERS to its address.
cs_start_test_broker() {
    local port=$1
    cs_ensure_java_maven
    export KAFKA_LOCAL_DIR="$CS_CACHE/kafka-test-$port"
    export KAFKA_JARS_DIR="$CS_CACHE/kafka/jars"
    export KAFKA_PORT="$port"
    export KAFKA_CONTROLLER_PORT=$((port + 1))
    # A broker left over by an interrupted run goes first, then its data: every run starts empty.
    scripts/kafka-local.sh stop >/dev/null
    rm -rf "$KAFKA_LOCAL_DIR/data" "$KAFKA_LOCAL_DIR/cluster.id"
    cs_on_exit scripts/kafka-local.sh stop
    scripts/kafka-local.sh start
    CS_TEST_BROKERS="127.0.0.1:$port"
}

# Starts a throwaway local Kafka cluster of three nodes (scripts/kafka-local.sh with KAFKA_NODES=3)
# for the fault suite: node i on port $1 + 100 (i - 1), its controller on the next port, with its
# own state folder and empty data folders, stopped when the calling script exits. Exports what
# the fault suite reads: KAFKA_CLUSTER_BROKERS (the bootstrap list), KAFKA_CLUSTER_DIR,
# KAFKA_CLUSTER_PORT and KAFKA_CLUSTER_CONTROLLER_PORT.
cs_start_test_cluster() {
    local port=$1
    cs_ensure_java_maven
    export KAFKA_CLUSTER_DIR="$CS_CACHE/kafka-cluster-$port"
    export KAFKA_CLUSTER_PORT="$port"
    export KAFKA_CLUSTER_CONTROLLER_PORT=$((port + 1))
    local cluster=(env KAFKA_NODES=3 KAFKA_LOCAL_DIR="$KAFKA_CLUSTER_DIR"
        KAFKA_JARS_DIR="$CS_CACHE/kafka/jars" KAFKA_PORT="$port"
        KAFKA_CONTROLLER_PORT=$((port + 1)) scripts/kafka-local.sh)
    # A cluster left over by an interrupted run goes first, then its data: every run starts empty.
    "${cluster[@]}" stop >/dev/null
    rm -rf "$KAFKA_CLUSTER_DIR"
    cs_on_exit "${cluster[@]}" stop
    "${cluster[@]}" start
    KAFKA_CLUSTER_BROKERS=$("${cluster[@]}" brokers)
    export KAFKA_CLUSTER_BROKERS
}

# A venv of the cache ($CS_CACHE/NAME) holding the pinned packages given (`pkg==version`),
# installed there from PyPI when any of them is missing or of another version.
cs_ensure_venv() {
    local venv="$CS_CACHE/$1"
    shift
    if "$venv/bin/python" -c 'import importlib.metadata as m, sys
sys.exit(any(m.version(p.split("==")[0]) != p.split("==")[1] for p in sys.argv[1:]))' "$@" 2>/dev/null; then
        return 0
    fi
    command -v python3 >/dev/null 2>&1 || cs_die "python3 is needed to install $* into $venv"
    echo "census-stream setup: installing $* from PyPI into $venv (a few minutes)" >&2
    { [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"; } &&
        "$venv/bin/pip" install -q "$@" ||
        cs_die "could not install $* into $venv (pip's message is above)"
}

# MLflow, for the MLflow tests: a pinned mlflow in a venv of its own. Sets CS_MLFLOW to its
# `mlflow` command.
CS_MLFLOW_VERSION=3.17.2
cs_ensure_mlflow() {
    cs_ensure_venv mlflow-venv "mlflow==$CS_MLFLOW_VERSION"
    CS_MLFLOW="$CS_CACHE/mlflow-venv/bin/mlflow"
}

# The quality benchmark's Python LightGBM (the version lightgbm3 builds) and CatBoost, pinned, in
# a venv of their own.
cs_ensure_quality_venv() {
    cs_ensure_venv quality-venv lightgbm==4.7.0 catboost==1.2.10
}

# Starts a throwaway MLflow tracking server on a free local port: SQLite backend and artifacts in
# a new temporary folder, artifacts served through the server. It is stopped, and its folder
# removed, when the calling script exits. Sets CS_TEST_MLFLOW_URI to its address.
cs_start_test_mlflow() {
    cs_ensure_mlflow
    local dir port pid i
    dir=$(mktemp -d "${TMPDIR:-/tmp}/census-mlflow.XXXXXX")
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    # One web worker and no job runner: the tests need nothing more, and each process takes
    # ~250 MB. setsid: the server and its workers form one process group, stopped together.
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid "$CS_MLFLOW" server \
        --backend-store-uri "sqlite:///$dir/mlflow.db" --artifacts-destination "$dir/artifacts" \
        --host 127.0.0.1 --port "$port" --workers 1 >"$dir/server.log" 2>&1 &
    pid=$!
    cs_on_exit cs_stop_test_mlflow "$pid" "$dir"
    for i in $(seq 1 120); do
        if python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$port/health', timeout=2)" 2>/dev/null; then
            CS_TEST_MLFLOW_URI="http://127.0.0.1:$port"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    tail -n 20 "$dir/server.log" >&2
    cs_die "the MLflow server did not start on port $port (its log is above)"
}

cs_stop_test_mlflow() {
    local pid=$1 dir=$2 i
    if kill -- "-$pid" 2>/dev/null; then
        for i in $(seq 1 50); do
            kill -0 -- "-$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 -- "-$pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
}
