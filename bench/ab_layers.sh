#!/bin/sh
# ab_layers.sh A_BIN B_BIN MODEL.imw [THREADS=1] [ROUNDS=6] [RUNS=15] [fp32|int8|bf16] -- two builds of
# bench_layers (e.g. before and after a kernel change: build/bench_layers from each imret.h),
# run alternately ROUNDS times (A B, B A, ...) so that the machine's drifts hit both alike; prints per
# convolution the median over rounds of each build's median, and B / A. A ratio is only
# worth reading when the whole-forward ratio repeats across invocations (run it twice).
set -eu
[ $# -ge 3 ] || { echo "usage: ab_layers.sh A_BIN B_BIN MODEL.imw [THREADS=1] [ROUNDS=6] [RUNS=15] [fp32|int8|bf16]" >&2; exit 2; }
A=$1 B=$2 M=$3 T=${4:-1} R=${5:-6} N=${6:-15} P=${7:-fp32}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
i=1
while [ "$i" -le "$R" ]; do
    if [ $((i % 2)) -eq 1 ]; then # A B, then B A: whichever runs second tends to be faster
        "$A" "$M" "$T" "$N" 224 "$P" > "$tmp/a.$i"
        "$B" "$M" "$T" "$N" 224 "$P" > "$tmp/b.$i"
    else
        "$B" "$M" "$T" "$N" 224 "$P" > "$tmp/b.$i"
        "$A" "$M" "$T" "$N" 224 "$P" > "$tmp/a.$i"
    fi
    i=$((i + 1))
done
# rows: "<idx> <shape...> <ms> <gflops>", "conv-total <ms>", "forward <ms>"
awk '
    FNR == 1 { np = split(FILENAME, p, "/"); side = substr(p[np], 1, 1) }
    /^#/ { next }
    {
        if ($1 == "conv-total" || $1 == "forward") { key = $1; ms = $2; label[key] = "" }
        else { key = $1; ms = $(NF - 1); lab = $2; for (f = 3; f < NF - 1; f++) lab = lab " " $f; label[key] = lab }
        if (!(key in seen)) { seen[key] = 1; order[++n] = key }
        v[side, key, ++c[side, key]] = ms
    }
    function med(s, k,    m, i, j, t, a) {
        m = c[s, k]
        for (i = 1; i <= m; i++) a[i] = v[s, k, i]
        for (i = 2; i <= m; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
        return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
    }
    END {
        printf "%-4s %-26s %9s %9s %7s\n", "#", "conv", "A ms", "B ms", "B/A"
        for (i = 1; i <= n; i++) {
            k = order[i]; ma = med("a", k); mb = med("b", k)
            printf "%-4s %-26s %9.3f %9.3f %7.3f\n", k, label[k], ma, mb, (ma > 0 ? mb / ma : 0)
        }
    }' "$tmp"/a.* "$tmp"/b.*
