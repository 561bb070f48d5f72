#!/usr/bin/python3
"""FAISS anchor for bench/bench_index.c: the same data (splitmix64 streams 1..4, see the C
file), IndexBinaryFlat (Hamming top-10, 1M x 256 bits) and IndexFlatIP (cosine top-10,
100k x 2048 fp32, L2-normalised), 1 query (25 different queries) and a batch of 64 (20 runs),
1 and 2 threads, medians. Prints "faiss NAME THREADS MS" lines for the C driver, plus which
BLAS numpy/FAISS loaded. usage: bench_index_faiss.py [--quick]"""
import sys, time
import numpy as np
import faiss

quick = "--quick" in sys.argv
nh, words, nc, dim, nq, k = (200000 if quick else 1000000), 4, (20000 if quick else 100000), 2048, 64, 10
reps = 21 if quick else 25
G = np.uint64(0x9e3779b97f4a7c15)

def stream(seed, n, chunk=1 << 24):
    out = np.empty(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for s in range(0, n, chunk):
            i = np.arange(s + 1, min(n, s + chunk) + 1, dtype=np.uint64)
            z = np.uint64(seed) + i * G
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xbf58476d1ce4e5b9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94d049bb133111eb)
            out[s:s + len(i)] = z ^ (z >> np.uint64(31))
    return out

def sfloat(seed, n):
    return ((stream(seed, n) >> np.uint64(40)).astype(np.float32) / np.float32(16777216.0) - np.float32(0.5))

def blas_name():
    try:
        import re
        maps = open("/proc/self/maps").read()
        libs = sorted(set(re.findall(r"/\S*(?:blas|lapack)\S*\.so[.\d]*", maps)))
        return ", ".join(libs) or "none loaded"
    except Exception as e:
        return "unknown (%s)" % e

codes = stream(1, nh * words).reshape(nh, words).view(np.uint8).reshape(nh, words * 8)
qcodes = stream(2, nq * words).reshape(nq, words).view(np.uint8).reshape(nq, words * 8)
xb = sfloat(3, nc * dim).reshape(nc, dim)
xq = sfloat(4, nq * dim).reshape(nq, dim)
faiss.normalize_L2(xb)
faiss.normalize_L2(xq)
bi = faiss.IndexBinaryFlat(words * 64); bi.add(codes)
fi = faiss.IndexFlatIP(dim); fi.add(xb)
print("FAISS %s; BLAS mapped: %s" % (faiss.__version__, blas_name()), flush=True)

def timed(fn, n):
    t = []
    for r in range(n):
        t0 = time.perf_counter(); fn(r); t.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(t))

for th in (1, 2):
    faiss.omp_set_num_threads(th)
    ms = timed(lambda r: bi.search(qcodes[r % nq:r % nq + 1], k), reps); print("faiss hamming_1q %d %.4f" % (th, ms), flush=True)
    ms = timed(lambda r: bi.search(qcodes, k), 20); print("faiss hamming_64q %d %.4f" % (th, ms), flush=True)
    for name in ("cosine_fp16", "cosine_fp32"):  # FAISS has one fp32 FlatIP: the anchor for both
        ms = timed(lambda r: fi.search(xq[r % nq:r % nq + 1], k), reps); print("faiss %s_1q %d %.4f" % (name, th, ms), flush=True)
        ms = timed(lambda r: fi.search(xq, k), 20); print("faiss %s_64q %d %.4f" % (name, th, ms), flush=True)
    lims = None
    ms = timed(lambda r: bi.range_search(qcodes[r % nq:r % nq + 1], 101), 21); print("faiss hamming_range_r100_flat %d %.4f" % (th, ms), flush=True)
    ms = timed(lambda r: bi.range_search(codes[(r * 7919):(r * 7919) + 1], 9), 21); print("faiss hamming_range_r8_flat %d %.4f" % (th, ms), flush=True)
    ms = timed(lambda r: bi.range_search(codes[(r * 7919):(r * 7919) + 1], 9), 21); print("faiss hamming_range_r8_mih %d %.4f" % (th, ms), flush=True)
print("BLAS after searches: %s" % blas_name(), flush=True)
