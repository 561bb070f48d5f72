#!/usr/bin/env python3
"""Rewrite an .imw weight file with its weights stored in another precision, and/or with the
activation scales of int8 inference (from tools/calibrate) added.

usage: /usr/bin/python3 tools/requantise.py IN.imw OUT.imw [--dtype f32|f16|bf16|int8]
                                            [--fold-bn] [--act-max CALIB.tsv]

--dtype     storage of convolution and linear weights (default: keep f32). 1-D tensors
            (biases, BatchNorm) stay f32. int8 = symmetric per output channel, scale tensor
            "<name>.scale" (weights/FORMAT.md). Any input dtype is accepted: weights are
            dequantised first, so int8 -> bf16 works (it does not recover the lost bits).
            ResNet-50 (25.6 M parameters): f32 103 MB, f16/bf16 51 MB, int8 26 MB.
--fold-bn   fold every BatchNorm into its convolution (w' = w g/sqrt(v+eps), b' = (b-m)
            g/sqrt(v+eps) + beta, in float64, as the loader does) and write header bn_folded=1:
            no BN tensors, every convolution has a .bias. Same network, 4 fewer floats per
            channel (ResNet-50 int8: 26.18 -> 25.76 MB). Default for --dtype int8 and bf16
            (bf16: the loaded weights are then bf16 values, which IMRET_PRECISION_BF16 needs).
--act-max   a tab-separated file "conv_name<TAB>value" as build/calibrate writes it: each
            value becomes the f32 tensor "<conv_name>.act_max" [1], the clipping value of the
            7-bit unsigned activations int8 inference feeds that convolution (step = value /
            127; imret_context precision IMRET_PRECISION_INT8). Existing act_max tensors are
            replaced.
The header is copied unchanged. Needs numpy only.
"""
import argparse
import math
import os
from collections import OrderedDict
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from imw import DTYPES, ImwError, dequantise, quantise, read_imw, write_imw  # noqa: E402
import numpy as np  # noqa: E402


def read_act_max(path, names):
    scales = {}
    with open(path) as f:
        for i, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) != 2:
                raise ImwError(f"{path}:{i}: expected 'conv_name<TAB>value'")
            name, v = parts[0], float(parts[1])
            if name + ".weight" not in names:
                raise ImwError(f"{path}:{i}: {name} is not a convolution of this file")
            if not (math.isfinite(v) and v > 0):
                raise ImwError(f"{path}:{i}: value {v} of {name} is not a positive finite number")
            scales[name] = v
    return scales


def _bn_of(conv, tensors):
    """Name of the BatchNorm that follows convolution `conv`, or None."""
    head, _, last = conv.rpartition(".")
    cands = []
    if conv == "conv1":
        cands.append("bn1")
    if last.startswith("conv"):
        cands.append(f"{head}.bn{last[4:]}")
    if last.isdigit():
        cands.append(f"{head}.{int(last) + 1}")  # features.N -> features.N+1, downsample.0 -> .1
    for c in cands:
        if c + ".running_mean" in tensors:
            return c
    return None


def fold_bn(header, tensors):
    if header.get("bn_folded") == "1":
        return header, tensors
    eps = float(header["bn_eps"])
    out, folded = OrderedDict(), set()
    for name, a in tensors.items():
        if not (name.endswith(".weight") and a.ndim == 4):
            continue
        conv = name[:-7]
        bn = _bn_of(conv, tensors)
        b = tensors.get(conv + ".bias", np.zeros(a.shape[0], np.float32)).astype(np.float64)
        if bn:
            g, beta, mean, var = (tensors[f"{bn}.{k}"].astype(np.float64) for k in ("weight", "bias", "running_mean", "running_var"))
            sc = g / np.sqrt(var + eps)
            a = (a.astype(np.float64) * sc.reshape(-1, 1, 1, 1)).astype(np.float32)
            b = (b - mean) * sc + beta
            folded.update(f"{bn}.{k}" for k in ("weight", "bias", "running_mean", "running_var"))
        out[name] = a
        out[conv + ".bias"] = b.astype(np.float32)
    for name, a in tensors.items():  # everything else (classifier, act scales) in file order
        if name not in out and name not in folded:
            out[name] = a
    header = dict(header, bn_folded=1)
    return header, out


def requantise(src, dst, dtype="f32", act_max=None, fold=None):
    header, tensors = read_imw(src)
    tensors = dequantise(tensors)
    if fold or (fold is None and dtype in ("int8", "bf16")):
        header, tensors = fold_bn(header, tensors)
    base = [(n, a) for n, a in tensors.items() if not n.endswith(".act_max")]
    acts = [(n, a) for n, a in tensors.items() if n.endswith(".act_max")]
    if act_max:
        acts = [(n + ".act_max", np.array([v], np.float32)) for n, v in act_max.items()]
    out = quantise(base, dtype) + [(n, a, 1) for n, a in acts]
    write_imw(dst, header, out)
    return header, out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--dtype", default="f32", choices=list(DTYPES))
    ap.add_argument("--fold-bn", action="store_true", default=None, help="fold BatchNorm (default for int8, bf16)")
    ap.add_argument("--act-max", help="calibration file from build/calibrate (tools/calibrate.c)")
    a = ap.parse_args()
    try:
        names = read_imw(a.input)[1].keys()
        acts = read_act_max(a.act_max, names) if a.act_max else None
        _, out = requantise(a.input, a.output, a.dtype, acts, a.fold_bn)
    except (ImwError, OSError, ValueError) as e:
        raise SystemExit(f"requantise: {e}")
    print(f"wrote {a.output}: {a.dtype} weights, {len(out)} tensors, {os.path.getsize(a.output)} bytes"
          + (f", {len(acts)} activation clipping values" if acts else ""))


if __name__ == "__main__":
    main()
