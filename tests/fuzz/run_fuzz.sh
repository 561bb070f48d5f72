#!/bin/sh
# Run libFuzzer harnesses. Expects `make fuzz-build` to have built build-fuzz/fuzz_* and
# build-fuzz/seeds/.
#   run_fuzz.sh SECONDS [TARGET...]   exploratory: each target SECONDS, corpus growing in
#                                     build-fuzz/corpus/TARGET (kept between runs)
#   run_fuzz.sh --smoke [TARGET...]   the smoke in make test: seed 1, a fixed number of
#                                     executions per target (about 20 s each on a 2-core Zen 5),
#                                     from the generated seeds only (fresh corpus each time), so
#                                     a run executes the same inputs on any machine, at any speed
# Targets default to all five. Crashes are written to build-fuzz/crashes/TARGET-*. Prints one
# summary line per target and exits non-zero if any target crashed. FUZZ_SEED=N fixes the seed
# of an exploratory run.
cd "$(dirname "$0")/../.." || exit 2
smoke=0
if [ "$1" = "--smoke" ]; then smoke=1; shift; else S=${1:-600}; shift; fi
T=${*:-"model desc index image faiss"}
F=build-fuzz
bad=0
mkdir -p $F/crashes
for t in $T; do
    case $t in
    model|image) len=65536 ;;
    *) len=16384 ;;
    esac
    if [ $smoke -eq 1 ]; then
        case $t in # executions reached in ~20 s under nice on the Zen 5 machine
        model) runs=25000 ;; desc) runs=200000 ;; index) runs=4000 ;; image) runs=6000 ;; faiss) runs=1500000 ;;
        *) runs=10000 ;;
        esac
        corpus=$F/smoke-corpus/$t
        rm -rf "$corpus"
        limit="-seed=1 -runs=$runs"
    else
        corpus=$F/corpus/$t
        limit="${FUZZ_SEED:+-seed=$FUZZ_SEED} -max_total_time=$S"
    fi
    mkdir -p "$corpus"
    log=$F/fuzz_$t.log
    start=$(date +%s)
    # shellcheck disable=SC2086
    nice -n 10 $F/fuzz_$t $limit -max_len=$len -rss_limit_mb=2560 -timeout=60 -print_final_stats=1 \
        -artifact_prefix=$F/crashes/$t- "$corpus" $F/seeds/$t > "$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    echo "fuzz $t: ${execs:-?} executions in $(( $(date +%s) - start )) s, exit $rc$( [ $rc -ne 0 ] && echo ' (CRASH: see '"$log"')')"
    if [ $rc -ne 0 ]; then
        bad=1
        grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error|artifact_prefix|Test unit written)' "$log" | head -5
        grep -E '^ +#[0-9]+ ' "$log" | head -8
    fi
done
exit $bad
