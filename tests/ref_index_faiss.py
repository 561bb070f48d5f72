#!/usr/bin/python3
"""FAISS side of tests/test_index_faiss.c. usage: ref_index_faiss.py DIR
Reads DIR/faiss_raw.bin (u64 n, dim, bits; f32 vectors[n][dim] as stored by imret; u64 codes[n][words]),
checks that imret's exports DIR/imret_ip.faiss / DIR/imret_bin.faiss load with faiss.read_index /
read_index_binary and hold exactly those vectors and codes, searches them, and writes
DIR/py_ip.faiss, DIR/py_bin.faiss (faiss.write_index of indexes built here from the raw data) and
DIR/faiss_search.bin (top-5 of the first 8 vectors/codes as queries: I i64, D f32 / D i32)."""
import sys, struct
import numpy as np
import faiss

d = sys.argv[1]
raw = open(d + "/faiss_raw.bin", "rb").read()
n, dim, bits = struct.unpack_from("<3Q", raw, 0)
words = (bits + 63) // 64
off = 24
vecs = np.frombuffer(raw, dtype="<f4", count=n * dim, offset=off).reshape(n, dim); off += 4 * n * dim
codes = np.frombuffer(raw, dtype="<u8", count=n * words, offset=off).reshape(n, words)
codes_u8 = codes.view(np.uint8).reshape(n, words * 8)[:, : bits // 8]

ip = faiss.read_index(d + "/imret_ip.faiss")
bi = faiss.read_index_binary(d + "/imret_bin.faiss")
assert isinstance(ip, faiss.IndexFlatIP) or ip.metric_type == faiss.METRIC_INNER_PRODUCT, type(ip)
assert ip.ntotal == n and ip.d == dim, (ip.ntotal, ip.d)
assert bi.ntotal == n and bi.d == bits, (bi.ntotal, bi.d)
assert np.array_equal(ip.reconstruct_n(0, n), vecs), "vectors differ"
assert np.array_equal(faiss.vector_to_array(bi.xb).reshape(n, bits // 8), codes_u8), "codes differ"
D1, I1 = ip.search(vecs[:8], 5)
D2, I2 = bi.search(codes_u8[:8], 5)
assert np.all(I1[:, 0] == np.arange(8)) or np.all(D1[:, 0] >= D1[:, 1]), "self not first"
assert np.all(D2[:, 0] == 0), "code self-distance not 0"

own_ip = faiss.IndexFlatIP(int(dim)); own_ip.add(np.ascontiguousarray(vecs)); faiss.write_index(own_ip, d + "/py_ip.faiss")
own_bi = faiss.IndexBinaryFlat(int(bits)); own_bi.add(np.ascontiguousarray(codes_u8)); faiss.write_index_binary(own_bi, d + "/py_bin.faiss")
with open(d + "/faiss_search.bin", "wb") as f:
    f.write(I1.astype("<i8").tobytes()); f.write(D1.astype("<f4").tobytes())
    f.write(I2.astype("<i8").tobytes()); f.write(D2.astype("<i4").tobytes())
print("faiss %s read imret's IndexFlatIP (%d x %d) and IndexBinaryFlat (%d x %d bits): contents identical; wrote py_*.faiss"
      % (faiss.__version__, n, dim, n, bits))
