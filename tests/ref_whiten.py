#!/usr/bin/env python3
"""References for tests/test_whiten.c and tests/test_hash.c, written with numpy/PyTorch from
the published formulas, never with imret.

tests/data/whiten.ref.imw
  x [n, D] training descriptors, q [m, D] queries, mean [D], eigval [D] (numpy eigh of the
  covariance (1/n) Xc^T Xc, descending), and for each variant v in 0..2 y<v> [m, D'_v] =
  L2(P (q - mean)) with P = diag(lambda'^-power) E^T, lambda' = shrunk/floored eigenvalues and a
  signed power law before the L2 (header: variant options).
tests/data/hash.ref.imw
  x [n, D], q [m, D]; ITQ (Gong & Lazebnik 2011, their MATLAB code in numpy, SVD-based) from
  the initial rotation r0 [k, k]: itq_loss [iters + 1], itq_w [k, D] = (E_k R)^T; PCAH
  pcah_w [k, D]; LSH rows lsh_w [64, D] from splitmix64 + Marsaglia polar (seed 12345);
  a torch.nn.Linear(D, 128) layer lin_w [128, D], lin_b [128], its projections of q
  lin_proj [m, 128] and the packed codes lin_code16 [m, 8] (each little-endian uint64 word as
  4 uint16 values, so float32 stores them exactly), packed with numpy.packbits(little).
Eigenvector signs: the largest-magnitude component of each eigenvector is made positive.
"""
import os
import sys

import numpy as np
import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tools"))
from imw import write_imw  # noqa: E402

EPS = 1e-6


def l2n(y):
    return y / (np.linalg.norm(y, axis=-1, keepdims=True) + EPS)


def fix_signs(vecs):  # columns
    idx = np.argmax(np.abs(vecs), axis=0)
    s = np.sign(vecs[idx, np.arange(vecs.shape[1])])
    s[s == 0] = 1
    return vecs * s


def pca(x):
    x = x.astype(np.float64)
    mu = x.mean(axis=0)
    xc = x - mu
    cov = xc.T @ xc / x.shape[0]
    val, vec = np.linalg.eigh(cov)
    order = np.argsort(val)[::-1]
    return mu, val[order], fix_signs(vec[:, order])


def data(rng, n, m, d):
    """Descriptor-like data: non-negative, decaying spectrum, distinct eigenvalues."""
    basis, _ = np.linalg.qr(rng.standard_normal((d, d)))
    scale = 2.0 ** (-np.arange(d) / 6.0)
    x = (rng.standard_normal((n + m, d)) * scale) @ basis.T + 3.0 * scale.sum() / d
    x = np.abs(x)
    return x[:n].astype(np.float32), x[n:].astype(np.float32)


# ---- deterministic Gaussian stream: the same operations, in the same order, as imret ----
M64 = (1 << 64) - 1


def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & M64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return state, z ^ (z >> 31)


def exact_log(x):
    m, e = np.frexp(x)
    m, e = float(m), int(e)
    if m < 0.70710678118654752:
        m *= 2
        e -= 1
    t = (m - 1) / (m + 1)
    t2 = t * t
    term, s = t, 0.0
    for k in range(20):
        s += term / (2 * k + 1)
        term *= t2
    return 2 * s + e * 0.6931471805599453


def gauss_stream(seed, count):
    out, state = [], seed
    while len(out) < count:
        while True:
            state, a = splitmix64(state)
            state, b = splitmix64(state)
            u = (float(a >> 11) + 0.5) * (2.0 / 9007199254740992.0) - 1.0
            v = (float(b >> 11) + 0.5) * (2.0 / 9007199254740992.0) - 1.0
            s = u * u + v * v
            if s < 1.0 and s != 0.0:
                break
        f = np.sqrt(-2.0 * exact_log(s) / s)
        out += [u * f, v * f]
    return np.array(out[:count])


def itq(v, r, iters):
    losses = []
    for it in range(iters + 1):
        z = v @ r
        b = np.where(z >= 0, 1.0, -1.0)
        losses.append(((b - z) ** 2).sum() / v.shape[0])
        if it == iters:
            break
        ub, _, uat = np.linalg.svd(b.T @ v)  # [UB, S, UA] = svd(B' V); R = UA UB'
        r = uat.T @ ub.T
    return r, np.array(losses)


def whitening_refs(rng, out):
    x, q = data(rng, 600, 20, 48)
    mu, val, vec = pca(x)
    tensors = [("x", x), ("q", q), ("mean", mu), ("eigval", val)]
    variants = [(48, 0.5, 0.0, 1.0), (16, 0.5, 0.0, 1.0), (32, 0.25, 0.3, 0.5)]
    header = {"kind": "reference", "variants": len(variants)}
    for i, (od, power, shrink, post) in enumerate(variants):
        lam = (1 - shrink) * np.maximum(val, 0) + shrink * np.maximum(val, 0).mean()
        floor = 1e-6 * ((1 - shrink) * val[0] + shrink * np.maximum(val, 0).mean())
        lam = np.maximum(lam[:od], floor)
        p = np.diag(lam ** -power) @ vec[:, :od].T
        y = (q.astype(np.float64) - mu) @ p.T
        y = np.sign(y) * np.abs(y) ** post
        tensors.append((f"y{i}", l2n(y)))
        header[f"v{i}"] = [od, power, shrink, post]
    write_imw(out, header, tensors)


def hash_refs(rng, out):
    n, m, d, k, iters = 1500, 50, 96, 64, 50
    x, q = data(rng, n, m, d)
    mu, val, vec = pca(x)
    v = (x.astype(np.float64) - mu) @ vec[:, :k]
    r0, _ = np.linalg.qr(rng.standard_normal((k, k)))
    r0 = r0.astype(np.float32)
    r, losses = itq(v, r0.astype(np.float64), iters)
    itq_w = (vec[:, :k] @ r).T
    lsh = gauss_stream(12345, 64 * d).reshape(64, d)
    torch.manual_seed(7)
    lin = torch.nn.Linear(d, 128)
    with torch.no_grad():
        proj = lin(torch.from_numpy(q)).double().numpy()
    bits = (proj > 0).astype(np.uint8)
    packed = np.packbits(bits, axis=1, bitorder="little")  # byte j holds bits 8j..8j+7
    code16 = packed.view("<u2").astype(np.float32)  # words as 4 little-endian uint16 each
    write_imw(out, {"kind": "reference", "itq_iterations": iters, "lsh_seed": 12345},
              [("x", x), ("q", q), ("mean", mu), ("eigval", val), ("r0", r0), ("itq_loss", losses), ("itq_w", itq_w),
               ("pcah_w", vec[:, :k].T), ("lsh_w", lsh), ("lin_w", lin.weight.detach().numpy()),
               ("lin_b", lin.bias.detach().numpy()), ("lin_proj", proj), ("lin_code16", code16)])
    return losses


def main():
    rng = np.random.default_rng(5)
    os.makedirs(os.path.join(here, "data"), exist_ok=True)
    whitening_refs(rng, os.path.join(here, "data", "whiten.ref.imw"))
    losses = hash_refs(rng, os.path.join(here, "data", "hash.ref.imw"))
    print(f"ref_whiten: whitening (3 variants) and hash (ITQ loss {losses[0]:.4f} -> {losses[-1]:.4f}) references written")


if __name__ == "__main__":
    main()
