#!/bin/sh
# Index/search tests: build and run them (optionally under ASan+UBSan).
#   sh tests/run_index_tests.sh            normal build (-O2, OpenMP) into build/
#   sh tests/run_index_tests.sh asan       -fsanitize=address,undefined into build-asan/
# Needs /usr/bin/python3 with numpy + faiss (Debian python3-numpy, python3-faiss) for the
# reference and interop tests. Makefile equivalent, per test T in test_index test_index_ref
# test_index_faiss test_index_crash:
#   $(CC) -std=c99 -O2 -fopenmp -Wall -Wextra -Werror -I. -I$(STB) tests/T.c -o build/T -lm
# plus `$(PYTHON) tests/ref_index.py` (writes tests/data/index_ref.bin) before test_index_ref,
# and the benchmark: build/bench_index (full) or build/bench_index --quick.
set -u
cd "$(dirname "$0")/.." || exit 2
CC=${CC:-cc}
STB=${STB:-/usr/include/stb}
if [ "${1:-}" = asan ]; then
    B=build-asan; FLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all"
    export ASAN_OPTIONS=detect_leaks=1
else
    B=build; FLAGS="-O2 -g -fopenmp"
fi
mkdir -p "$B"
PASS=0; FAIL=0
run() {
    name=$1; shift
    echo "=== $name"
    if "$@"; then PASS=$((PASS + 1)); else FAIL=$((FAIL + 1)); echo "--- $name FAILED"; fi
}
for t in test_index test_index_ref test_index_faiss test_index_crash; do
    $CC -std=c99 $FLAGS -Wall -Wextra -Werror -I. -I"$STB" tests/$t.c -o "$B/$t" -lm || { FAIL=$((FAIL + 1)); echo "build of $t failed"; }
done
[ -f tests/data/index_ref.bin ] || /usr/bin/python3 tests/ref_index.py
run "index: vs brute force, MIH, dedup, persistence, bad input" "$B/test_index"
run "index: vs numpy and FAISS" "$B/test_index_ref" tests/data/index_ref.bin
run "index: FAISS interop" "$B/test_index_faiss" "$B"
run "index: crash safety (SIGKILL during save)" "$B/test_index_crash" "$B"
run "index: C++ build" sh -c "${CXX:-c++} -x c++ -O0 -Wall -Wextra -Werror -I. -I$STB tests/test_index.c -o $B/test_index_cpp -lm"
echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
