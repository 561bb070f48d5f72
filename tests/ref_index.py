#!/usr/bin/python3
"""References for tests/test_index_ref.c, computed outside imret with numpy and FAISS.

Writes tests/data/index_ref.bin (little-endian):
  magic "IMRIREF1", u64 n, dim, bits, nq, k, rad (Hamming radius), f32 cos_thr
  dataset T (tie-heavy): ids u64[n], vecs f32[n][dim] (small integers, stored unnormalised),
      codes u64[n][words] (low-entropy + copies), queries f32[nq][dim], qcodes u64[nq][words]
  numpy top-k (ties by smaller id):  cos ids u64[nq][k] scores f32[nq][k];  ham ids u64, dists i32
  FAISS top-k (IndexFlatIP / IndexBinaryFlat; positions, ties in FAISS's own order):
      cos labels i64, D f32; ham labels i64, D i32
  numpy range (sorted by score then id): ham counts u64[nq] + ids u64[total] ; cos likewise
  FAISS range_search: ham lims u64[nq+1] + labels i64 ; cos likewise
  dataset R (random gaussian, normalised in float64 then rounded to float16 by numpy):
      u64 n2, dim2, vecs f32[n2][dim2] (raw), queries f32[nq][dim2] (raw),
      numpy top-k on the fp16-rounded normalised vectors vs float64-normalised queries rounded to
      f32: ids u64[nq][k], scores f64[nq][k]
"""
import os, struct, sys
import numpy as np
import faiss

rng = np.random.default_rng(20261124)
n, dim, bits, nq, k, rad, cos_thr = 3000, 40, 256, 50, 12, 60, 12.0
words = (bits + 63) // 64

ids = rng.permutation(10 * n)[:n].astype(np.uint64) + np.uint64(7)
vecs = rng.integers(-2, 3, size=(n, dim)).astype(np.float32)
codes = (rng.integers(0, 2**63, size=(n, words), dtype=np.uint64) & rng.integers(0, 2**63, size=(n, words), dtype=np.uint64)
         & rng.integers(0, 2**63, size=(n, words), dtype=np.uint64))
codes[1::5] = codes[0:-1:5][: len(codes[1::5])]  # exact copies -> equal distances
vecs[2::7] = vecs[1:-1:7][: len(vecs[2::7])]
queries = rng.integers(-2, 3, size=(nq, dim)).astype(np.float32)
qcodes = rng.integers(0, 2**63, size=(nq, words), dtype=np.uint64) & rng.integers(0, 2**63, size=(nq, words), dtype=np.uint64)
qcodes[::3] = codes[rng.integers(0, n, size=len(qcodes[::3]))]

def popcount64(x):
    x = x.copy()
    c = np.zeros(x.shape, dtype=np.int64)
    for _ in range(64):
        c += (x & np.uint64(1)).astype(np.int64)
        x >>= np.uint64(1)
    return c

S = queries.astype(np.float64) @ vecs.astype(np.float64).T          # exact for small ints
H = np.zeros((nq, n), dtype=np.int64)
for w in range(words):
    H += popcount64(qcodes[:, w:w + 1] ^ codes[None, :, w])

def topk(keys):  # keys: smaller is better; ties by smaller id
    out = []
    for q in range(nq):
        order = np.lexsort((ids, keys[q]))
        out.append(order[:k])
    return np.array(out)

tc = topk(-S)
th = topk(H)

# FAISS
fi = faiss.IndexFlatIP(dim); fi.add(vecs)
Dc, Ic = fi.search(queries, k)
codes_u8 = codes.view(np.uint8).reshape(n, words * 8)   # little-endian: byte j = bits 8j..8j+7
qcodes_u8 = qcodes.view(np.uint8).reshape(nq, words * 8)
fb = faiss.IndexBinaryFlat(bits); fb.add(codes_u8)
Dh, Ih = fb.search(qcodes_u8, k)
assert np.all(Dh == np.take_along_axis(H, Ih, 1)), "FAISS Hamming disagrees with numpy popcount"

def ranges(keys, thr):
    counts, lst = [], []
    for q in range(nq):
        sel = np.nonzero(keys[q] <= thr)[0]
        order = sel[np.lexsort((ids[sel], keys[q][sel]))]
        counts.append(len(order)); lst.extend(ids[order])
    return np.array(counts, dtype=np.uint64), np.array(lst, dtype=np.uint64)

rh_counts, rh_ids = ranges(H, rad)
rc_counts, rc_ids = ranges(-S, -cos_thr)
lims_h, _, labels_h = fb.range_search(qcodes_u8, rad + 1)      # FAISS binary range: distance < radius
lims_c, _, labels_c = fi.range_search(queries, cos_thr - 1e-3)  # IP range: score > radius (integers: >= thr)

# dataset R
n2, dim2 = 2000, 96
raw = rng.standard_normal((n2, dim2)).astype(np.float32)
qraw = rng.standard_normal((nq, dim2)).astype(np.float32)
xb = (raw.astype(np.float64) / np.linalg.norm(raw.astype(np.float64), axis=1, keepdims=True)).astype(np.float16).astype(np.float64)
xq = (qraw.astype(np.float64) / np.linalg.norm(qraw.astype(np.float64), axis=1, keepdims=True)).astype(np.float32).astype(np.float64)
S2 = xq @ xb.T
ids2 = np.arange(n2, dtype=np.uint64) * np.uint64(3)
t2 = np.array([np.lexsort((ids2, -S2[q]))[:k] for q in range(nq)])

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "index_ref.bin")
os.makedirs(os.path.dirname(out), exist_ok=True)
with open(out + ".tmp", "wb") as f:
    f.write(b"IMRIREF1"); f.write(struct.pack("<6Qf", n, dim, bits, nq, k, rad, cos_thr))
    for a in (ids, vecs, codes, queries, qcodes):
        f.write(np.ascontiguousarray(a).tobytes())
    f.write(ids[tc].astype("<u8").tobytes()); f.write(np.take_along_axis(S, tc, 1).astype("<f4").tobytes())
    f.write(ids[th].astype("<u8").tobytes()); f.write(np.take_along_axis(H, th, 1).astype("<i4").tobytes())
    f.write(Ic.astype("<i8").tobytes()); f.write(Dc.astype("<f4").tobytes())
    f.write(Ih.astype("<i8").tobytes()); f.write(Dh.astype("<i4").tobytes())
    f.write(rh_counts.tobytes()); f.write(rh_ids.tobytes())
    f.write(rc_counts.tobytes()); f.write(rc_ids.tobytes())
    f.write(lims_h.astype("<u8").tobytes()); f.write(labels_h.astype("<i8").tobytes())
    f.write(lims_c.astype("<u8").tobytes()); f.write(labels_c.astype("<i8").tobytes())
    f.write(struct.pack("<2Q", n2, dim2)); f.write(raw.tobytes()); f.write(qraw.tobytes())
    f.write(ids2[t2].astype("<u8").tobytes()); f.write(np.take_along_axis(S2, t2, 1).astype("<f8").tobytes())
os.replace(out + ".tmp", out)
print("wrote %s: n=%d dim=%d bits=%d nq=%d k=%d; range hits numpy ham %d / cos %d, faiss ham %d / cos %d (faiss %s, numpy %s)"
      % (out, n, dim, bits, nq, k, len(rh_ids), len(rc_ids), lims_h[-1], lims_c[-1], faiss.__version__, np.__version__))
