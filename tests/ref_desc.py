#!/usr/bin/env python3
"""Pooling references for tests/test_desc.c, written with PyTorch from the published
formulas (cirtorch's mac/spoc/gem/rmac + l2n), never with imret.

tests/data/pooling.ref.imw holds, for several random post-ReLU feature maps of odd sizes and
aspect ratios (tall, wide, square, 1x1, 1xN): fmap<i> [C,H,W] and mac<i>, spoc<i>, gem<i>
(p = 3), gem4_<i> (p = 4.5), rmac<i> (L = 3), rmac1_<i> (L = 1), each [C], L2-normalised.
"""
import math
import os
import sys

import torch
import torch.nn.functional as F

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tools"))
from imw import write_imw  # noqa: E402

EPS = 1e-6


def l2n(v):
    return v / (torch.norm(v, p=2, dim=0, keepdim=True) + EPS)


def gem(x, p):
    return F.avg_pool2d(x.clamp(min=EPS).pow(p), (x.size(-2), x.size(-1))).pow(1.0 / p).flatten()


def rmac(x, L):  # Tolias et al. regions, as cirtorch.layers.functional.rmac
    ovr = 0.4
    steps = torch.tensor([2, 3, 4, 5, 6, 7], dtype=torch.float64)
    W, H = x.size(3), x.size(2)
    w = min(W, H)
    b = (max(H, W) - w) / (steps - 1)
    idx = torch.argmin(torch.abs(((w ** 2 - w * b) / w ** 2) - ovr)).item()
    Wd = idx + 1 if H < W else 0
    Hd = idx + 1 if H > W else 0
    v = l2n(F.max_pool2d(x, (H, W)).flatten())
    for l in range(1, L + 1):
        wl = math.floor(2 * w / (l + 1))
        wl2 = math.floor(wl / 2 - 1)
        bw = 0 if l + Wd == 1 else (W - wl) / (l + Wd - 1)
        cenW = [math.floor(wl2 + i * bw) - wl2 for i in range(l + Wd)]
        bh = 0 if l + Hd == 1 else (H - wl) / (l + Hd - 1)
        cenH = [math.floor(wl2 + i * bh) - wl2 for i in range(l + Hd)]
        for i_ in cenH:
            for j_ in cenW:
                if wl == 0:
                    continue
                R = x[:, :, i_:i_ + wl, j_:j_ + wl]
                v = v + l2n(F.max_pool2d(R, (R.size(-2), R.size(-1))).flatten())
    return l2n(v)


def main():
    g = torch.Generator().manual_seed(5)
    shapes = [(64, 7, 9), (33, 13, 5), (17, 11, 11), (8, 1, 1), (65, 1, 6), (40, 4, 17), (128, 23, 31), (16, 30, 8)]
    tensors = []
    for i, (c, h, w) in enumerate(shapes):
        x = torch.relu(torch.randn(1, c, h, w, generator=g, dtype=torch.float64))
        x[0, :, 0, 0] = 0.0  # exact zeros exercise GeM's clamp
        tensors.append((f"fmap{i}", x[0]))
        tensors.append((f"mac{i}", l2n(F.max_pool2d(x, (h, w)).flatten())))
        tensors.append((f"spoc{i}", l2n(F.avg_pool2d(x, (h, w)).flatten())))
        tensors.append((f"gem{i}", l2n(gem(x, 3.0))))
        tensors.append((f"gem4_{i}", l2n(gem(x, 4.5))))
        tensors.append((f"rmac{i}", rmac(x, 3)))
        tensors.append((f"rmac1_{i}", rmac(x, 1)))
    os.makedirs(os.path.join(here, "data"), exist_ok=True)
    write_imw(os.path.join(here, "data", "pooling.ref.imw"), {"kind": "reference", "count": len(shapes)},
              [(n, t.float().numpy()) for n, t in tensors])
    print(f"ref_desc: {len(shapes)} feature maps")


if __name__ == "__main__":
    main()
