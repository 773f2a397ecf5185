#!/usr/bin/env bash
# README's test command: the whole suite on the embedded broker, then the end-to-end stream and
# registry tests again on a real Apache Kafka broker, either the one KAFKA_BROKERS names or a local
# one that this script starts (scripts/kafka-local.sh, with its own ports and a fresh data folder)
# and always stops, also when a test fails; then, on that local broker only and on a local cluster
# of three brokers, the fault suite (tests/faults: SIGKILLed services and brokers). The embedded stage also starts a local MLflow
# tracking server for the MLflow tests (mlflow from PyPI, installed into a venv of the cache
# folder when missing). Release build: training in debug mode is too slow to test.
# Installs the build prerequisites it can, see scripts/env.sh.
#
#   scripts/test.sh [cargo test arguments]    (they apply to the embedded stage)
#
# CENSUS_TEST_KAFKA=embedded|real|both (default both) chooses the stages;
# CENSUS_TEST_KAFKA_PORT (default 19092, and the next port for its controller) places the
# local broker; CENSUS_TEST_CLUSTER_PORT (default 19300) the fault suite's cluster of three (node
# i on that port + 100 (i - 1), each controller on the next port); CENSUS_TEST_MLFLOW_URI names a running MLflow server to use instead of one of
# this script's own.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

stages="${CENSUS_TEST_KAFKA:-both}"
case "$stages" in
    embedded | real | both) ;;
    *) cs_die "CENSUS_TEST_KAFKA must be embedded, real or both, not '$stages'" ;;
esac

# Every model any test loads (in the test process or a service it starts) must score its canary
# set exactly as LightGBM does with its compiled trees, or fail to load: the services read this as
# their --scorer-strict flag, the suite's own loads through its helpers.
export CENSUS_SCORER_STRICT=1

cargo build --release --bins --tests

if [ "$stages" != real ]; then
    cs_ensure_chromium
    # The MLflow tests log to a tracking server of their own (unless CENSUS_TEST_MLFLOW_URI
    # names one), stopped when this script exits.
    if [ -z "${CENSUS_TEST_MLFLOW_URI:-}" ]; then
        cs_start_test_mlflow
        export CENSUS_TEST_MLFLOW_URI="$CS_TEST_MLFLOW_URI"
    fi
    echo "== tests on the embedded broker (MLflow at $CENSUS_TEST_MLFLOW_URI)"
    env -u KAFKA_BROKERS cargo test --release "$@"
fi
[ "$stages" != embedded ] || exit 0

brokers="${KAFKA_BROKERS:-}"
own_broker=0
if [ -z "$brokers" ]; then
    cs_start_test_broker "${CENSUS_TEST_KAFKA_PORT:-19092}"
    brokers="$CS_TEST_BROKERS"
    own_broker=1
fi
echo "== end-to-end stream, registry, gate and process tests on the real Kafka broker at $brokers"
KAFKA_BROKERS="$brokers" cargo test --release --test suite -- stream:: registry:: process:: gate:: poison:: exactly_once:: metrics:: junk:: commands:: health:: labels:: repeats:: retention::

# The fault suite kills and restarts the broker: only one this script started is its to kill.
# Its cluster scenarios run on a cluster of three local brokers, started for them.
if [ "$own_broker" = 1 ]; then
    cs_start_test_cluster "${CENSUS_TEST_CLUSTER_PORT:-19300}"
    echo "== fault suite on the real Kafka broker and a cluster of three at $KAFKA_CLUSTER_BROKERS:" \
        "SIGKILLed predictors, SIGKILLed brokers"
    KAFKA_BROKERS="$brokers" cargo test --release --test faults -- --test-threads=1 --nocapture
else
    echo "== fault suite NOT run: it kills and restarts the broker, so it needs the one this" \
        "script starts (unset KAFKA_BROKERS)"
fi
