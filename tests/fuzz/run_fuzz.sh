#!/bin/sh
# Run libFuzzer harnesses: run_fuzz.sh SECONDS [TARGET...] (default: all five).
# Expects `make fuzz-build` to have built build-fuzz/fuzz_* and build-fuzz/seeds/.
# Each target runs SECONDS under nice, its corpus growing in build-fuzz/corpus/TARGET (kept
# between runs, git-ignored), crashes written to build-fuzz/crashes/TARGET-*. Prints one
# summary line per target and exits non-zero if any target crashed. FUZZ_SEED=N fixes the
# seed (the smoke in make test uses 1, so a CI run is reproducible).
S=${1:-600}; shift
cd "$(dirname "$0")/../.." || exit 2
T=${*:-"model desc index image faiss"}
F=build-fuzz
bad=0
mkdir -p $F/crashes
for t in $T; do
    case $t in
    model|image) len=65536 ;;
    *) len=16384 ;;
    esac
    mkdir -p $F/corpus/$t
    log=$F/fuzz_$t.log
    start=$(date +%s)
    nice -n 10 $F/fuzz_$t ${FUZZ_SEED:+-seed=$FUZZ_SEED} -max_total_time="$S" -max_len=$len -rss_limit_mb=2560 -timeout=25 -print_final_stats=1 \
        -artifact_prefix=$F/crashes/$t- $F/corpus/$t $F/seeds/$t > "$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    echo "fuzz $t: ${execs:-?} executions in $(( $(date +%s) - start )) s, exit $rc$( [ $rc -ne 0 ] && echo ' (CRASH: see '"$log"')')"
    [ $rc -ne 0 ] && bad=1
done
exit $bad
