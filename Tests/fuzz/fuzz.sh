#!/usr/bin/env bash
# Build and run the libhla fuzz harnesses (called by `make fuzz` / `make fuzz-ci`; see Tests/fuzz/README.md).
#
#   Tests/fuzz/fuzz.sh build                 instrumented libhla (.build-fuzz) + the harnesses (Tests/fuzz/build)
#   Tests/fuzz/fuzz.sh replay                every file of the saved corpus once per harness (regression test)
#   Tests/fuzz/fuzz.sh run SECONDS [JOBS]    fuzz each harness for SECONDS from the saved corpus, JOBS at once
#
# Environment: SWIFT (swift), FUZZ_CC (/opt/swift/usr/bin/clang, or clang next to swift), FUZZ_CONFIG
# (debug: asserts and overflow checks on, fast to build; release: the shipped -Ounchecked code, ~2 min build),
# FUZZ_CFLAGS: extra compiler flags for the harnesses.
set -u -o pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SWIFT=${SWIFT:-swift}
FUZZ_CONFIG=${FUZZ_CONFIG:-debug}
if [ -z "${FUZZ_CC:-}" ]; then
    FUZZ_CC=$(dirname "$(readlink -f "$(command -v "$SWIFT")")")/clang
    [ -x "$FUZZ_CC" ] || FUZZ_CC=/opt/swift/usr/bin/clang
fi
HARNESSES="fuzz_deserialize fuzz_forward"
SCRATCH=$ROOT/.build-fuzz
LIBDIR=$SCRATCH/$FUZZ_CONFIG
OUT=$HERE/build
CORPUS=$HERE/corpus
export HLA_NUM_THREADS=${HLA_NUM_THREADS:-2}
# Leaks fail the run; the Swift runtime's caches are reachable, not leaks.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
FUZZ_FLAGS="-max_len=4096 -timeout=25 -rss_limit_mb=2048 -print_final_stats=1"

build() {
    local t0=$SECONDS
    # Swift: libFuzzer's coverage (inline 8-bit counters, pc tables, cmp tracing) + ASan on the engine;
    # C target (CHLA): the same through clang. The Makefile's release flags (static stdlib, haswell).
    "$SWIFT" build -c "$FUZZ_CONFIG" --product hla --scratch-path "$SCRATCH" \
        -Xswiftc -sanitize=fuzzer,address -Xswiftc -static-stdlib -Xswiftc -target-cpu -Xswiftc haswell \
        -Xcc -fsanitize=fuzzer-no-link,address || return 1
    local t1=$SECONDS
    mkdir -p "$OUT"
    for h in $HARNESSES; do
        # shellcheck disable=SC2086
        "$FUZZ_CC" -g -O1 -std=gnu11 -Wall -Wextra -Werror ${FUZZ_CFLAGS:-} -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
            -fuse-ld=lld -I"$ROOT/include" "$HERE/$h.c" -o "$OUT/$h" -L"$LIBDIR" -lhla -Wl,-rpath,"$LIBDIR" -lm || return 1
    done
    echo "fuzz build: instrumented libhla ($FUZZ_CONFIG) $((t1 - t0)) s, harnesses $((SECONDS - t1)) s"
}

replay() {
    local fail=0
    for h in $HARNESSES; do
        local t0=$SECONDS files
        files=$(find "$CORPUS/$h" -type f | sort)
        local n=$(echo "$files" | grep -c .)
        # shellcheck disable=SC2086
        if "$OUT/$h" $FUZZ_FLAGS $files > "$OUT/$h.replay.log" 2>&1; then
            echo "fuzz replay: $h: $n corpus files passed ($((SECONDS - t0)) s)"
        else
            echo "fuzz replay: $h: FAILED (log: $OUT/$h.replay.log)"; tail -30 "$OUT/$h.replay.log"; fail=1
        fi
    done
    return $fail
}

# One harness for $2 seconds; new inputs go to build/corpus/<h> (the saved corpus is read, not written).
fuzz_one() {
    local h=$1 secs=$2
    mkdir -p "$OUT/corpus/$h" "$OUT/artifacts"
    # FUZZ_SEED (make fuzz-ci sets it) fixes libFuzzer's mutation sequence, so a CI run explores the same
    # inputs every time (how far it gets still depends on the machine's speed).
    "$OUT/$h" $FUZZ_FLAGS ${FUZZ_SEED:+-seed=$FUZZ_SEED} -max_total_time="$secs" -artifact_prefix="$OUT/artifacts/$h-" \
        "$OUT/corpus/$h" "$CORPUS/$h" > "$OUT/$h.fuzz.log" 2>&1
}

summary() {
    local h=$1 rc=$2 log=$OUT/$1.fuzz.log
    local execs secs last cov ft corp
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | grep -E 'cov: ' | tail -1)
    cov=$(echo "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
    ft=$(echo "$last" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
    corp=$(echo "$last" | sed -n 's/.*corp: \([0-9]*\).*/\1/p')
    if [ "$rc" -eq 0 ]; then
        echo "fuzz: $h: ${execs:-?} executions in ${secs:-?} s, corpus ${corp:-?} inputs, cov ${cov:-?} ft ${ft:-?}: OK"
    else
        echo "fuzz: $h: FAILED (exit $rc) after ${execs:-?} executions; log $log, input in $OUT/artifacts/"
        grep -E 'FUZZ FAILURE|ERROR: |SUMMARY|Test unit written' "$log" | head -10
    fi
}

run() {
    local secs=$1 jobs=${2:-2} fail=0 pids=() names=()
    for h in $HARNESSES; do
        fuzz_one "$h" "$secs" & pids+=($!); names+=("$h")
        if [ ${#pids[@]} -ge "$jobs" ]; then
            for i in "${!pids[@]}"; do wait "${pids[$i]}"; rc=$?; summary "${names[$i]}" $rc; [ $rc -eq 0 ] || fail=1; done
            pids=(); names=()
        fi
    done
    for i in "${!pids[@]}"; do wait "${pids[$i]}"; rc=$?; summary "${names[$i]}" $rc; [ $rc -eq 0 ] || fail=1; done
    return $fail
}

case "${1:-}" in
    build) build ;;
    replay) replay ;;
    run) run "${2:-60}" "${3:-2}" ;;
    *) echo "usage: $0 build | replay | run SECONDS [JOBS]" >&2; exit 2 ;;
esac
