#!/usr/bin/env bash
# The measurements of BENCHMARKS.md, with the commands that produce them:
#
#   scripts/bench.sh            full run (about 10 minutes on 2 cores)
#   scripts/bench.sh --short    the same commands with small N (CI runs this so they never rot)
#   scripts/bench.sh serving    stage 7 alone (with --short: its small N)
#
# 1. scoring micro-benchmarks (criterion): decode, transform, the model alone with each scorer
#    (compiled trees, native walk, LightGBM) and the time a bundle's model takes to load,
#    transform + predict, the predictor's whole batch path, for 1, 64 and 1,024 records;
# 2. end-to-end load on the embedded broker: as fast as possible, and at 1,000 records/s;
# 3. the same on a real Apache Kafka broker (KAFKA_BROKERS, or a local one started here), with
#    the predictor and the retrainer in processes of their own, so that each reports its peak
#    RSS; the retrainer retrains once on the streamed rows at its default budget;
# 4. (full run only) initialize at its default budget: wall time and test metrics, with and
#    without pruning, and whether both chose the same model;
# 5. the quality estimated from the probabilities before labels against the realised, per window
#    of 2,000 adult.test rows, and under a concept drift (cargo bench --bench estimate);
# 6. the label join's cost: 1,000,000 requests, half labelled 60 s late, through the
#    retrainer's join and its journal (cargo bench --bench join; --short: 100,000);
# 7. serving latency at 1,000 records/s with the predictor alone on the host, then with a
#    retrainer retraining back to back beside it: no priority lowered, its defaults, and its
#    defaults in the predictor's session (each phase on fresh topics).
#
# Needs a bundle in models/: made here with `initialize --if-missing` when there is none.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

short=0
only=""
for arg in "$@"; do
    case "$arg" in
        --short) short=1 ;;
        serving) only=$arg ;;
        *) cs_die "usage: scripts/bench.sh [--short] [serving]" ;;
    esac
done
if [ "$short" = 1 ]; then
    records=5000 paced=2000 serving=3000 criterion=(--quick) init_evals=(--max-evals 5) retrain_every=1000 retrain_evals=(--max-evals 2)
else
    records=200000 paced=30000 serving=60000 criterion=() init_evals=() retrain_every=1000 retrain_evals=()
fi

cargo build --release --bins
bin="$CARGO_TARGET_DIR/release"
work=$(mktemp -d)
pids=()
# Stops the services started here (SIGTERM: each prints its summary and peak RSS).
stop_services() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=()
}
cleanup() {
    stop_services
    rm -rf "$work"
}

# Stage 7 (also alone: scripts/bench.sh serving).
serving_stage() {
    echo "== 7. serving at 1000 records/s while a retrainer on the same host retrains back to back:"
    echo "      alone; beside a retrainer with no priority lowered (--train-nice 0 --session-nice 0);"
    echo "      beside one at its defaults; and at its defaults sharing this script's session"
    # Predictor and retrainer each in a session of their own (setsid), as from their own terminals
    # or service units: Linux shares the cores between sessions (autogroups) before threads. The
    # last phase starts the retrainer in this script's session, where it cannot lower its group.
    # Each phase on topics of its own, so that each retrainer starts from the same empty stream.
    for phase in alone no-lowering defaults shared-session; do
        t="bench-serving-$$-$phase"
        topics=(--requests-topic "$t.requests" --predictions-topic "$t.predictions" --models-topic "$t.models")
        setsid "$bin/predictor" --brokers "$brokers" --group "$t-predictor" "${topics[@]}" \
            >"$work/serving-predictor-$phase.log" 2>&1 &
        predictor=$!
        retrainer=""
        if [ "$phase" != alone ]; then
            rm -rf "$work/serving-store"
            mkdir -p "$work/serving-store"
            cp -r models dataprocessors "$work/serving-store/"
            priority=()
            [ "$phase" = no-lowering ] && priority=(--train-nice 0 --session-nice 0)
            session=(setsid)
            [ "$phase" = shared-session ] && session=()
            "${session[@]}" "$bin/retrainer" --brokers "$brokers" --group "$t-retrainer" "${topics[@]}" \
                --retrain-every 1000 --max-evals 10 "${priority[@]}" \
                --rows-file "$work/serving-store/rows.jsonl" \
                --models-dir "$work/serving-store/models" \
                --processors-dir "$work/serving-store/dataprocessors" \
                >"$work/serving-retrainer-$phase.log" 2>&1 &
            retrainer=$!
        fi
        "$bin/loadtest" --brokers "$brokers" --predictors 0 --records "$serving" --rate 1000 \
            --warmup 1000 "${topics[@]}" | sed "s/^/serving, $phase: /"
        if [ -n "$retrainer" ]; then
            echo "serving, $phase: $(grep -c 'retraining after v' "$work/serving-retrainer-$phase.log") retrains started;" \
                "$(grep -o 'its scheduling group.*' "$work/serving-retrainer-$phase.log" | head -n 1 | cut -c1-120)"
            kill -TERM "$retrainer" 2>/dev/null || true
            wait "$retrainer" 2>/dev/null || true
        fi
        kill -TERM "$predictor" 2>/dev/null || true
        wait "$predictor" 2>/dev/null || true
    done
}

echo "== machine: $(nproc) cores, $(uname -m), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
"$bin/initialize" --if-missing "${init_evals[@]}"

if [ -n "$only" ]; then
    brokers="${KAFKA_BROKERS:-}"
    if [ -z "$brokers" ]; then
        cs_start_test_broker "${CENSUS_BENCH_KAFKA_PORT:-19096}"
        brokers="$CS_TEST_BROKERS"
    fi
    cs_on_exit cleanup
    "${only}_stage"
    exit 0
fi

echo "== 1. scoring micro-benchmarks"
cargo bench --bench scoring -- "${criterion[@]}"

echo "== 2. load on the embedded broker: $records records as fast as possible"
"$bin/loadtest" --records "$records"
echo "== 2. load on the embedded broker: $paced records at 1000 records/s"
"$bin/loadtest" --records "$paced" --rate 1000

brokers="${KAFKA_BROKERS:-}"
if [ -z "$brokers" ]; then
    cs_start_test_broker "${CENSUS_BENCH_KAFKA_PORT:-19096}"
    brokers="$CS_TEST_BROKERS"
fi
cs_on_exit cleanup

echo "== 3. load on the real broker at $brokers, predictor in its own process"
"$bin/predictor" --brokers "$brokers" >"$work/predictor.log" 2>&1 &
pids+=($!)
"$bin/loadtest" --brokers "$brokers" --predictors 0 --records "$records"
echo "== 3. load on the real broker: $paced records at 1000 records/s"
"$bin/loadtest" --brokers "$brokers" --predictors 0 --records "$paced" --rate 1000

echo "== 3. one retrain at the retrainer's default budget, on a copy of the store"
mkdir -p "$work/store"
cp -r models dataprocessors "$work/store/"
"$bin/retrainer" --brokers "$brokers" --group "bench-retrainer-$$" --retrain-every "$retrain_every" \
    "${retrain_evals[@]}" --rows-file "$work/rows.jsonl" \
    --models-dir "$work/store/models" --processors-dir "$work/store/dataprocessors" \
    >"$work/retrainer.log" 2>&1 &
retrainer=$!
pids+=($retrainer)
# The retrainer's group starts at the earliest offset: the records above are its stream rows.
# A retrain ends published (champion or challenger) or rejected by the offline check.
finished="stored and published\|rejected offline"
for _ in $(seq 1 600); do
    grep -q "$finished" "$work/retrainer.log" && break
    kill -0 "$retrainer" 2>/dev/null || break
    sleep 0.5
done
if ! grep -q "$finished" "$work/retrainer.log"; then
    echo "bench: the retrainer finished no retrain; its log:" >&2
    cat "$work/retrainer.log" >&2
    exit 1
fi
grep "retraining after v\|$finished" "$work/retrainer.log" | sed 's/^.*retrainer: /retrainer: /'

stop_services
echo "predictor (own process): $(tail -n 1 "$work/predictor.log")"
echo "retrainer (own process): $(tail -n 1 "$work/retrainer.log")"

serving_stage

echo "== 5. quality estimated from the probabilities before labels, against the realised"
cargo bench --bench estimate

echo "== 6. the label join's cost"
if [ "$short" = 1 ]; then
    cargo bench --bench join -- --short
else
    cargo bench --bench join
fi

if [ "$short" = 0 ]; then
    echo "== 4. initialize at its default budget, into a temporary store"
    TIMEFORMAT='initialize: wall %R s, user %U s'
    time "$bin/initialize" --models-dir "$work/init/models" --processors-dir "$work/init/dataprocessors"
    echo "== 4. the same without pruning (every evaluation run to its end)"
    time "$bin/initialize" --no-pruning --models-dir "$work/init2/models" \
        --processors-dir "$work/init2/dataprocessors"
    cmp -s "$work/init/models/model_v0001.txt" "$work/init2/models/model_v0001.txt" &&
        echo "initialize: the same model with and without pruning" ||
        echo "initialize: the models with and without pruning DIFFER"
fi
