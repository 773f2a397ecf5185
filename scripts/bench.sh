#!/usr/bin/env bash
# The measurements of BENCHMARKS.md, with the commands that produce them:
#
#   scripts/bench.sh            full run (about 10 minutes on 2 cores)
#   scripts/bench.sh --short    the same commands with small N (CI runs this so they never rot)
#   scripts/bench.sh serving    stage 7 alone (with --short: its small N)
#   scripts/bench.sh soak       stage 8 alone: 1,000,000 requests (about 20 minutes), its samples,
#                               retrains and plot written to docs/soak.csv, docs/soak-retrains.log
#                               and docs/soak.png (with --short: 20,000, none of them);
#                               SOAK_RECORDS=3600000 scripts/bench.sh soak runs it for an hour;
#                               SOAK_HOG=600:1200 adds two busy loops from 10 to 20 minutes in
#                               (the cores taken from the services: a host shared with other work)
#   scripts/bench.sh scaleout   stage 9 alone: a local cluster of three brokers, predictors 1, 2
#                               and 4 on 12 partitions, throughput and CPU per record
#   scripts/bench.sh quality    the quality benchmark alone (never in CI): initialize at its
#                               default budget, timed, beside Python LightGBM and CatBoost
#                               (pinned, in a venv of the cache) at their defaults and at a fixed
#                               tuned setting, on adult.data → adult.test (scripts/quality.py)
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
#    defaults in the predictor's session (each phase on fresh topics);
# 9. scale-out on a local cluster of three brokers (scripts/kafka-local.sh, KAFKA_NODES=3):
#    1, 2 and 4 predictors (each its own process) on 12 partitions replicated three times, as
#    fast as possible; throughput, and the CPU seconds the predictors and the brokers spent per
#    1,000 records (from /proc), for a capacity plan.
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
        serving | soak | scaleout | quality) only=$arg ;;
        *) cs_die "usage: scripts/bench.sh [--short] [serving | soak | scaleout | quality]" ;;
    esac
done
if [ "$short" = 1 ]; then
    records=5000 paced=2000 serving=3000 criterion=(--quick) init_evals=(--max-evals 5) retrain_every=1000 retrain_evals=(--max-evals 2)
    soak_records=20000 soak_rate=1000 soak_every=4000 soak_keep=4000 soak_evals=2 soak_sample_secs=2
else
    records=200000 paced=30000 serving=60000 criterion=() init_evals=() retrain_every=1000 retrain_evals=()
    soak_records=${SOAK_RECORDS:-1000000} soak_rate=1000 soak_every=20000 soak_keep=20000 soak_evals=5 soak_sample_secs=10
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

# CPU seconds (user + system) the processes $@ have used so far, summed.
cpu_seconds() {
    local ticks
    ticks=$(getconf CLK_TCK)
    for p in "$@"; do
        # Fields 14 and 15 of /proc/PID/stat, counted after the command name's closing paren.
        sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}' || true
    done | awk -v t="$ticks" '{s += $1} END {printf "%.2f", s / t}'
}

# Stage 9 (also alone: scripts/bench.sh scaleout).
scaleout_stage() {
    echo "== 9. scale-out on a local cluster of three brokers: predictors 1, 2 and 4 on 12 partitions, $records records each"
    cs_start_test_cluster "${CENSUS_BENCH_CLUSTER_PORT:-19600}"
    local cluster="$KAFKA_CLUSTER_BROKERS" brokers_pids=() n i
    for i in 1 2 3; do brokers_pids+=("$(cat "$KAFKA_CLUSTER_DIR/node-$i/kafka.pid")"); done
    for n in 1 2 4; do
        local t="bench-scaleout-$$-$n" predictors=()
        local topics=(--requests-topic "$t.requests" --predictions-topic "$t.predictions"
            --dlq-topic "$t.dlq" --labels-topic "$t.labels" --models-topic "$t.models" --partitions 12)
        for i in $(seq 1 "$n"); do
            setsid "$bin/predictor" --brokers "$cluster" --group "$t-predictor" --instance-id "p$i" \
                "${topics[@]}" >"$work/scaleout-$n-$i.log" 2>&1 &
            predictors+=($!)
            pids+=($!)
        done
        # A first load of 1,000 records, answered, waits for the group; the CPU counted is
        # the measured run's (with its own warm-up of 1,000), not the predictors' start-up.
        "$bin/loadtest" --brokers "$cluster" --predictors 0 --records 1000 --warmup 1000 \
            "${topics[@]}" >"$work/scaleout-$n-start.log"
        local p0 b0 p1 b1 out
        p0=$(cpu_seconds "${predictors[@]}")
        b0=$(cpu_seconds "${brokers_pids[@]}")
        out=$("$bin/loadtest" --brokers "$cluster" --predictors 0 --records "$records" --warmup 1000 \
            "${topics[@]}")
        p1=$(cpu_seconds "${predictors[@]}")
        b1=$(cpu_seconds "${brokers_pids[@]}")
        echo "$out" | sed "s/^/scaleout, $n predictor(s): /"
        local rps
        rps=$(echo "$out" | sed -n 's/^throughput \([0-9.]*\) records.*/\1/p' | head -n 1)
        awk -v n="$n" -v r="$records" -v p="$(awk -v a="$p0" -v b="$p1" 'BEGIN {print b - a}')" \
            -v b="$(awk -v a="$b0" -v b="$b1" 'BEGIN {print b - a}')" -v rps="${rps:-?}" 'BEGIN {
                printf "scaleout, %d predictor(s): %s records/s; CPU per 1,000 records (its warm-up included): predictors %.3f s, brokers %.3f s\n", n, rps, p * 1000 / (r + 1000), b * 1000 / (r + 1000) }'
        for p in "${predictors[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
        for p in "${predictors[@]}"; do wait "$p" 2>/dev/null || true; done
    done
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
        pids+=($predictor)
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
            pids+=($retrainer)
        fi
        # The last phase shows what goes wrong: a load test starved there may end with requests
        # unanswered (a failure), which is its finding, not the benchmark's end.
        status=0
        "$bin/loadtest" --brokers "$brokers" --predictors 0 --records "$serving" --rate 1000 \
            --warmup 1000 "${topics[@]}" | sed "s/^/serving, $phase: /" || status=$?
        if [ "$status" != 0 ]; then
            [ "$phase" = shared-session ] || exit "$status"
            echo "serving, $phase: the load test failed (exit $status): requests went unanswered"
        fi
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

# The soak (scripts/bench.sh soak): the four components for $soak_records requests of fresh
# scenario rows at $soak_rate/s, labels 2 s later on the labels topic (a request waits 120 s for
# its label, in the retrainer and the dashboard, and its id is remembered as long: their joins
# fill in 2 minutes), a retrain after every $soak_every labelled rows (or as soon as the last
# ends, when that is later) on the newest $soak_keep with $soak_evals evaluations, so that a
# retrain takes less time than the stream takes to bring $soak_every rows; each service in a
# session of its own. Every few seconds: the RSS of predictor, retrainer and dashboard, the rows
# file, the join journal, the bundle files, census.models's log segments (when the broker's
# folder is known: KAFKA_LOCAL_DIR). scripts/soak_report.py turns the samples into slopes.
soak_stage() {
    echo "== 8. soak: $soak_records requests at $soak_rate/s, a retrain every $soak_every labelled rows, rows kept $soak_keep"
    local t="bench-soak-$$" store="$work/soak-store" samples="$work/soak.csv"
    local topics=(--requests-topic "$t.requests" --predictions-topic "$t.predictions"
        --labels-topic "$t.labels" --dlq-topic "$t.dlq" --models-topic "$t.models")
    rm -rf "$store" && mkdir -p "$store" && cp -r models dataprocessors "$store/"
    local pm=127.0.0.1:19481 rm=127.0.0.1:19482
    local predictor retrainer dashboard
    # Each service as a supervisor (systemd's Restart=, compose's restart:) runs it: one that
    # ends (a fatal error says to restart it) is started again, its log appended to.
    start_predictor() {
        setsid "$bin/predictor" --brokers "$brokers" --group "$t-predictor" "${topics[@]}" \
            --metrics-addr "$pm" >>"$work/soak-predictor.log" 2>&1 &
        predictor=$!
    }
    start_retrainer() {
        setsid "$bin/retrainer" --brokers "$brokers" --group "$t-retrainer" "${topics[@]}" \
            --retrain-every "$soak_every" --rows-keep "$soak_keep" --max-evals "$soak_evals" \
            --label-window-secs 120 --metrics-addr "$rm" \
            --rows-file "$store/rows.jsonl" --join-file "$store/join.jsonl" \
            --models-dir "$store/models" --processors-dir "$store/dataprocessors" \
            >>"$work/soak-retrainer.log" 2>&1 &
        retrainer=$!
    }
    start_dashboard() {
        setsid "$bin/dashboard" --brokers "$brokers" "${topics[@]}" --predictor-group "$t-predictor" \
            --label-window-secs 120 --addr 127.0.0.1:19483 >>"$work/soak-dashboard.log" 2>&1 &
        dashboard=$!
    }
    rm -f "$work"/soak-*.log
    start_predictor
    start_retrainer
    start_dashboard
    local restarts=()
    "$bin/producer" --brokers "$brokers" "${topics[@]}" --scenario fresh --rate "$soak_rate" \
        --limit "$soak_records" --label-delay-secs 2 --label-fraction 1 --no-status \
        >"$work/soak-producer.log" 2>&1 &
    local producer=$!
    local topic_dir=""
    [ -n "${KAFKA_LOCAL_DIR:-}" ] && topic_dir="$KAFKA_LOCAL_DIR/data/$t.models-0"
    rss() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status" 2>/dev/null; }
    mb() { [ -e "$1" ] && du -sb "$@" 2>/dev/null | awk '{s += $1} END {printf "%.2f", s / 1048576}'; }
    metric() { curl -s "http://$1/metrics" | awk -v m="$2" '$1 ~ "^"m"({|$)" {s += $2} END {if (NR) printf "%.0f", s}'; }
    # SOAK_HOG=FROM:TO (seconds into the run): two busy loops, each in a session of its own,
    # take the cores from the services meanwhile (a host shared with other work).
    local hog_from="" hog_to="" hogs=() started
    if [ -n "${SOAK_HOG:-}" ]; then
        hog_from=${SOAK_HOG%%:*} hog_to=${SOAK_HOG##*:}
        echo "soak: two busy loops take the cores from ${hog_from} s to ${hog_to} s"
    fi
    started=$(date +%s)
    echo "epoch_s,predictions,rows_stored,rss_predictor_mb,rss_retrainer_mb,rss_dashboard_mb,rows_file_mb,join_file_mb,store_mb,models_topic_mb,labels_matched,labels_dead,join_clock_lag_s,retrainer_lag" >"$samples"
    while kill -0 "$producer" 2>/dev/null; do
        echo "$(date +%s.%N | cut -c1-14),$(metric "$pm" census_predictions_total),$(metric "$rm" census_retrainer_rows_stored),$(rss "$predictor"),$(rss "$retrainer"),$(rss "$dashboard"),$(mb "$store/rows.jsonl"),$(mb "$store/join.jsonl"),$(mb "$store/models" "$store/dataprocessors"),$([ -n "$topic_dir" ] && mb "$topic_dir"/*.log),$(metric "$rm" census_labels_matched_total),$(metric "$rm" census_labels_dead_letters_total),$(metric "$rm" census_label_join_clock_lag_seconds),$(metric "$rm" census_consumer_lag)" >>"$samples"
        local at=$(($(date +%s) - started))
        for s in predictor retrainer dashboard; do
            kill -0 "${!s}" 2>/dev/null && continue
            echo "soak: the $s ended at $at s ($(grep -o 'fatal error.*\|Error: .*' "$work/soak-$s.log" | tail -n 1 | cut -c1-160)); restarting it"
            restarts+=("$s@${at}s")
            "start_$s"
        done
        if [ -n "$hog_from" ] && [ "${#hogs[@]}" = 0 ] && [ "$at" -ge "$hog_from" ] && [ "$at" -lt "$hog_to" ]; then
            for _ in 1 2; do
                setsid bash -c 'while :; do :; done' &
                hogs+=($!)
                pids+=($!)
            done
        elif [ "${#hogs[@]}" -gt 0 ] && [ "$at" -ge "$hog_to" ]; then
            kill "${hogs[@]}" 2>/dev/null || true
            hogs=()
        fi
        sleep "$soak_sample_secs"
    done
    [ "${#hogs[@]}" -gt 0 ] && kill "${hogs[@]}" 2>/dev/null || true
    wait "$producer" || { echo "bench: the soak's producer failed; its log:" >&2; tail -n 30 "$work/soak-producer.log" >&2; exit 1; }
    # The services' logs outlive the run, and a service that did not last the whole soak fails it.
    local logs="$CARGO_TARGET_DIR/soak-logs"
    rm -rf "$logs" && mkdir -p "$logs"
    local died=()
    for s in predictor retrainer dashboard; do
        local pid_var="$s"
        kill -0 "${!pid_var}" 2>/dev/null || died+=("$s")
    done
    echo "soak: services restarted: ${#restarts[@]} ${restarts[*]}"
    grep -E "^(sent|throughput|latency|model v)" "$work/soak-producer.log" | sed 's/^/soak, producer: /'
    for p in "$retrainer" "$predictor" "$dashboard"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "$retrainer" "$predictor" "$dashboard"; do wait "$p" 2>/dev/null || true; done
    cp "$work"/soak-*.log "$logs/"
    echo "soak: the services' logs are in $logs"
    if [ "${#died[@]}" -gt 0 ]; then
        for s in "${died[@]}"; do
            echo "bench: the soak's $s exited before the stream ended; the end of its log:" >&2
            grep -v '^ *[0-9]*: \|^ *at ' "$logs/soak-$s.log" | tail -n 15 >&2
        done
        exit 1
    fi
    echo "soak, retrainer: $(tail -n 1 "$work/soak-retrainer.log")"
    echo "soak, predictor: $(tail -n 1 "$work/soak-predictor.log")"
    cs_ensure_mlflow # its venv has matplotlib
    local plot=()
    if [ "$short" = 0 ]; then
        plot=(--plot docs/soak.png)
        cp "$samples" docs/soak.csv
        grep -E "retraining after|stored and published|rejected offline" \
            "$work/soak-retrainer.log" >docs/soak-retrains.log || true
    fi
    "$CS_CACHE/mlflow-venv/bin/python" scripts/soak_report.py "$samples" "$work/soak-retrainer.log" \
        --rows-keep "$soak_keep" "${plot[@]}"
}

echo "== machine: $(nproc) cores, $(uname -m), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
if [ "$only" = quality ]; then
    cs_ensure_quality_venv
    echo "== quality: initialize at its default budget, into a temporary store"
    start=$(date +%s.%N)
    "$bin/initialize" --models-dir "$work/quality/models" \
        --processors-dir "$work/quality/dataprocessors" >"$work/quality.log" 2>&1 ||
        { tail -n 30 "$work/quality.log" >&2; cs_die "initialize failed"; }
    wall=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
    echo "== quality: Python LightGBM and CatBoost on the same split, beside it"
    "$CS_CACHE/quality-venv/bin/python" scripts/quality.py data "$work/quality/models" \
        --ours-seconds "$wall"
    rm -rf "$work"
    exit 0
fi
"$bin/initialize" --if-missing "${init_evals[@]}"

if [ "$only" = scaleout ]; then
    cs_on_exit cleanup
    scaleout_stage
    exit 0
fi
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
scaleout_stage
# The soak takes 20 minutes at full size: on its own only (scripts/bench.sh soak); small here.
[ "$short" = 1 ] && soak_stage

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
