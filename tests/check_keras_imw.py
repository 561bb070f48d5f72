#!/usr/bin/env python3
"""Checks tools/tfjs2imw.py without imret: PyTorch runs the converted weights/resnet50.imw as a
Keras ResNet-50 v1 (stride on the first 1x1 of blocks 3a/4a/5a, conv biases, BN eps from the
header) and must match the TF.js references tests/data/default_*.ref.imw (written by
tests/ref_default_model.py from the ORIGINAL model.json) on every recorded output.
A wrong tensor mapping or transpose in the converter fails here, not only in the C parity test.
usage: /usr/bin/python3 tests/check_keras_imw.py [weights/resnet50.imw] [REF.imw ...]
Prints "N passed, N failed". Run time: a few seconds.
"""
import glob
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tools"))
from imw import read_imw  # noqa: E402

BLOCKS = [3, 4, 6, 3]


def forward(h, W, x):
    eps = float(h["bn_eps"])
    t = {k: torch.from_numpy(v) for k, v in W.items()}

    def conv_bn(y, c, b, stride=1, pad=0, relu=True):
        y = F.conv2d(y, t[c + ".weight"], t[c + ".bias"], stride, pad)
        y = F.batch_norm(y, t[b + ".running_mean"], t[b + ".running_var"], t[b + ".weight"], t[b + ".bias"], False, 0.0, eps)
        return F.relu(y) if relu else y

    y = conv_bn(x, "conv1", "bn1", 2, 3)
    y = F.max_pool2d(y, 3, 2, 1)  # = Keras ZeroPadding(1) + valid pool, since y >= 0 after ReLU
    for s, n in enumerate(BLOCKS, start=1):
        for i in range(n):
            p = f"layer{s}.{i}"
            stride = 2 if (i == 0 and s > 1) else 1
            z = conv_bn(y, p + ".conv1", p + ".bn1", stride)
            z = conv_bn(z, p + ".conv2", p + ".bn2", 1, 1)
            z = conv_bn(z, p + ".conv3", p + ".bn3", relu=False)
            short = conv_bn(y, p + ".downsample.0", p + ".downsample.1", stride, relu=False) if i == 0 else y
            y = F.relu(z + short)
    pooled = y.mean((2, 3))
    logits = F.linear(pooled, t["fc.weight"], t["fc.bias"])
    return {"features": y[0], "pooled": pooled[0], "logits": logits[0]}


def main():
    args = sys.argv[1:]
    model = args[0] if args else os.path.join(here, "..", "weights", "resnet50.imw")
    refs = args[1:] or sorted(glob.glob(os.path.join(here, "data", "default_*.ref.imw")))
    if not refs:
        raise SystemExit("check_keras_imw: no references (run tests/ref_default_model.py)")
    torch.set_num_threads(2)
    h, W = read_imw(model)
    assert h["arch"] == "keras_resnet50", h["arch"]
    passed = failed = 0
    for ref in refs:
        _, R = read_imw(ref)
        with torch.no_grad():
            out = forward(h, W, torch.from_numpy(R["input"])[None])
        for k, o in out.items():
            r = R[k]
            rel = float(np.abs(o.numpy() - r).max() / np.abs(r).max())
            ok = o.shape == r.shape and rel <= 1e-4
            passed += ok
            failed += not ok
            print(f"{os.path.basename(ref)} {k:9s} {tuple(r.shape)} rel {rel:.2e} {'ok' if ok else 'FAIL'}")
        top_t = np.argsort(-out["logits"].numpy())[:5]
        top_r = np.argsort(-R["logits"])[:5]
        ok = list(top_t) == list(top_r)
        passed += ok
        failed += not ok
        print(f"{os.path.basename(ref)} top-5 torch {list(top_t)} tfjs {list(top_r)} {'ok' if ok else 'FAIL'}")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
